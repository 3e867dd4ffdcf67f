import type Docker from 'dockerode';

/** The port every app listens on inside its container, as in the original cloud. */
export const APP_PORT = 8080;

/** The identity apps run as (nobody/nogroup on Debian), as under the process driver. */
export const APP_USER = '65534:65534';

/** Size of each of the (two) files of Docker's own copy of an instance's output. */
export const DOCKER_LOG_BYTES = 8 * 1024 ** 2;

/** Label on services and containers: the driver prefix that owns them (recover() only touches its own). */
export const OWNER_LABEL = 'ephemeric.driver';
/** Label on services and containers: the instance hostname. */
export const HOSTNAME_LABEL = 'ephemeric.hostname';

/** Everything that shapes one instance's service. */
export interface ServiceInput {
  /** Service name, e.g. `eph-1a2b3c4d`. */
  name: string;
  /** Driver prefix (the OWNER_LABEL value). */
  owner: string;
  hostname: string;
  image: string;
  network: string;
  /** Swarm node the task must run on (this host, which reaches the container's bridge address); null: any node. */
  nodeId: string | null;
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  /** Host paths bound read-only at the same path. */
  readOnly: string[];
  /** Host files bound read-only at another path: host path → container path. */
  files: Record<string, string>;
  memoryBytes: number;
  nanoCpus: number;
  pids: number;
  tmpfsBytes: number;
  stopGraceMs: number;
}

/**
 * The Engine API service spec of one instance: one replica, never restarted
 * by Docker (restarting is the instance service's decision), read-only root
 * file system, the host's system directories and the image directory bound
 * read-only, a private tmpfs /tmp, uid 65534, memory/CPU/pids limits, and
 * docker-init as PID 1 so that signals reach the app and zombies are reaped.
 */
export function serviceSpec(input: ServiceInput): Docker.CreateServiceOptions {
  const labels = { [OWNER_LABEL]: input.owner, [HOSTNAME_LABEL]: input.hostname };
  const mounts: Docker.MountSettings[] = [
    // A tmpfs volume rather than a tmpfs mount: Swarm (Engine 20.10) drops
    // TmpfsOptions.Mode, leaving a root-owned 1755 /tmp the app cannot write.
    {
      Type: 'volume',
      Source: tmpVolumeName(input.name),
      Target: '/tmp',
      VolumeOptions: {
        NoCopy: true,
        Labels: labels,
        DriverConfig: { Name: 'local', Options: { type: 'tmpfs', device: 'tmpfs', o: `size=${input.tmpfsBytes},mode=1777,nosuid,nodev` } },
      },
    },
    ...readOnlyRoots(input.readOnly).map((p): Docker.MountSettings => ({ Type: 'bind', Source: p, Target: p, ReadOnly: true })),
    ...Object.entries(input.files).map(([src, dest]): Docker.MountSettings => ({ Type: 'bind', Source: src, Target: dest, ReadOnly: true })),
  ];
  const env = {
    ...input.env,
    PORT: String(APP_PORT),
    // docker-init (tini) forwards stop signals to the app's whole process
    // group, not only to the shell that runs a Procfile command.
    TINI_KILL_PROCESS_GROUP: '1',
  };
  return {
    Name: input.name,
    Labels: labels,
    Mode: { Replicated: { Replicas: 1 } },
    TaskTemplate: {
      ContainerSpec: {
        Image: input.image,
        Labels: labels,
        Command: input.argv,
        Dir: input.cwd,
        Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
        User: APP_USER,
        Hostname: input.hostname.split('.')[0]!.slice(0, 63),
        Init: true,
        ReadOnly: true,
        Mounts: mounts,
        StopSignal: 'SIGTERM',
        StopGracePeriod: input.stopGraceMs * 1e6,
        CapabilityDrop: ['ALL'],
      },
      Resources: { Limits: { MemoryBytes: input.memoryBytes, NanoCPUs: input.nanoCpus, Pids: input.pids } },
      RestartPolicy: { Condition: 'none', MaxAttempts: 0 },
      // The driver copies output into the bounded instance log; Docker's own
      // copy is bounded too, or a chatty app would fill the daemon's disk.
      LogDriver: { Name: 'json-file', Options: { 'max-size': String(DOCKER_LOG_BYTES), 'max-file': '2' } },
      Placement: input.nodeId ? { Constraints: [`node.id==${input.nodeId}`] } : {},
      Networks: [{ Target: input.network }],
    },
  };
}

/** The volume that holds an instance's private /tmp (removed with the instance). */
export function tmpVolumeName(service: string): string {
  return `${service}-tmp`;
}

/** Distinct paths, dropping those already visible through a bound parent. */
function readOnlyRoots(paths: readonly string[]): string[] {
  const uniq = [...new Set(paths)].sort();
  return uniq.filter((p) => !uniq.some((q) => q !== p && (p.startsWith(q + '/') || q === '/')));
}

const CONTROL = /[;&|()`\n]|\$\(/;
const NOT_A_PROGRAM = new Set(['cd', 'export', 'exec', 'if', 'for', 'while', 'until', 'case', '{', '!', '.', 'source', 'set', 'ulimit', 'umask', 'trap', 'eval', 'exit', 'unset', 'readonly', 'wait']);

/**
 * `sh -c CMD` → `sh -c 'exec CMD'` when CMD is one simple command, so that
 * the app itself (not a shell waiting for it) is docker-init's child and gets
 * the stop signal and its grace period: dash does not exec the last command
 * of `-c` by itself. Anything else (lists, pipes, assignments, builtins) is
 * left as written.
 */
export function execSimpleCommand(argv: readonly string[]): string[] {
  if (argv.length !== 3 || argv[0] !== '/bin/sh' || argv[1] !== '-c') return [...argv];
  const cmd = argv[2]!.trim();
  const first = cmd.split(/\s+/)[0] ?? '';
  if (cmd.length === 0 || CONTROL.test(cmd) || first.includes('=') || NOT_A_PROGRAM.has(first)) return [...argv];
  return ['/bin/sh', '-c', `exec ${cmd}`];
}
