import { spawnSync } from 'node:child_process';
import { lstatSync, readlinkSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** The unprivileged identity apps run as (nobody/nogroup on Debian). */
export const SANDBOX_UID = 65534;
export const SANDBOX_GID = 65534;

/** How to run one command inside bubblewrap. */
export interface SandboxSpec {
  /** Directories bound read-only at the same path (image dir, VM dir, ...). */
  readOnly: string[];
  /** Files the sandbox gets from an inherited fd (bwrap `--file FD DEST`). */
  files: { fd: number; dest: string }[];
  cwd: string;
  /** Host name seen inside (its own UTS namespace). */
  hostname: string;
  argv: string[];
  /** Size of the private /tmp in bytes (bwrap `--size`); absent: the kernel's default, half the RAM. */
  tmpBytes?: number;
  /** Inherited fd holding a compiled seccomp program (bwrap `--seccomp FD`; see seccomp.ts). */
  seccompFd?: number;
  /** Forbid user namespaces inside (bwrap `--disable-userns`, which needs its own `--unshare-user`). */
  disableUserns?: boolean;
}

// Everything an ordinary dynamically linked program needs; on merged-/usr
// systems /bin and /lib* are symlinks and are recreated as such.
const SYSTEM_DIRS = ['/usr', '/etc'] as const;
const SYSTEM_LINKS = ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'] as const;

let systemArgs: string[] | undefined;

function systemBinds(): string[] {
  if (systemArgs) return systemArgs;
  const args: string[] = [];
  for (const dir of [...SYSTEM_DIRS, ...SYSTEM_LINKS]) {
    try {
      const st = lstatSync(dir);
      if (st.isSymbolicLink()) args.push('--symlink', readlinkSync(dir), dir);
      else if (st.isDirectory()) args.push('--ro-bind', dir, dir);
    } catch {
      // not on this system
    }
  }
  return (systemArgs = args);
}

/** True when `path` is already visible through the system binds. */
function coveredBySystem(path: string): boolean {
  return SYSTEM_DIRS.some((d) => path === d || path.startsWith(d + '/'));
}

/**
 * Builds `setpriv … bwrap … -- argv`: the command runs as uid/gid 65534 with
 * no supplementary groups and no new privileges, sees only the system
 * directories, the given directories (read-only), a private /tmp, /dev and
 * /proc, in its own pid, IPC and UTS namespaces, and dies with its parent.
 * The network namespace is the caller's (run it under `ip netns exec`).
 * bwrap's own `--uid` would need a user namespace mapping, hence setpriv.
 */
export function sandboxArgv(spec: SandboxSpec): string[] {
  const binds: string[] = [];
  const dirs = [...new Set(spec.readOnly.map((d) => resolve(d)))].filter((d) => !coveredBySystem(d)).sort();
  for (const d of dirs) {
    // A parent already bound makes the child visible; binding both is harmless but noisy.
    if (dirs.some((p) => p !== d && d.startsWith(p + '/'))) continue;
    binds.push('--ro-bind', d, d);
  }
  const files = spec.files.flatMap((f) => ['--file', String(f.fd), f.dest]);
  return [
    'setpriv', `--reuid=${SANDBOX_UID}`, `--regid=${SANDBOX_GID}`, '--clear-groups', '--no-new-privs',
    'bwrap',
    ...systemBinds(),
    '--dev', '/dev',
    '--proc', '/proc',
    // /tmp first: binds below it (test image dirs live in /tmp) must land on top of the tmpfs.
    ...(spec.tmpBytes !== undefined ? ['--size', String(spec.tmpBytes)] : []),
    '--tmpfs', '/tmp',
    ...binds,
    ...files,
    '--chdir', spec.cwd,
    '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--hostname', spec.hostname,
    ...(spec.disableUserns ? ['--unshare-user', '--disable-userns'] : []),
    ...(spec.seccompFd !== undefined ? ['--seccomp', String(spec.seccompFd)] : []),
    '--die-with-parent',
    '--',
    ...spec.argv,
  ];
}

/**
 * The first directory on the way to `path` that the sandbox user cannot
 * traverse (or `path` itself when it cannot be read), or null when it can.
 * Checked up front so that a data dir under a private home gives a clear
 * error rather than bwrap's "Can't find source path".
 */
export function unreachableBySandbox(path: string): string | null {
  const target = resolve(path);
  const chain: string[] = [];
  for (let p = target; ; p = dirname(p)) {
    chain.unshift(p);
    if (p === dirname(p)) break;
  }
  for (const p of chain) {
    try {
      const st = statSync(p);
      const need = p !== target ? 1 : st.isDirectory() ? 5 : 4;
      const bits = st.uid === SANDBOX_UID ? st.mode >> 6 : st.gid === SANDBOX_GID ? st.mode >> 3 : st.mode;
      if ((bits & need) === 0) return p;
    } catch {
      return p;
    }
  }
  return null;
}

/** Options of this machine's bubblewrap that limits rely on. */
export interface BwrapFeatures {
  /** `--size` before `--tmpfs` (bubblewrap 0.5+). */
  tmpfsSize: boolean;
  /** `--disable-userns` (bubblewrap 0.8+). */
  disableUserns: boolean;
  seccomp: boolean;
}

let features: BwrapFeatures | undefined;

/** Reads `bwrap --help` once. */
export function bwrapFeatures(): BwrapFeatures {
  if (features) return features;
  const r = spawnSync('bwrap', ['--help'], { encoding: 'utf8', timeout: 5000 });
  const help = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  return (features = {
    tmpfsSize: /^\s*--size\b/m.test(help),
    disableUserns: /^\s*--disable-userns\b/m.test(help),
    seccomp: /^\s*--seccomp\b/m.test(help),
  });
}
