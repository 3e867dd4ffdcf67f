import type { AppKind, PlanLimits } from '../core/types.ts';
import type { HostPort } from '../core/config.ts';

/** What a driver needs to run one instance. */
export interface LaunchSpec {
  /** Full instance hostname, e.g. eph-1a2b3c4d.eph.localhost: the driver's key. */
  hostname: string;
  /** Unpacked, read-only image directory. */
  imageDir: string;
  kind: AppKind;
  /** pharo: image path relative to imageDir; procfile: the `web:` command line. */
  entry: string;
  /** Pharo VM command (may be a path or a name on PATH). */
  pharoVm: string;
  /** Extra environment; PORT=8080 is always set by the driver. */
  env: Record<string, string>;
  /** Per-instance log file (stdout+stderr), bounded to maxLogBytes. */
  logFile: string;
  maxLogBytes: number;
  /** The owner's plan limits (memory, CPU, pids, open files, /tmp, sandbox rules); absent: none. */
  limits?: PlanLimits;
  /** TLS-PSK client tunnels to open inside the instance (attached appliances); absent: none. */
  tunnels?: LaunchTunnel[];
}

/**
 * A client tunnel inside the instance: it accepts on 127.0.0.1:`localPort`
 * there and connects, over TLS-PSK, to an appliance's endpoint on the host.
 */
export interface LaunchTunnel {
  /** Service name (stunnel section), e.g. the appliance's name. */
  name: string;
  localPort: number;
  /** Port of the appliance's TLS-PSK endpoint on the host. */
  endpointPort: number;
  identity: string;
  key: string;
}

export interface ExitInfo {
  code: number | null;
  signal: string | null;
  /** True when the exit followed a stop() call. */
  requested: boolean;
  /** Why the platform ended the app, when it did (e.g. `killed: out of memory (limit 256 MiB)`). */
  reason?: string;
}

/**
 * A runtime driver only starts, stops and reports; it never decides policy
 * (quota, idleness, waking belong to the instance service).
 */
export interface Driver {
  readonly name: string;
  /** Human-readable note about isolation (e.g. "network namespaces" or "port per instance: not root"). */
  readonly isolation: string;
  /**
   * Spawns the app and resolves with the address where it will accept
   * connections. Does not wait for readiness (see waitReady in ready.ts).
   * Rejects with EphError('START_FAILED' | 'DEPENDENCY_MISSING') when it cannot spawn.
   */
  start(spec: LaunchSpec): Promise<HostPort>;
  /** Stops the app (TERM, then KILL after a grace period) and frees its namespace; idempotent. */
  stop(hostname: string): Promise<void>;
  isRunning(hostname: string): boolean;
  /**
   * Warm sleep, optional: suspends every process of a running instance in
   * memory (no CPU; its sockets stay open and queue new connections).
   * Resolves false when this instance cannot be frozen here. Drivers without
   * it never freeze (the swarm driver): their idle instances run until the
   * idle timeout stops them. stop() of a frozen instance thaws it first.
   */
  freeze?(hostname: string): Promise<boolean>;
  /** Resumes an instance frozen by freeze(); a no-op when it is not frozen. */
  thaw?(hostname: string): Promise<void>;
  /** Bytes of memory the instance uses now (page cache included); null when unknown. */
  memoryUsage?(hostname: string): Promise<number | null>;
  /** Called once per exit of a started app, requested or not. */
  onExit(listener: (hostname: string, info: ExitInfo) => void): void;
  /** Removes what a previous crash left behind (processes, namespaces, veths). */
  recover(): Promise<void>;
  /** Stops everything. */
  close(): Promise<void>;
}
