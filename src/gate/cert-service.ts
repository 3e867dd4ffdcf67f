import { createSecureContext, type SecureContext } from 'node:tls';
import { systemClock, type Clock } from '../core/clock.ts';
import { EphError } from '../core/errors.ts';
import { normalizeHost } from '../core/ids.ts';
import type { GateRoute, Instance } from '../core/types.ts';
import { certFacts, checkCertPair } from './cert-check.ts';
import type { AcmeDomain, AcmeStatus, AcmeStore } from './acme-store.ts';
import type { CertStore, StoredCert } from '../store/cert-store.ts';

/** Who holds a domain on this cloud: a gate route or an instance alias. */
export interface DomainHolders {
  /** The user holding `domain` (a normalised name), or null when nobody does. */
  holderOf(domain: string): Promise<string | null>;
  /** Users holding names directly under `parent` (`www.example.org` is under `example.org`). */
  holdersUnder(parent: string): Promise<Set<string>>;
}

/** What the API shows of a certificate, uploaded or automatic (never the key). */
export interface CertView {
  domain: string;
  /** `uploaded` by the user, or obtained by the cloud from its ACME directory (`acme`). */
  source: 'uploaded' | 'acme';
  /** An upload is `valid`; an automatic one is `pending` (first order), `valid`, `renewing` or `failed`. */
  status: AcmeStatus;
  /** Expiry, epoch milliseconds, and the same as an ISO date; null while no certificate was issued yet. */
  notAfter: number | null;
  expires: string | null;
  names: string[];
  subject: string;
  issuer: string;
  updatedAt: number;
  /** Served by the gate now: its owner still holds the domain. */
  active: boolean;
  /** Why the last automatic order failed (the ACME server's words); null otherwise. */
  lastError: string | null;
  /** Automatic: when the next order is due (renewal, or the retry after a failure); null for uploads. */
  nextAttempt: number | null;
}

/** The part of the ACME store the certificate listing reads (absent in unit tests without automatic HTTPS). */
type AcmeRows = Pick<AcmeStore, 'listAcmeDomains' | 'getAcmeDomain' | 'deleteAcmeDomain'>;

export interface CertServiceDeps {
  store: CertStore & Partial<AcmeRows>;
  holders: DomainHolders;
  /** The cloud's own domain: its wildcard belongs to instance hostnames and is never uploadable. */
  reservedDomain: string;
  clock?: Clock;
  /**
   * The name registry's claim check (another user's names or certificates
   * covering the domain, platform names, DNS verification when required);
   * it throws the refusal. Production passes `names.checkClaim`.
   */
  claim?: (userId: string, domain: string) => Promise<unknown>;
}

/**
 * Per-domain certificates uploaded by users, served by the gate's SNI
 * callback. The served set lives in a Map so that a handshake costs one or
 * two lookups; it is rebuilt from the store by {@link refresh}, and a
 * certificate is only served while its owner still holds the domain, so a
 * domain that changes hands never carries its former owner's certificate.
 *
 * @example
 * const certs = new CertService({ store, holders: storeHolders(store), reservedDomain: 'eph.localhost' });
 * await certs.load();
 * createGate({ table, backend, tls: { defaultCert, sni: (name) => certs.sni(name) } });
 */
export class CertService {
  readonly #store: CertStore & Partial<AcmeRows>;
  readonly #holders: DomainHolders;
  readonly #reserved: string;
  readonly #clock: Clock;
  readonly #claim: CertServiceDeps['claim'];
  /** domain → context being served. */
  #served = new Map<string, SecureContext>();
  /** domain → [updatedAt, context]: a refresh reuses contexts of unchanged certificates. */
  #built = new Map<string, { updatedAt: number; ctx: SecureContext }>();
  #refreshing: Promise<void> = Promise.resolve();

  constructor(deps: CertServiceDeps) {
    this.#store = deps.store;
    this.#holders = deps.holders;
    this.#reserved = deps.reservedDomain.toLowerCase().replace(/\.$/, '');
    this.#clock = deps.clock ?? systemClock;
    this.#claim = deps.claim;
  }

  /** Fills the served set from the store; call once at start-up. */
  load(): Promise<void> {
    return this.refresh();
  }

  /** The uploaded certificate for an SNI name (exact, then `*.parent`), or null for the gate's default. */
  sni(servername: string): SecureContext | null {
    if (this.#served.size === 0) return null;
    const name = servername.endsWith('.') ? servername.slice(0, -1).toLowerCase() : servername.toLowerCase();
    const exact = this.#served.get(name);
    if (exact !== undefined) return exact;
    const dot = name.indexOf('.');
    return dot > 0 ? (this.#served.get(`*${name.slice(dot)}`) ?? null) : null;
  }

  /**
   * Stores `cert` + `key` for `domain` (a name or `*.parent`) after checking
   * them (400 with the reason). The user must hold the domain: NOT_FOUND when
   * nobody does, CONFLICT when another user does.
   */
  async put(userId: string, domain: string, cert: unknown, key: unknown): Promise<CertView> {
    const d = await this.checkHolder(userId, domain);
    const now = this.#clock.now();
    checkCertPair(d, cert, key, now);
    const row: StoredCert = { domain: d, userId, cert: cert as string, key: key as string, notAfter: 0, updatedAt: now, source: 'uploaded' };
    row.notAfter = certFacts(row.cert).notAfter;
    await this.#store.putCert(row);
    // An upload replaces automatic HTTPS for the domain: the cloud stops ordering (and overwriting) it.
    await this.#store.deleteAcmeDomain?.(d);
    const ctx = createSecureContext({ cert: row.cert, key: row.key });
    this.#built.set(d, { updatedAt: row.updatedAt, ctx });
    const served = new Map(this.#served);
    served.set(d, ctx);
    this.#served = served;
    return this.#view(row, true);
  }

  /**
   * The normalised domain when `userId` may have a certificate for it: the
   * name registry's claim check, then the user must hold it (NOT_FOUND when
   * nobody does, CONFLICT when another user does).
   */
  async checkHolder(userId: string, domain: string): Promise<string> {
    const d = this.#domain(domain);
    await this.#claim?.(userId, d);
    await this.#mayHold(userId, d);
    return d;
  }

  /** The user's certificates, uploaded and automatic (issued or still pending), ordered by domain. */
  async list(userId: string): Promise<CertView[]> {
    const certs = await this.#store.listCerts(userId);
    const acme = new Map((await this.#store.listAcmeDomains?.(userId) ?? []).map((a) => [a.domain, a]));
    const out = certs.map((c) => this.#view(c, this.#served.has(c.domain), acme.get(c.domain)));
    for (const a of acme.values()) if (!certs.some((c) => c.domain === a.domain)) out.push(this.#pendingView(a));
    return out.sort((x, y) => (x.domain < y.domain ? -1 : x.domain > y.domain ? 1 : 0));
  }

  /** One of the user's certificates (or automatic domains); NOT_FOUND otherwise. */
  async get(userId: string, domain: string): Promise<CertView> {
    const d = this.#domain(domain);
    const a = await this.#ownAcme(userId, d);
    const c = await this.#store.getCert(d);
    if (c && c.userId === userId) return this.#view(c, this.#served.has(c.domain), a ?? undefined);
    if (a) return this.#pendingView(a);
    throw new EphError('NOT_FOUND', `no certificate uploaded for ${d}`);
  }

  /**
   * Deletes the user's certificate and turns automatic HTTPS off for the
   * domain: the gate serves the default one for it again.
   */
  async remove(userId: string, domain: string): Promise<void> {
    const d = this.#domain(domain);
    const a = await this.#ownAcme(userId, d);
    if (a) await this.#store.deleteAcmeDomain?.(d);
    const mine = await this.#store.getCert(d);
    if (a && !(mine && mine.userId === userId)) return;
    const c = await this.#own(userId, d);
    await this.#store.deleteCert(c.domain);
    this.#built.delete(c.domain);
    const served = new Map(this.#served);
    served.delete(c.domain);
    this.#served = served;
  }

  /** Re-reads the store and re-checks who holds each domain; call after routes or aliases change. */
  refresh(): Promise<void> {
    // One refresh at a time, each reading the store after the previous one finished.
    const next = this.#refreshing.then(() => this.#rebuild());
    this.#refreshing = next.catch(() => {});
    return next;
  }

  async #rebuild(): Promise<void> {
    const served = new Map<string, SecureContext>();
    const built = new Map<string, { updatedAt: number; ctx: SecureContext }>();
    for (const c of await this.#store.listCerts()) {
      if (!(await this.#stillHeld(c))) continue;
      let b = this.#built.get(c.domain);
      if (b === undefined || b.updatedAt !== c.updatedAt) {
        try {
          b = { updatedAt: c.updatedAt, ctx: createSecureContext({ cert: c.cert, key: c.key }) };
        } catch {
          continue; // checked at upload; a stored pair TLS no longer takes is skipped rather than breaking the rest
        }
      }
      built.set(c.domain, b);
      served.set(c.domain, b.ctx);
    }
    this.#built = built;
    this.#served = served;
  }

  async #stillHeld(c: StoredCert): Promise<boolean> {
    if (c.domain.startsWith('*.')) {
      for (const u of await this.#holders.holdersUnder(c.domain.slice(2))) if (u !== c.userId) return false;
      return true;
    }
    return (await this.#holders.holderOf(c.domain)) === c.userId;
  }

  async #mayHold(userId: string, d: string): Promise<void> {
    if (d.startsWith('*.')) {
      const parent = d.slice(2);
      const holders = await this.#holders.holdersUnder(parent);
      if ([...holders].some((u) => u !== userId)) throw new EphError('CONFLICT', `another user routes a name under ${parent}; ${d} cannot be yours`);
      if (!holders.has(userId)) throw new EphError('NOT_FOUND', `you route no name under ${parent}; map one (gate route or alias) first`);
      return;
    }
    const holder = await this.#holders.holderOf(d);
    if (holder === null) throw new EphError('NOT_FOUND', `${d} is not one of your gate domains or aliases; map it first`);
    if (holder !== userId) throw new EphError('CONFLICT', `${d} is routed by another user`);
  }

  async #ownAcme(userId: string, d: string): Promise<AcmeDomain | null> {
    const a = (await this.#store.getAcmeDomain?.(d)) ?? null;
    return a && a.userId === userId ? a : null;
  }

  async #own(userId: string, d: string): Promise<StoredCert> {
    const c = await this.#store.getCert(d);
    if (!c || c.userId !== userId) throw new EphError('NOT_FOUND', `no certificate uploaded for ${d}`);
    return c;
  }

  #domain(raw: string): string {
    const wild = typeof raw === 'string' && raw.startsWith('*.');
    const d = typeof raw === 'string' ? normalizeHost(wild ? raw.slice(2) : raw) : null;
    if (!d || (typeof raw === 'string' && raw.includes(':'))) throw new EphError('INVALID_HOSTNAME', `'${String(raw)}' is not a valid domain name`);
    if (wild && (d === this.#reserved || d.endsWith(`.${this.#reserved}`) || !d.includes('.'))) {
      throw new EphError('INVALID_HOSTNAME', `*.${d}: a wildcard certificate must be for a domain of your own, not the cloud's or a top-level one`);
    }
    return wild ? `*.${d}` : d;
  }

  #view(c: StoredCert, active: boolean, acme?: AcmeDomain): CertView {
    const f = certFacts(c.cert);
    return {
      domain: c.domain,
      source: acme || c.source === 'acme' ? 'acme' : 'uploaded',
      status: acme?.status ?? 'valid',
      notAfter: c.notAfter,
      expires: new Date(c.notAfter).toISOString(),
      names: f.names,
      subject: f.subject,
      issuer: f.issuer,
      updatedAt: c.updatedAt,
      active,
      lastError: acme?.lastError ?? null,
      nextAttempt: acme?.nextAt ?? null,
    };
  }

  /** An automatic domain without an issued certificate yet. */
  #pendingView(a: AcmeDomain): CertView {
    return {
      domain: a.domain,
      source: 'acme',
      status: a.status,
      notAfter: null,
      expires: null,
      names: [],
      subject: '',
      issuer: '',
      updatedAt: a.updatedAt,
      active: false,
      lastError: a.lastError,
      nextAttempt: a.nextAt,
    };
  }
}

/** The store-backed {@link DomainHolders}: gate routes first, then instance aliases. */
export function storeHolders(store: {
  getRoute(domain: string): Promise<GateRoute | null>;
  listRoutes(): Promise<GateRoute[]>;
  findInstance(host: string): Promise<Instance | null>;
  listInstances(): Promise<Instance[]>;
}): DomainHolders {
  const directlyUnder = (name: string, parent: string): boolean =>
    name.endsWith(`.${parent}`) && !name.slice(0, -parent.length - 1).includes('.');
  return {
    async holderOf(domain) {
      const route = await store.getRoute(domain);
      if (route) return route.userId;
      const inst = await store.findInstance(domain);
      return inst && inst.alias === domain ? inst.userId : null;
    },
    async holdersUnder(parent) {
      const out = new Set<string>();
      for (const r of await store.listRoutes()) if (directlyUnder(r.domain, parent)) out.add(r.userId);
      for (const i of await store.listInstances()) if (i.alias && directlyUnder(i.alias, parent)) out.add(i.userId);
      return out;
    },
  };
}
