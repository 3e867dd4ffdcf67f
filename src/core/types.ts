/** Domain types shared by every part. No I/O here. */
import type { PlanQuotas } from './plan-quotas.ts';

export type PlanName = string;

export interface Plan {
  name: PlanName;
  /** How many instances may run at the same time. */
  maxRunning: number;
  /** What one user may keep stored (instances, archive bytes); absent: not limited. */
  quotas?: PlanQuotas;
  /** What each instance of the plan may use (process driver); absent: no limits. */
  limits?: PlanLimits;
}

/** Per-instance resource limits and sandbox rules of a plan; an absent number is not limited. */
export interface PlanLimits {
  memoryBytes?: number;
  /** CPU time in cores (0.5: half of one core). */
  cpus?: number;
  /** Processes and threads. */
  pids?: number;
  /** RLIMIT_NOFILE (soft and hard). */
  openFiles?: number;
  /** Size of the private /tmp (a tmpfs). */
  tmpBytes?: number;
  /** `filtered`: a seccomp filter refuses dangerous system calls; `all`: no filter. */
  syscalls: 'filtered' | 'all';
  /** Whether the app may create user namespaces of its own. */
  userns: boolean;
}

export interface User {
  id: string;
  name: string;
  plan: PlanName;
  /** scrypt hash of the auth token, `salt:hash` in hex. */
  tokenHash: string;
  createdAt: number;
}

/** What the archive runs: a Pharo image or a Procfile web command. */
export type AppKind = 'pharo' | 'procfile';

export interface ImageRecord {
  /** sha256 of the archive bytes, hex. */
  digest: string;
  size: number;
  kind: AppKind;
  /** For pharo: the image path relative to the image root; for procfile: the web command. */
  entry: string;
  createdAt: number;
}

/**
 * asleep: no process (the default, and what a sleeping instance is);
 * starting: a start is in flight; running: accepts connections;
 * frozen: in warm sleep, its processes suspended in memory (the next request thaws it);
 * failed: the last start failed (lastError says why); the next request retries.
 */
export type InstanceState = 'asleep' | 'starting' | 'running' | 'frozen' | 'failed';

export interface Instance {
  hostname: string;
  userId: string;
  imageDigest: string;
  imageName: string;
  alias: string | null;
  state: InstanceState;
  createdAt: number;
  accessAt: number;
  lastError: string | null;
  /** host:port where the running app accepts connections (its namespace address). */
  upstream: string | null;
}

export interface GateTarget {
  hostname: string;
  weight: number;
}

export interface GateRoute {
  domain: string;
  userId: string;
  targets: GateTarget[];
  healthPath: string;
  httpsRedirect: boolean;
  updatedAt: number;
}

export interface RouteChange {
  domain: string;
  at: number;
  by: string;
  action: string;
  from: GateTarget[];
  to: GateTarget[];
}

export type ApplianceKind = 'postgres' | 'redis' | 'static' | 'mongo';
export type ApplianceStatus = 'creating' | 'running' | 'stopped' | 'failed';

export interface ApplianceRecord {
  userId: string;
  name: string;
  kind: ApplianceKind;
  status: ApplianceStatus;
  /** Loopback port the service itself listens on. */
  port: number;
  /** Port of its public TLS-PSK endpoint. */
  publicPort: number;
  /** Kind-specific settings (role, password, database…), JSON. */
  settings: Record<string, string>;
  /** PSK identities: identity → key. */
  psk: Record<string, string>;
  lastError: string | null;
  createdAt: number;
}
