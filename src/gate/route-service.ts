import { systemClock, type Clock } from '../core/clock.ts';
import type { HostPort } from '../core/config.ts';
import { EphError, isEphError } from '../core/errors.ts';
import { NameRegistry } from '../services/names.ts';
import { normalizeName } from '../services/public-name.ts';
import type { GateRoute, GateTarget, RouteChange } from '../core/types.ts';
import type { GateBackend } from './backend.ts';
import { HttpHealthCheck, type HealthCheck } from './health-check.ts';
import type { RoutingTable } from './routing-table.ts';
import type { RouteStore } from '../store/route-store.ts';

/** Who owns an instance; the instance service answers it. */
export interface InstanceOwners {
  /** userId owning the instance `hostname`, null when there is no such instance. */
  ownerOf(hostname: string): Promise<string | null>;
  /**
   * The instance whose alias is `domain`, and its owner; null when none. A
   * domain is either an alias or a gate route, never both: without this
   * method the service cannot tell, so production wiring must provide it.
   */
  aliasHolder?(domain: string): Promise<{ userId: string; hostname: string } | null>;
}

export interface RouteServiceDeps {
  store: RouteStore;
  table: RoutingTable;
  backend: GateBackend;
  instances: InstanceOwners;
  /** Default: real HTTP (HttpHealthCheck). */
  healthCheck?: HealthCheck;
  clock?: Clock;
  /** The cloud's own domain: `eph-…` names under it are instance hostnames, never user routes. */
  reservedDomain: string;
  /** How long a new target may take to wake and pass its health check. Default 30 s. */
  healthTimeoutMs?: number;
  /**
   * The one owner-checking writer of the routing table (production passes
   * the cloud's); without it a registry over `table` without stored claims
   * is made (unit tests).
   */
  names?: NameRegistry;
}

export interface MapOptions {
  /** Path the health check GETs; kept per route. Default `/` (or the route's current one). */
  healthPath?: string;
  httpsRedirect?: boolean;
  /** Who asks (user name or id), recorded in the history. */
  by: string;
  /** Switch without waking and checking the target (a deliberate override). */
  skipHealth?: boolean;
}

export interface SwitchOptions {
  skipHealth?: boolean;
}

export const DEFAULT_HEALTH_TIMEOUT_MS = 30_000;
export const DEFAULT_HEALTH_PATH = '/';
/** Weight a single-target route gets: splits read as percentages next to it. */
export const FULL_WEIGHT = 100;
const MAX_SPLIT_TARGETS = 16;
const HISTORY_DEFAULT_LIMIT = 100;

/**
 * Gate route control: map, unmap, promote, rollback, split and history, each
 * change health-gated, saved with its history entry in one transaction, then
 * applied to the routing table.
 *
 * Switching never stops an instance: requests already proxied finish on the
 * old target (the gate resolves a target once per request) and stopping idle
 * instances is the reaper's job, which counts active requests.
 *
 * Changes to one domain are serialised inside this process. Across processes
 * (cluster mode) the store's last write wins.
 *
 * @example
 * const routes = new RouteService({ store, table, backend, instances, reservedDomain: 'eph.localhost' });
 * await routes.load();
 * await routes.map(userId, 'beta.example.org', 'eph-1a2b3c4d.eph.localhost', { by: 'alice' });
 * await routes.promote(userId, 'beta.example.org', 'www.example.org', 'alice');
 * await routes.rollback(userId, 'www.example.org', 'alice');
 */
export class RouteService {
  readonly #store: RouteStore;
  readonly #names: NameRegistry;
  readonly #backend: GateBackend;
  readonly #instances: InstanceOwners;
  readonly #health: HealthCheck;
  readonly #clock: Clock;
  readonly #healthTimeoutMs: number;

  constructor(deps: RouteServiceDeps) {
    this.#store = deps.store;
    this.#names = deps.names ?? new NameRegistry({ table: deps.table, cloudDomain: deps.reservedDomain });
    this.#backend = deps.backend;
    this.#instances = deps.instances;
    this.#health = deps.healthCheck ?? new HttpHealthCheck();
    this.#clock = deps.clock ?? systemClock;
    this.#healthTimeoutMs = deps.healthTimeoutMs ?? DEFAULT_HEALTH_TIMEOUT_MS;
  }

  /** Fills the routing table with every stored route; call once at start-up. Returns how many. */
  async load(): Promise<number> {
    const routes = await this.#store.listRoutes();
    let n = 0;
    for (const r of routes) if (this.#names.bindLoaded(r.domain, { kind: 'route', userId: r.userId }, r.targets, r.httpsRedirect)) n++;
    return n;
  }

  /** The user's routes, ordered by domain. */
  list(userId: string): Promise<GateRoute[]> {
    return this.#store.listRoutes(userId);
  }

  /** One of the user's routes; NOT_FOUND when absent or another user's. */
  async get(userId: string, domain: string): Promise<GateRoute> {
    const d = this.#domain(domain);
    const r = await this.#store.getRoute(d);
    if (!r || r.userId !== userId) throw new EphError('NOT_FOUND', `gate route ${d} not found`);
    return r;
  }

  /**
   * Points `domain` at one instance, creating the route if needed. CONFLICT
   * when another user holds the domain, NOT_FOUND when the instance is not
   * the user's, HEALTH_CHECK_FAILED (nothing changed) when the target does not
   * wake and answer its health path below 500 in time.
   */
  async map(userId: string, domain: string, hostname: string, opts: MapOptions): Promise<GateRoute> {
    const d = this.#claimName(domain);
    const h = this.#instanceName(hostname);
    const healthPath = opts.healthPath === undefined ? undefined : checkHealthPath(opts.healthPath);
    return this.#exclusive(d, async () => {
      const current = await this.#claimable(userId, d);
      await this.#owned(userId, h);
      const path = healthPath ?? current?.healthPath ?? DEFAULT_HEALTH_PATH;
      const to = [{ hostname: h, weight: FULL_WEIGHT }];
      return this.#switch(userId, d, current, to, 'map', opts.by, {
        healthPath: path,
        httpsRedirect: opts.httpsRedirect ?? current?.httpsRedirect ?? false,
        skipHealth: opts.skipHealth ?? false,
      });
    });
  }

  /** Removes the user's route; the instance keeps running until the reaper finds it idle. */
  async unmap(userId: string, domain: string, by: string): Promise<void> {
    const d = this.#domain(domain);
    await this.#exclusive(d, async () => {
      const current = await this.get(userId, d);
      const change: RouteChange = { domain: d, at: this.#clock.now(), by, action: 'unmap', from: current.targets, to: [] };
      await this.#store.saveRoute(d, null, change);
      this.#names.release(d, { kind: 'route', userId });
    });
  }

  /**
   * Points `to` at `from`'s current targets (weights included), creating `to`
   * if needed; health-gated on `to`'s health path.
   */
  async promote(userId: string, from: string, to: string, by: string, opts: SwitchOptions = {}): Promise<GateRoute> {
    const f = this.#domain(from);
    const t = this.#claimName(to);
    if (f === t) throw new EphError('BAD_REQUEST', `cannot promote ${f} onto itself`);
    return this.#exclusive(t, async () => {
      const source = await this.get(userId, f);
      const current = await this.#claimable(userId, t);
      for (const target of source.targets) await this.#owned(userId, target.hostname);
      return this.#switch(userId, t, current, source.targets, 'promote', by, {
        healthPath: current?.healthPath ?? source.healthPath,
        httpsRedirect: current?.httpsRedirect ?? false,
        skipHealth: opts.skipHealth ?? false,
      });
    });
  }

  /**
   * Undoes the latest change of `domain` not undone yet: repeated rollbacks
   * walk further back, like an undo stack. NO_EARLIER_ROUTE when the route is
   * back at the state it was created with.
   */
  async rollback(userId: string, domain: string, by: string, opts: SwitchOptions = {}): Promise<GateRoute> {
    const d = this.#domain(domain);
    return this.#exclusive(d, async () => {
      const current = await this.get(userId, d);
      const previous = await this.#undoTarget(d);
      if (!previous) throw new EphError('NO_EARLIER_ROUTE', `${d} has no earlier state to roll back to`);
      for (const t of previous) {
        if ((await this.#instances.ownerOf(t.hostname)) !== userId) {
          throw new EphError('NOT_FOUND', `instance ${t.hostname}, the earlier target of ${d}, no longer exists; the route is unchanged`);
        }
      }
      return this.#switch(userId, d, current, previous, 'rollback', by, {
        healthPath: current.healthPath,
        httpsRedirect: current.httpsRedirect,
        skipHealth: opts.skipHealth ?? false,
      });
    });
  }

  /**
   * Splits `domain`'s traffic by weight (integers 0-100, at least one above 0,
   * each instance once and the user's), creating the route if needed. Each
   * target that does not receive traffic yet is health-checked first.
   */
  async split(
    userId: string,
    domain: string,
    targets: readonly GateTarget[],
    by: string,
    opts: SwitchOptions = {},
  ): Promise<GateRoute> {
    const d = this.#claimName(domain);
    const to = this.#checkSplit(targets);
    return this.#exclusive(d, async () => {
      const current = await this.#claimable(userId, d);
      for (const t of to) await this.#owned(userId, t.hostname);
      return this.#switch(userId, d, current, to, 'split', by, {
        healthPath: current?.healthPath ?? DEFAULT_HEALTH_PATH,
        httpsRedirect: current?.httpsRedirect ?? false,
        skipHealth: opts.skipHealth ?? false,
      });
    });
  }

  /**
   * Changes of the user's route since it was last created, newest first.
   * Earlier periods (before an unmap) are left out: the domain may have
   * belonged to someone else then.
   */
  async history(userId: string, domain: string, limit = HISTORY_DEFAULT_LIMIT): Promise<RouteChange[]> {
    const d = this.#domain(domain);
    await this.get(userId, d);
    const all = await this.#store.history(d, limit);
    const out: RouteChange[] = [];
    for (const c of all) {
      out.push(c);
      if (c.from.length === 0) break;
    }
    return out;
  }

  // The one place a route changes: health gate, then store, then table.
  async #switch(
    userId: string,
    domain: string,
    current: GateRoute | null,
    to: GateTarget[],
    action: string,
    by: string,
    s: { healthPath: string; httpsRedirect: boolean; skipHealth: boolean },
  ): Promise<GateRoute> {
    const from = current?.targets ?? [];
    if (current && sameTargets(from, to) && current.healthPath === s.healthPath && current.httpsRedirect === s.httpsRedirect) {
      return current;
    }
    if (!s.skipHealth) {
      const live = new Set(from.filter((t) => t.weight > 0).map((t) => t.hostname));
      const fresh = to.filter((t) => t.weight > 0 && !live.has(t.hostname)).map((t) => t.hostname);
      await Promise.all(fresh.map((h) => this.#ensureHealthy(domain, h, s.healthPath)));
    }
    const at = this.#clock.now();
    const targets = to.map((t) => ({ hostname: t.hostname, weight: t.weight }));
    const route: GateRoute = { domain, userId, targets, healthPath: s.healthPath, httpsRedirect: s.httpsRedirect, updatedAt: at };
    await this.#store.saveRoute(domain, route, { domain, at, by, action, from, to: targets });
    this.#names.bind(domain, { kind: 'route', userId }, targets, s.httpsRedirect);
    return route;
  }

  async #ensureHealthy(domain: string, hostname: string, path: string): Promise<void> {
    const started = Date.now();
    let upstream: HostPort;
    try {
      upstream = await withDeadline(this.#backend.wake(hostname), this.#healthTimeoutMs);
    } catch (e) {
      if (e === DEADLINE) {
        throw new EphError('HEALTH_CHECK_FAILED', `${hostname} did not wake within ${this.#healthTimeoutMs} ms; ${domain} is unchanged`);
      }
      if (isEphError(e)) throw new EphError(e.code, `cannot switch ${domain} to ${hostname}: ${e.message}`, { cause: e });
      throw new EphError('HEALTH_CHECK_FAILED', `${hostname} failed to wake (${String(e)}); ${domain} is unchanged`, { cause: e });
    }
    const left = this.#healthTimeoutMs - (Date.now() - started);
    const res = left > 0 ? await this.#health.check(upstream, domain, path, left) : null;
    if (!res?.ok) {
      const why = res ? res.reason : `no time left after waking (${this.#healthTimeoutMs} ms)`;
      throw new EphError('HEALTH_CHECK_FAILED', `${hostname} failed the health check of ${domain}: ${why}; ${domain} is unchanged`);
    }
  }

  /**
   * Targets the latest change not undone yet came from. Each rollback entry
   * cancels the newest earlier change it has not been matched with yet; a
   * change that left the targets as they were is neither undone nor undoes.
   */
  async #undoTarget(domain: string): Promise<GateTarget[] | null> {
    for (let limit = 64; ; limit *= 8) {
      const changes = await this.#store.history(domain, limit);
      let pending = 0;
      for (const c of changes) {
        if (c.from.length === 0) return null; // the route's creation: nothing before it belongs to this route
        if (sameTargets(c.from, c.to)) continue;
        if (c.action === 'rollback') pending++;
        else if (pending > 0) pending--;
        else return c.from;
      }
      if (changes.length < limit) return null;
    }
  }

  /** The domain's current route when the user may change it (null: free). */
  async #claimable(userId: string, domain: string): Promise<GateRoute | null> {
    await this.#names.checkClaim(userId, domain, 'gate domain');
    const current = await this.#store.getRoute(domain);
    if (current && current.userId !== userId) throw new EphError('CONFLICT', `${domain} is mapped by another user`);
    const alias = await this.#instances.aliasHolder?.(domain);
    if (alias) {
      throw new EphError(
        'CONFLICT',
        alias.userId === userId ? `${domain} is an alias of ${alias.hostname}; clear it first` : `${domain} is an alias of another user's instance`,
      );
    }
    return current;
  }

  async #owned(userId: string, hostname: string): Promise<void> {
    if ((await this.#instances.ownerOf(hostname)) !== userId) throw new EphError('NOT_FOUND', `instance ${hostname} not found`);
  }

  /** A domain to look up (the user's own route): normalised only, so that routes stored before names were checked can still be removed. */
  #domain(raw: string): string {
    const d = normalizeName(raw);
    if (!d || d.startsWith('*.')) throw new EphError('INVALID_HOSTNAME', `'${raw}' is not a valid domain name`);
    return d;
  }

  /** A domain to claim: the registry's syntax and platform checks (the ownership checks run under the lock). */
  #claimName(raw: string): string {
    const d = this.#names.claimable(raw, 'gate domain');
    if (d.startsWith('*.')) throw new EphError('INVALID_HOSTNAME', `gate domain ${d}: a route serves one name, not a wildcard`);
    return d;
  }

  #instanceName(raw: string): string {
    const h = normalizeName(raw);
    if (!h) throw new EphError('INVALID_HOSTNAME', `'${raw}' is not a valid instance hostname`);
    return h;
  }

  #checkSplit(targets: readonly GateTarget[]): GateTarget[] {
    if (!Array.isArray(targets) || targets.length === 0) throw new EphError('INVALID_VALUE', 'a split needs at least one target');
    if (targets.length > MAX_SPLIT_TARGETS) throw new EphError('INVALID_VALUE', `a split takes at most ${MAX_SPLIT_TARGETS} targets`);
    const seen = new Set<string>();
    const out: GateTarget[] = [];
    for (const t of targets) {
      const h = this.#instanceName(String(t.hostname));
      if (!Number.isInteger(t.weight) || t.weight < 0 || t.weight > 100) {
        throw new EphError('INVALID_VALUE', `weight of ${h}: expected an integer from 0 to 100, got ${String(t.weight)}`);
      }
      if (seen.has(h)) throw new EphError('INVALID_VALUE', `${h} appears twice in the split`);
      seen.add(h);
      out.push({ hostname: h, weight: t.weight });
    }
    if (!out.some((t) => t.weight > 0)) throw new EphError('INVALID_VALUE', 'a split needs at least one weight above 0');
    return out;
  }

  // Per-name mutex shared with alias claims (the registry's), so that a route and an alias cannot both take a name.
  #exclusive<T>(domain: string, fn: () => Promise<T>): Promise<T> {
    return this.#names.exclusive(domain, fn);
  }
}

/** A health path: absolute, no whitespace or control characters, at most 1024 characters. */
export function checkHealthPath(raw: string): string {
  if (typeof raw !== 'string' || !/^\/[\x21-\x7e]*$/.test(raw) || raw.length > 1024) {
    throw new EphError('INVALID_VALUE', `health path: expected an absolute path like /health, got '${String(raw)}'`);
  }
  return raw;
}

function sameTargets(a: readonly GateTarget[], b: readonly GateTarget[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]!.hostname !== b[i]!.hostname || a[i]!.weight !== b[i]!.weight) return false;
  return true;
}

const DEADLINE = Symbol('deadline');

function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expiry = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(DEADLINE), ms);
  });
  return Promise.race([p, expiry]).finally(() => clearTimeout(timer));
}
