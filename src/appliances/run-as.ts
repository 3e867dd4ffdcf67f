import { readFileSync } from 'node:fs';
import { lchown, lstat, mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { EphError } from '../core/errors.ts';

/** The operating-system account an appliance's server process runs as. */
export interface RunAs {
  name: string;
  uid: number;
  gid: number;
  /** True when we must switch to it (we are root); false when we already are that account. */
  switching: boolean;
}

/**
 * The unprivileged account for a database server. PostgreSQL refuses to run
 * as root and no database should: when the cloud runs as root, the server
 * runs as `preferred` (Debian's `postgres`, `redis`… system users), else
 * `nobody`; when the cloud is not root, the server runs as the cloud's own
 * account and nothing is switched.
 */
export function resolveRunAs(preferred: readonly string[]): RunAs {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  if (uid !== 0) return { name: accountName(uid) ?? String(uid), uid, gid, switching: false };
  for (const name of [...preferred, 'nobody']) {
    const entry = passwdEntry(name);
    if (entry) return { name, uid: entry.uid, gid: entry.gid, switching: true };
  }
  throw new EphError('DEPENDENCY_MISSING', `no unprivileged account to run appliances as (tried ${[...preferred, 'nobody'].join(', ')})`);
}

/** Options for child_process.spawn that run the child as `who`. */
export function spawnIdentity(who: RunAs): { uid?: number; gid?: number } {
  return who.switching ? { uid: who.uid, gid: who.gid } : {};
}

/** Creates `dir` (mode 0700) owned by `who`, so that only the server's account (and root) can read its data. */
export async function makePrivateDir(dir: string, who: RunAs): Promise<void> {
  await mkdir(dirname(dir), { recursive: true });
  try {
    await mkdir(dir, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  // A subdirectory is made inside a directory `who` owns already: that account
  // could have put a link under this name to make root give away its target.
  // lstat/lchown never follow one.
  const st = await lstat(dir);
  if (!st.isDirectory()) throw new EphError('INTERNAL', `appliance data directory: ${dir} is not a directory (a link?)`);
  if (who.switching) await lchown(dir, who.uid, who.gid);
}

/**
 * Fails with a clear message when `who` could not reach `dir`: every
 * directory above it must be searchable (x) by that account, which a private
 * temporary or home directory often is not.
 */
export async function assertTraversable(dir: string, who: RunAs): Promise<void> {
  if (!who.switching) return;
  let d = dirname(resolve(dir));
  for (;;) {
    const st = await stat(d);
    const ok = st.uid === who.uid ? (st.mode & 0o100) !== 0 : st.gid === who.gid ? (st.mode & 0o010) !== 0 : (st.mode & 0o001) !== 0;
    if (!ok) {
      throw new EphError(
        'INVALID_CONFIG',
        `appliance data directory: ${d} is not searchable by the '${who.name}' account the database runs as (chmod o+x ${d}, or choose another data directory)`,
      );
    }
    const up = dirname(d);
    if (up === d) return;
    d = up;
  }
}

function passwdEntry(name: string): { uid: number; gid: number } | null {
  for (const line of readPasswd()) {
    const f = line.split(':');
    if (f[0] === name && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  return null;
}

function accountName(uid: number): string | null {
  for (const line of readPasswd()) {
    const f = line.split(':');
    if (Number(f[2]) === uid) return f[0] ?? null;
  }
  return null;
}

function readPasswd(): string[] {
  try {
    return readFileSync('/etc/passwd', 'utf8').split('\n');
  } catch {
    return [];
  }
}
