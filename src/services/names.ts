import { EphError } from '../core/errors.ts';
import type { GateRoute, GateTarget, Instance } from '../core/types.ts';
import type { StoredCert } from '../store/cert-store.ts';
import type { RoutingTable } from '../gate/routing-table.ts';
import type { DomainVerifier } from './domain-verifier.ts';
import { checkClaimableName, normalizeName, parentOf } from './public-name.ts';

/**
 * What holds a name in the routing table. `instance` and `static` are
 * platform-issued names under the cloud's domain; `alias` and `route` are
 * names a tenant claimed.
 */
export type NameKind = 'instance' | 'static' | 'alias' | 'route';

export interface NameHolder {
  kind: NameKind;
  /** The tenant the name serves. */
  userId: string;
}

/** The stored facts about who claimed what (the SQL stores implement all of it). */
export interface NameStore {
  getRoute(domain: string): Promise<GateRoute | null>;
  listRoutes(): Promise<GateRoute[]>;
  findInstance(host: string): Promise<Instance | null>;
  listInstances(): Promise<Instance[]>;
  getCert(domain: string): Promise<StoredCert | null>;
  listCerts(): Promise<StoredCert[]>;
}

export interface NameRegistryDeps {
  table: RoutingTable;
  /** The cloud's own domain: it and every name under it belong to the platform. */
  cloudDomain: string;
  /** Stored claims (routes, aliases, certificates); without it only the routing table's holders are known (unit tests). */
  store?: NameStore;
  /** Set when the operator requires DNS proof (`--verify-domains`): a first claim of a domain needs its TXT record. */
  verifier?: DomainVerifier | null;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

const PLATFORM_KINDS: ReadonlySet<NameKind> = new Set(['instance', 'static']);

/**
 * One owner per public name, and the only writer of the gate's routing table.
 *
 * Claims (aliases, gate routes, certificates) go through {@link checkClaim}:
 * the name is normalised, names under the cloud's domain are the platform's,
 * `localhost` and IP literals are refused, and a name held by another tenant
 * (as a route, an alias, or covered by their certificate, wildcards
 * included) is a 409. Table entries are written with {@link bind} and removed
 * with {@link release}, which removes an entry only when the same holder
 * (kind and tenant) asks: clearing one tenant's alias can never delete
 * another tenant's site.
 *
 * @example
 * const names = new NameRegistry({ table, cloudDomain: 'eph.localhost', store });
 * const alias = await names.checkClaim(user.id, 'www.example.org', 'alias');
 * names.bind(alias, { kind: 'alias', userId: user.id }, [{ hostname, weight: 1 }]);
 */
export class NameRegistry {
  readonly cloudDomain: string;
  readonly #table: RoutingTable;
  readonly #store: NameStore | undefined;
  readonly #verifier: DomainVerifier | null;
  readonly #log: NameRegistryDeps['log'];
  readonly #holders = new Map<string, NameHolder>();
  readonly #locks = new Map<string, Promise<void>>();
  /** Told after every table change made here (not by a reload): cluster mode announces it to the other replicas. */
  #onChange: ((name: string) => void) | null = null;

  constructor(deps: NameRegistryDeps) {
    this.#table = deps.table;
    this.cloudDomain = deps.cloudDomain.toLowerCase().replace(/\.$/, '');
    this.#store = deps.store;
    this.#verifier = deps.verifier ?? null;
    this.#log = deps.log;
  }

  /** Whether claims need DNS proof. */
  get verifying(): boolean {
    return this.#verifier !== null;
  }

  get verifier(): DomainVerifier | null {
    return this.#verifier;
  }

  /** Syntax and platform checks only: the normalised name, or the 400/409 a claim of it gets. */
  claimable(raw: unknown, what = 'name'): string {
    return checkClaimableName(raw, this.cloudDomain, what);
  }

  /**
   * Everything a tenant's claim of `raw` must pass; answers the normalised
   * name. CONFLICT when another tenant holds it or a certificate of another
   * tenant covers it; FORBIDDEN when verification is on and the TXT record
   * is missing. Holding the name already (same tenant) always passes.
   */
  async checkClaim(userId: string, raw: unknown, what = 'name'): Promise<string> {
    const name = this.claimable(raw, what);
    const mine = await this.#checkOthers(userId, name, what);
    if (!mine && this.#verifier) await this.#verifier.require(userId, name.startsWith('*.') ? name.slice(2) : name);
    return name;
  }

  /** Resolves true when `userId` already holds `name` (so no verification is due). */
  async #checkOthers(userId: string, name: string, what: string): Promise<boolean> {
    let mine = false;
    const taken = (why: string): never => {
      throw new EphError('CONFLICT', `${what} ${name} ${why}`);
    };
    const bare = name.startsWith('*.') ? name.slice(2) : name;
    if (name.startsWith('*.')) {
      // A wildcard covers every name one label under its parent: none may be another tenant's.
      for (const [host, h] of this.#holders) if (parentOf(host) === bare && h.userId !== userId) taken(`covers ${host}, a name of another user`);
    } else {
      const h = this.#holders.get(name);
      if (h) {
        if (h.userId !== userId) taken('is held by another user');
        mine = true;
      }
    }
    const store = this.#store;
    if (!store) return mine;
    if (name.startsWith('*.')) {
      for (const r of await store.listRoutes()) if (parentOf(r.domain) === bare && r.userId !== userId) taken(`covers ${r.domain}, a gate domain of another user`);
      for (const i of await store.listInstances()) {
        if (i.alias && parentOf(i.alias) === bare && i.userId !== userId) taken(`covers ${i.alias}, an alias of another user`);
      }
      for (const c of await store.listCerts()) {
        if (c.userId !== userId && !c.domain.startsWith('*.') && parentOf(c.domain) === bare) taken(`covers ${c.domain}, certified by another user`);
      }
    } else {
      const route = await store.getRoute(name);
      if (route) {
        if (route.userId !== userId) taken('is a gate domain of another user');
        mine = true;
      }
      const inst = await store.findInstance(name);
      if (inst && inst.alias === name) {
        if (inst.userId !== userId) taken("is an alias of another user's instance");
        mine = true;
      }
    }
    // A certificate holder owns the names its certificate covers (exact, then the wildcard one level up).
    const parent = parentOf(bare);
    const covering = [await store.getCert(name), name.startsWith('*.') ? null : parent ? await store.getCert(`*.${parent}`) : null];
    for (const c of covering) {
      if (!c) continue;
      if (c.userId !== userId) taken(`is covered by another user's certificate (${c.domain})`);
      mine = true;
    }
    return mine;
  }

  /**
   * Points `host` at `targets` for `holder`. A platform name (instance,
   * static site) displaces a tenant claim left over from before names were
   * checked; otherwise a host held by someone else is a CONFLICT and the
   * table is unchanged.
   */
  bind(host: string, holder: NameHolder, targets: GateTarget[], httpsRedirect = false): void {
    const name = normalizeName(host);
    if (!name) throw new EphError('INVALID_HOSTNAME', `'${host}' is not a valid DNS name`);
    const cur = this.#holders.get(name);
    if (cur && !sameHolder(cur, holder)) {
      if (!(PLATFORM_KINDS.has(holder.kind) && !PLATFORM_KINDS.has(cur.kind))) {
        throw new EphError('CONFLICT', `${name} is held by another ${cur.userId === holder.userId ? cur.kind : 'user'}`);
      }
      this.#log?.('name taken back for the platform', { name, from: cur, to: holder });
    }
    this.#holders.set(name, { kind: holder.kind, userId: holder.userId });
    this.#table.set(name, targets, httpsRedirect);
    this.#onChange?.(name);
  }

  /** Like {@link bind} at start-up: a conflicting stored claim is logged and skipped instead of stopping the cloud. */
  bindLoaded(host: string, holder: NameHolder, targets: GateTarget[], httpsRedirect = false): boolean {
    // Loading is no change: nothing to announce to other replicas.
    const announce = this.#onChange;
    this.#onChange = null;
    try {
      this.bind(host, holder, targets, httpsRedirect);
      return true;
    } catch (e) {
      this.#log?.('stored name not routed: held by another owner', { host, holder, error: (e as Error).message });
      return false;
    } finally {
      this.#onChange = announce;
    }
  }

  /** Registers the one listener of table changes made through this registry (cluster mode: src/services/route-notify.ts). */
  onChange(listener: (name: string) => void): void {
    this.#onChange = listener;
  }

  /**
   * Cluster mode: another replica changed `host`; re-reads who holds it from
   * the store (a gate route, else an instance's hostname, else an alias) and
   * sets or removes the table entry to match, without the ownership checks
   * (the replica that made the change did them) and without announcing it
   * again. Static sites are left alone (each replica syncs its appliances).
   */
  async reload(host: string): Promise<void> {
    const name = normalizeName(host);
    const store = this.#store;
    if (!name || !store || this.#holders.get(name)?.kind === 'static') return;
    const route = await store.getRoute(name);
    const inst = route ? null : await store.findInstance(name);
    if (route) this.#put(name, { kind: 'route', userId: route.userId }, route.targets, route.httpsRedirect);
    else if (inst && inst.hostname === name) this.#put(name, { kind: 'instance', userId: inst.userId }, [{ hostname: inst.hostname, weight: 1 }], false);
    else if (inst && inst.alias === name) this.#put(name, { kind: 'alias', userId: inst.userId }, [{ hostname: inst.hostname, weight: 1 }], false);
    else if (this.#holders.delete(name)) this.#table.delete(name);
  }

  /** Every name this replica routes or the store knows, reloaded (after the change feed lost notifications). */
  async reloadAll(): Promise<void> {
    const store = this.#store;
    if (!store) return;
    const names = new Set(this.#holders.keys());
    for (const r of await store.listRoutes()) names.add(r.domain);
    for (const i of await store.listInstances()) {
      names.add(i.hostname);
      if (i.alias) names.add(i.alias);
    }
    for (const n of names) await this.reload(n);
  }

  #put(name: string, holder: NameHolder, targets: GateTarget[], httpsRedirect: boolean): void {
    this.#holders.set(name, holder);
    this.#table.set(name, targets, httpsRedirect);
  }

  /** Removes `host` from the table only when `holder` (same kind, same tenant) holds it. Answers whether it did. */
  release(host: string, holder: NameHolder): boolean {
    const name = normalizeName(host);
    if (!name) return false;
    const cur = this.#holders.get(name);
    if (!cur || !sameHolder(cur, holder)) return false;
    this.#holders.delete(name);
    this.#table.delete(name);
    this.#onChange?.(name);
    return true;
  }

  /** Who holds `host` in the routing table, if anyone. */
  holderOf(host: string): NameHolder | undefined {
    const name = normalizeName(host);
    const h = name ? this.#holders.get(name) : undefined;
    return h ? { ...h } : undefined;
  }

  /**
   * Runs `fn` alone for `name` in this process: an alias and a gate route
   * claiming the same name are checked and written one after the other.
   */
  async exclusive<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(name) ?? Promise.resolve();
    let done!: () => void;
    const mine = new Promise<void>((r) => (done = r));
    const tail = prev.then(() => mine);
    this.#locks.set(name, tail);
    await prev;
    try {
      return await fn();
    } finally {
      done();
      if (this.#locks.get(name) === tail) this.#locks.delete(name);
    }
  }
}

function sameHolder(a: NameHolder, b: NameHolder): boolean {
  return a.kind === b.kind && a.userId === b.userId;
}
