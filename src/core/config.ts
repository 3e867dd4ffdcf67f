import { EphError } from './errors.ts';
import type { Plan } from './types.ts';
import { withPlanLimits } from './plan-limits.ts';
import { withPlanQuotas } from './plan-quotas.ts';

/** Everything `eph serve` needs, validated once at start-up. */
export interface Config {
  dataDir: string;
  api: HostPort;
  gate: HostPort;
  /** HTTPS listener of the gate; null disables it. */
  gateTls: HostPort | null;
  domain: string;
  idleTimeoutMs: number;
  /** Idle this long, a running instance is frozen (warm sleep) before the idle timeout stops it; 0: never (`--warm-idle-timeout`). */
  warmIdleTimeoutMs: number;
  /** Most memory all frozen instances may hold together; past it the least recently used is stopped (`--warm-memory`). */
  warmMemoryBytes: number;
  wakeTimeoutMs: number;
  runtime: 'process' | 'swarm';
  /** 'sqlite' or a postgres:// URL. */
  store: string;
  pharoVm: string;
  maxArchiveBytes: number;
  maxUnpackedBytes: number;
  maxEntries: number;
  maxLogBytes: number;
  plans: Plan[];
  /** Host name under which appliances' TLS-PSK endpoints are reachable. */
  publicHost: string;
  /** Address appliances' TLS-PSK endpoints listen on (0.0.0.0 to serve other machines). */
  publicBind: string;
  /** JSON access log of the gate (off by default: it costs on the hot path). */
  accessLog: boolean;
  /** Network namespace name prefix and address block of the process driver (two clouds on one machine need their own). */
  netnsPrefix: string;
  subnet: string;
  /** What instances may reach besides their tunnels: public addresses, or nothing (`--egress`, EPH_EGRESS). */
  egress: 'public' | 'none';
  logLevel: string;
  /** Tenants must prove a domain with a DNS TXT record before claiming it (`--verify-domains`, EPH_VERIFY_DOMAINS=1). */
  verifyDomains: boolean;
  /** DNS servers for that proof (EPH_DNS_SERVERS=ip[:port],…); empty: the system's. */
  dnsServers: string[];
  /** Throttling of failed authentications (docs/security.md, Authentication). */
  authLimits: AuthLimits;
  /** The operator's bearer token for every host's gate series on /metrics (EPH_METRICS_TOKEN); null: none. */
  metricsToken: string | null;
  /**
   * The key sealing config vars (EPH_SECRETS_KEY_FILE); default `DATA/secrets.key`, created at first
   * start. Kept out of the store: replicas of a cluster must share the same file.
   */
  secretsKeyFile?: string;
  /**
   * Cluster mode (docs/cluster.md): a directory of unpacked images shared by
   * every replica (EPH_IMAGES, e.g. an NFS mount); default `DATA/images`.
   */
  imagesDir?: string;
  /** Cluster mode: time to live of instance leases (EPH_LEASE_TTL, default 15s). */
  leaseTtlMs?: number;
  /** Automatic HTTPS (docs/gate.md): null when off. */
  acme: AcmeConfig | null;
}

/** Automatic HTTPS from an ACME directory (`--acme-directory`, `--acme-email`, `--acme-default`). */
export interface AcmeConfig {
  /** Let's Encrypt's production directory unless set. */
  directoryUrl: string;
  email: string | null;
  /** PEM file of a CA trusted for the directory's HTTPS (EPH_ACME_CA_FILE; a test directory such as pebble). */
  caFile: string | null;
  /** Every mapped domain without an uploaded certificate gets an automatic one. */
  byDefault: boolean;
  /** Certificate orders one user may start per hour (EPH_ACME_ORDERS_PER_HOUR, default 10). */
  ordersPerHour: number;
}

/** A token bucket: `burst` failures at once, refilled at `burst` per `windowMs`. */
export interface FailureRate {
  burst: number;
  windowMs: number;
}

export interface AuthLimits {
  /** Failures per source address (IPv6: per /64); null turns the limit off. */
  perSource: FailureRate | null;
  /** Failures per claimed user id, known or not; null turns the limit off. */
  perUser: FailureRate | null;
  /** Most sources (and, apart, most user ids) remembered at once: memory stays bounded under any attack. */
  maxTracked: number;
}

export const DEFAULT_AUTH_LIMITS: AuthLimits = {
  perSource: { burst: 20, windowMs: 60_000 },
  perUser: { burst: 50, windowMs: 60_000 },
  maxTracked: 10_000,
};

/** Parses `20/1m` (20 failures, refilled over a minute) or `off`. */
export function parseFailureRate(flag: string, raw: string): FailureRate | null {
  if (raw.trim() === 'off') return null;
  const m = /^(\d+)\/(.+)$/.exec(raw.trim());
  const burst = m ? Number(m[1]) : 0;
  if (!m || burst < 1) throw new EphError('INVALID_CONFIG', `${flag}: expected FAILURES/DURATION like 20/1m, or off, got '${raw}'`);
  const windowMs = parseDuration(flag, m[2]!);
  if (windowMs < 1) throw new EphError('INVALID_CONFIG', `${flag}: the duration must be above zero, got '${raw}'`);
  return { burst, windowMs };
}

function parseAuthLimits(env: NodeJS.ProcessEnv): AuthLimits {
  const d = DEFAULT_AUTH_LIMITS;
  const tracked = env.EPH_AUTH_TRACKED ?? String(d.maxTracked);
  if (!/^\d+$/.test(tracked) || Number(tracked) < 1) throw new EphError('INVALID_CONFIG', `EPH_AUTH_TRACKED: expected a number of entries like 10000, got '${tracked}'`);
  return {
    perSource: env.EPH_AUTH_LIMIT_SOURCE === undefined ? d.perSource : parseFailureRate('EPH_AUTH_LIMIT_SOURCE', env.EPH_AUTH_LIMIT_SOURCE),
    perUser: env.EPH_AUTH_LIMIT_USER === undefined ? d.perUser : parseFailureRate('EPH_AUTH_LIMIT_USER', env.EPH_AUTH_LIMIT_USER),
    maxTracked: Number(tracked),
  };
}

export interface HostPort {
  host: string;
  port: number;
}

export const DEFAULT_PLANS: Plan[] = [
  { name: 'free', maxRunning: 1 },
  { name: 'standard', maxRunning: 10 },
];

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses `30m`, `2s`, `1500ms`, `1h`; a bare number is seconds. */
export function parseDuration(flag: string, raw: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(raw.trim());
  if (!m) throw new EphError('INVALID_CONFIG', `${flag}: expected a duration like 30m, got '${raw}'`);
  return Math.round(Number(m[1]) * UNITS[m[2] ?? 's']!);
}

/** Parses `50MB`, `1GiB`, `1024`; a bare number is bytes. */
export function parseSize(flag: string, raw: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?$/i.exec(raw.trim());
  if (!m) throw new EphError('INVALID_CONFIG', `${flag}: expected a size like 50MB, got '${raw}'`);
  const unit = (m[2] ?? 'b').toLowerCase();
  const mult: Record<string, number> = { b: 1, kb: 1e3, kib: 1024, mb: 1e6, mib: 1024 ** 2, gb: 1e9, gib: 1024 ** 3 };
  return Math.round(Number(m[1]) * mult[unit]!);
}

export function parseHostPort(flag: string, raw: string): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(raw.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new EphError('INVALID_CONFIG', `${flag}: expected HOST:PORT like 127.0.0.1:7070, got '${raw}'`);
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

/** Parses `free=1,standard=10,pro=50`. */
export function parsePlans(flag: string, raw: string): Plan[] {
  const plans: Plan[] = [];
  for (const part of raw.split(',')) {
    const m = /^([a-z][a-z0-9_-]*)=(\d+)$/.exec(part.trim());
    if (!m) throw new EphError('INVALID_CONFIG', `${flag}: expected NAME=N[,NAME=N], got '${raw}'`);
    plans.push({ name: m[1]!, maxRunning: Number(m[2]) });
  }
  return plans;
}

export interface ConfigInput {
  data?: string;
  api?: string;
  gate?: string;
  gateTls?: string;
  domain?: string;
  idleTimeout?: string;
  warmIdleTimeout?: string;
  warmMemory?: string;
  wakeTimeout?: string;
  runtime?: string;
  egress?: string;
  store?: string;
  pharoVm?: string;
  maxArchive?: string;
  plans?: string;
  /** Per-instance limits of each plan, e.g. `free:memory=256MiB,pids=64;*:tmp=64MiB` (see plan-limits.ts). */
  planLimits?: string;
  /** What one user of each plan may keep, e.g. `free:instances=20,storage=2GiB;*:storage=off` (see plan-quotas.ts). */
  planQuotas?: string;
  publicHost?: string;
  publicBind?: string;
  accessLog?: boolean;
  logLevel?: string;
  verifyDomains?: boolean;
  acmeDirectory?: string;
  acmeEmail?: string;
  acmeDefault?: boolean;
}

/** Flags win over environment variables, which win over the embedded defaults. */
export function loadConfig(flags: ConfigInput, env: NodeJS.ProcessEnv = process.env): Config {
  const pick = (flag: Exclude<keyof ConfigInput, 'accessLog' | 'verifyDomains' | 'acmeDefault'>, name: string): string | undefined => flags[flag] ?? env[name];
  const runtime = pick('runtime', 'EPH_RUNTIME') ?? 'process';
  if (runtime !== 'process' && runtime !== 'swarm') {
    throw new EphError('INVALID_CONFIG', `--runtime: expected process or swarm, got '${runtime}'`);
  }
  const store = pick('store', 'EPH_STORE') ?? 'sqlite';
  if (store !== 'sqlite' && !/^postgres(ql)?:\/\//.test(store)) {
    throw new EphError('INVALID_CONFIG', `--store: expected sqlite or a postgres:// URL, got '${store}'`);
  }
  const domain = (pick('domain', 'EPH_DOMAIN') ?? 'eph.localhost').toLowerCase();
  if (!/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(domain)) {
    throw new EphError('INVALID_CONFIG', `--domain: expected a DNS name like eph.localhost, got '${domain}'`);
  }
  const gateTls = pick('gateTls', 'EPH_GATE_TLS');
  return {
    dataDir: pick('data', 'EPH_DATA') ?? '.eph',
    api: parseHostPort('--api', pick('api', 'EPH_API') ?? '127.0.0.1:7070'),
    gate: parseHostPort('--gate', pick('gate', 'EPH_GATE') ?? '127.0.0.1:8080'),
    gateTls: gateTls && gateTls !== 'off' ? parseHostPort('--gate-tls', gateTls) : null,
    domain,
    idleTimeoutMs: parseDuration('--idle-timeout', pick('idleTimeout', 'EPH_IDLE_TIMEOUT') ?? '30m'),
    warmIdleTimeoutMs: parseDuration('--warm-idle-timeout', pick('warmIdleTimeout', 'EPH_WARM_IDLE_TIMEOUT') ?? '60s'),
    warmMemoryBytes: parseSize('--warm-memory', pick('warmMemory', 'EPH_WARM_MEMORY') ?? '2GiB'),
    wakeTimeoutMs: parseDuration('--wake-timeout', pick('wakeTimeout', 'EPH_WAKE_TIMEOUT') ?? '60s'),
    runtime,
    store,
    pharoVm: pick('pharoVm', 'EPH_PHARO_VM') ?? 'pharo',
    maxArchiveBytes: parseSize('--max-archive', pick('maxArchive', 'EPH_MAX_ARCHIVE') ?? '50MB'),
    maxUnpackedBytes: parseSize('EPH_MAX_UNPACKED', env.EPH_MAX_UNPACKED ?? '1GiB'),
    maxEntries: Number(env.EPH_MAX_ENTRIES ?? 20000),
    maxLogBytes: parseSize('EPH_MAX_LOG', env.EPH_MAX_LOG ?? '1MiB'),
    plans: withPlanQuotas(
      '--plan-quotas',
      withPlanLimits(
        '--plan-limits',
        pick('plans', 'EPH_PLANS') ? parsePlans('--plans', pick('plans', 'EPH_PLANS')!) : DEFAULT_PLANS,
        pick('planLimits', 'EPH_PLAN_LIMITS'),
      ),
      pick('planQuotas', 'EPH_PLAN_QUOTAS'),
    ),
    publicHost: pick('publicHost', 'EPH_PUBLIC_HOST') ?? '127.0.0.1',
    publicBind: pick('publicBind', 'EPH_PUBLIC_BIND') ?? '127.0.0.1',
    accessLog: flags.accessLog ?? env.EPH_ACCESS_LOG === '1',
    ...(env.EPH_IMAGES ? { imagesDir: env.EPH_IMAGES } : {}),
    ...(env.EPH_LEASE_TTL ? { leaseTtlMs: parseDuration('EPH_LEASE_TTL', env.EPH_LEASE_TTL) } : {}),
    netnsPrefix: checkPrefix(env.EPH_NETNS_PREFIX ?? 'eph'),
    subnet: env.EPH_SUBNET ?? '10.213.0.0/16',
    egress: parseEgress(pick('egress', 'EPH_EGRESS') ?? 'public'),
    logLevel: pick('logLevel', 'EPH_LOG_LEVEL') ?? 'info',
    verifyDomains: flags.verifyDomains ?? env.EPH_VERIFY_DOMAINS === '1',
    dnsServers: (env.EPH_DNS_SERVERS ?? '').split(',').map((s) => s.trim()).filter((s) => s !== ''),
    authLimits: parseAuthLimits(env),
    metricsToken: parseMetricsToken(env.EPH_METRICS_TOKEN),
    ...(env.EPH_SECRETS_KEY_FILE ? { secretsKeyFile: env.EPH_SECRETS_KEY_FILE } : {}),
    acme: parseAcme(flags, env, gateTls !== undefined && gateTls !== 'off'),
  };
}

/** On when a directory, a contact address or the default is given; it needs the HTTPS gate to serve what it obtains. */
function parseAcme(flags: ConfigInput, env: NodeJS.ProcessEnv, tls: boolean): AcmeConfig | null {
  const directory = flags.acmeDirectory ?? env.EPH_ACME_DIRECTORY;
  const email = flags.acmeEmail ?? env.EPH_ACME_EMAIL;
  const byDefault = flags.acmeDefault ?? env.EPH_ACME_DEFAULT === '1';
  if (directory === undefined && email === undefined && !byDefault) return null;
  if (!tls) throw new EphError('INVALID_CONFIG', '--acme-directory/--acme-email/--acme-default: automatic HTTPS needs the HTTPS gate (--gate-tls HOST:PORT)');
  if (directory !== undefined && !/^https:\/\/[^\s/]+/.test(directory)) {
    throw new EphError('INVALID_CONFIG', `--acme-directory: expected an https:// URL of an ACME directory, got '${directory}'`);
  }
  if (email !== undefined && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email)) throw new EphError('INVALID_CONFIG', `--acme-email: expected an e-mail address, got '${email}'`);
  const perHour = env.EPH_ACME_ORDERS_PER_HOUR ?? '10';
  if (!/^\d+$/.test(perHour) || Number(perHour) < 1) throw new EphError('INVALID_CONFIG', `EPH_ACME_ORDERS_PER_HOUR: expected a number of orders like 10, got '${perHour}'`);
  return {
    directoryUrl: directory ?? 'https://acme-v02.api.letsencrypt.org/directory',
    email: email ?? null,
    caFile: env.EPH_ACME_CA_FILE || null,
    byDefault,
    ordersPerHour: Number(perHour),
  };
}

/** From the environment only: a flag would show the token to every account in `ps`. */
function parseMetricsToken(raw: string | undefined): string | null {
  if (raw === undefined || raw === '') return null;
  if (raw.length < 16 || !/^[\x21-\x7e]+$/.test(raw)) {
    throw new EphError('INVALID_CONFIG', 'EPH_METRICS_TOKEN: expected at least 16 visible ASCII characters (e.g. `openssl rand -hex 16`)');
  }
  return raw;
}

function parseEgress(raw: string): 'public' | 'none' {
  if (raw !== 'public' && raw !== 'none') throw new EphError('INVALID_CONFIG', `--egress: expected public or none, got '${raw}'`);
  return raw;
}

function checkPrefix(raw: string): string {
  // veth names are limited to 15 characters: v + prefix + 8 hex digits.
  if (!/^[a-z][a-z0-9]{0,5}$/.test(raw)) throw new EphError('INVALID_CONFIG', `EPH_NETNS_PREFIX: expected 1-6 lowercase letters or digits, got '${raw}'`);
  return raw;
}
