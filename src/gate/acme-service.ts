import { Agent } from 'node:https';
import { Client, axios as acmeAxios, crypto as acmeCrypto } from 'acme-client';
import { systemClock, type Clock } from '../core/clock.ts';
import { EphError } from '../core/errors.ts';
import type { SecretBox } from '../services/secret-box.ts';
import type { AcmeChallengeAnswers } from './acme-challenge.ts';
import { AcmeOrderLimit } from './acme-order-limit.ts';
import type { AcmeDomain, AcmeStatus, AcmeStore } from './acme-store.ts';
import { certFacts, checkCertPair } from './cert-check.ts';
import type { CertService, CertView, DomainHolders } from './cert-service.ts';
import type { CertStore } from '../store/cert-store.ts';

/** Let's Encrypt's production directory: the default when automatic HTTPS is on. */
export const LETS_ENCRYPT_DIRECTORY = 'https://acme-v02.api.letsencrypt.org/directory';

/** How the cloud talks to its ACME directory (docs/gate.md, Automatic HTTPS). */
export interface AcmeSettings {
  directoryUrl: string;
  /** Contact address of the cloud's account (expiry notices); null: none. */
  email: string | null;
  /** Extra CA (PEM) trusted for the directory's HTTPS, e.g. a test server's. */
  ca: string | null;
  /** Every mapped domain (gate route or alias) without an uploaded certificate gets one automatically. */
  byDefault: boolean;
  /** Orders one user may start per hour, renewals and retries included. */
  ordersPerHour: number;
}

export interface AcmeServiceDeps {
  store: AcmeStore & CertStore;
  holders: DomainHolders;
  certs: CertService;
  /** Seals the account key at rest. */
  box: SecretBox;
  settings: AcmeSettings;
  /** Every mapped domain and its holder, for `byDefault`. */
  mappedDomains: () => Promise<Array<{ domain: string; userId: string }>>;
  clock?: Clock;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
  /** First retry after a failed order; doubles per failure up to `retryMaxMs`. Default 10 min. */
  retryBaseMs?: number;
  /** Default 24 h. */
  retryMaxMs?: number;
  /** Longest wait between two checks of what is due. Default 1 h. */
  maxCheckIntervalMs?: number;
  /** How acme-client polls an order or challenge: first wait, longest wait, attempts. */
  poll?: { minMs: number; maxMs: number; attempts: number };
}

/** Renewal starts when less than this part of the lifetime remains. */
const RENEW_REMAINING = 1 / 3;
/** A challenge answer outlives its order by at most this (an order that never finished). */
const CHALLENGE_TTL_MS = 60 * 60_000;
const MIN_CHECK_MS = 1000;

/**
 * Automatic HTTPS: obtains certificates for mapped domains from an ACME
 * directory (HTTP-01, answered by the gate) with the `acme-client` library,
 * stores them like uploads (so the gate's SNI serves them) and renews them
 * when a third of their lifetime remains.
 *
 * Nothing is installed half-way: a new certificate and key are checked
 * (they must cover the domain, match, and load in TLS) and written with the
 * domain's status in one transaction, and only if the requester still holds
 * the domain and still wants it; a failed order leaves the served
 * certificate alone, records the directory's error and retries later with a
 * doubling backoff. Orders are limited per user so that one tenant cannot
 * exhaust the cloud's account at the directory.
 *
 * @example
 * const acme = new AcmeService({ store, holders, certs, box, settings, mappedDomains });
 * createGate({ ..., acmeChallenge: acme.challenges });
 * acme.start();
 * await acme.request(userId, 'www.example.org'); // status pending; valid once issued
 */
export class AcmeService {
  readonly #store: AcmeStore & CertStore;
  readonly #holders: DomainHolders;
  readonly #certs: CertService;
  readonly #box: SecretBox;
  readonly #settings: AcmeSettings;
  readonly #mapped: AcmeServiceDeps['mappedDomains'];
  readonly #clock: Clock;
  readonly #log: NonNullable<AcmeServiceDeps['log']>;
  readonly #retryBaseMs: number;
  readonly #retryMaxMs: number;
  readonly #maxCheckMs: number;
  readonly #poll: NonNullable<AcmeServiceDeps['poll']>;
  readonly #limit: AcmeOrderLimit;
  /** token → key authorization of this process's orders in flight. */
  readonly #tokens = new Map<string, string>();
  /** domain → the order in flight for it (one at a time per domain). */
  readonly #inFlight = new Map<string, Promise<void>>();
  #client: Promise<Client> | null = null;
  #timer: NodeJS.Timeout | null = null;
  /** The pass looking for due domains (it starts their orders), while it runs. */
  #pass: Promise<Promise<void>[]> | null = null;
  /** A check was asked for during a pass: look again before it ends (a domain mapped meanwhile). */
  #again = false;
  #closed = false;

  /** What the gate asks for `/.well-known/acme-challenge/<token>`. */
  readonly challenges: AcmeChallengeAnswers = {
    answer: (token) => this.#tokens.get(token) ?? null,
    lookup: async (token) => {
      const c = await this.#store.getAcmeChallenge(token);
      return c && c.expiresAt > this.#clock.now() ? c.keyAuthorization : null;
    },
  };

  constructor(deps: AcmeServiceDeps) {
    this.#store = deps.store;
    this.#holders = deps.holders;
    this.#certs = deps.certs;
    this.#box = deps.box;
    this.#settings = deps.settings;
    this.#mapped = deps.mappedDomains;
    this.#clock = deps.clock ?? systemClock;
    this.#log = deps.log ?? (() => {});
    this.#retryBaseMs = deps.retryBaseMs ?? 10 * 60_000;
    this.#retryMaxMs = deps.retryMaxMs ?? 24 * 3_600_000;
    this.#maxCheckMs = deps.maxCheckIntervalMs ?? 3_600_000;
    this.#poll = deps.poll ?? { minMs: 1000, maxMs: 10_000, attempts: 12 };
    this.#limit = new AcmeOrderLimit(deps.settings.ordersPerHour, 3_600_000);
  }

  get settings(): Readonly<AcmeSettings> {
    return this.#settings;
  }

  /** Starts the checks: one now (renewals that fell due while the cloud was down), then when the next is due. */
  start(): void {
    this.#tick();
  }

  /** Stops the timer; orders in flight finish without writing anything. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /**
   * Turns automatic HTTPS on for `domain` (a name the user holds, not a
   * wildcard: HTTP-01 cannot prove one) and orders its certificate now,
   * or renews it now when it has one. Answers at once with the status
   * (`pending` or `renewing`); the order runs in the background.
   * RATE_LIMITED (429) past the user's orders per hour.
   */
  async request(userId: string, domain: string): Promise<CertView> {
    if (typeof domain === 'string' && domain.startsWith('*.')) {
      throw new EphError('INVALID_VALUE', `${domain}: automatic certificates are for single names (HTTP-01 cannot prove a wildcard); upload a wildcard certificate instead`);
    }
    const d = await this.#certs.checkHolder(userId, domain);
    if (!this.#inFlight.has(d)) {
      const now = this.#clock.now();
      const wait = this.#limit.waitMs(userId, now);
      if (wait > 0) {
        const retryAfter = Math.ceil(wait / 1000);
        throw new EphError('RATE_LIMITED', `at most ${this.#limit.max} certificate orders per hour per user; try again in ${retryAfter} s`, { retryAfter });
      }
      const cur = await this.#store.getAcmeDomain(d);
      const served = await this.#store.getCert(d);
      const row: AcmeDomain = {
        domain: d,
        userId,
        status: served && served.userId === userId ? 'renewing' : 'pending',
        lastError: null,
        failures: cur && cur.userId === userId ? cur.failures : 0,
        nextAt: now,
        updatedAt: now,
      };
      await this.#store.putAcmeDomain(row);
      this.#order(row);
    }
    return this.#certs.get(userId, d);
  }

  /**
   * Looks at every automatic domain now (and, with `byDefault`, at every
   * mapped domain) and starts the orders that are due. Resolves once those
   * orders have finished.
   */
  checkNow(): Promise<void> {
    this.#again = true;
    this.#pass ??= (async () => {
      const orders: Promise<void>[] = [];
      try {
        while (this.#again) {
          this.#again = false;
          orders.push(...(await this.#startDue()));
        }
      } finally {
        // No await between the last look at #again and this: a later ask starts a new pass.
        this.#pass = null;
      }
      return orders;
    })();
    return this.#pass.then((orders) => Promise.all(orders)).then(() => {});
  }

  /** Resolves when the order in flight for `domain` (if any) has finished. */
  async settled(domain: string): Promise<void> {
    await this.#inFlight.get(domain);
  }

  #tick(): void {
    if (this.#closed) return;
    this.checkNow()
      .catch((e: unknown) => this.#log('acme: check failed', { error: errorText(e) }))
      .then(() => this.#schedule());
  }

  async #schedule(): Promise<void> {
    if (this.#closed) return;
    let next = this.#maxCheckMs;
    try {
      const now = this.#clock.now();
      for (const a of await this.#store.listAcmeDomains()) next = Math.min(next, a.nextAt - now);
    } catch {
      // The store is closing or failing: the next check finds out.
    }
    if (this.#closed) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#tick(), Math.max(MIN_CHECK_MS, next));
    this.#timer.unref();
  }

  /** Starts the orders that are due; answers them (running in the background). */
  async #startDue(): Promise<Promise<void>[]> {
    const now = this.#clock.now();
    if (this.#settings.byDefault) await this.#addDefaults(now);
    const started: Promise<void>[] = [];
    for (const a of await this.#store.listAcmeDomains()) {
      if (a.nextAt > now || this.#inFlight.has(a.domain)) continue;
      // A domain that left its requester is not ordered for them; its new holder may ask for it.
      if ((await this.#holders.holderOf(a.domain)) !== a.userId) continue;
      const wait = this.#limit.waitMs(a.userId, now);
      if (wait > 0) {
        await this.#store.putAcmeDomain({ ...a, nextAt: now + wait, updatedAt: now });
        continue;
      }
      this.#order(a);
      started.push(this.#inFlight.get(a.domain)!);
    }
    return started;
  }

  /** `byDefault`: mapped domains with no certificate and no automatic entry get one. */
  async #addDefaults(now: number): Promise<void> {
    for (const { domain, userId } of await this.#mapped()) {
      if (await this.#store.getAcmeDomain(domain)) continue;
      const cert = await this.#store.getCert(domain);
      if (cert && cert.userId === userId) continue;
      await this.#store.putAcmeDomain({ domain, userId, status: 'pending', lastError: null, failures: 0, nextAt: now, updatedAt: now });
    }
  }

  /** Starts the order of `a` in the background (its status is written first). */
  #order(a: AcmeDomain): void {
    this.#limit.record(a.userId, this.#clock.now());
    const run = this.#runOrder(a)
      .catch((e: unknown) => this.#log('acme: order bookkeeping failed', { domain: a.domain, error: errorText(e) }))
      .finally(() => this.#inFlight.delete(a.domain));
    this.#inFlight.set(a.domain, run);
  }

  async #runOrder(a: AcmeDomain): Promise<void> {
    const startedAt = this.#clock.now();
    const current = await this.#store.getCert(a.domain);
    const renewing = current !== null && current.userId === a.userId && current.source === 'acme';
    const status: AcmeStatus = renewing ? 'renewing' : 'pending';
    await this.#store.putAcmeDomain({ ...a, status, updatedAt: startedAt });
    let cert: string;
    let key: string;
    try {
      [cert, key] = await this.#obtain(a.domain);
      checkCertPair(a.domain, cert, key, this.#clock.now());
    } catch (e) {
      return this.#failed(a, status, e);
    }
    if (this.#closed) return;
    // Installed only if the requester still holds the domain and still wants it (not deleted, not replaced by an upload).
    const now = this.#clock.now();
    const still = await this.#store.getAcmeDomain(a.domain);
    if (!still || still.userId !== a.userId || (await this.#holders.holderOf(a.domain)) !== a.userId) {
      this.#log('acme: certificate issued but not installed: the domain is no longer automatic for its requester', { domain: a.domain });
      return;
    }
    const facts = certFacts(cert);
    await this.#store.saveAcmeIssued(
      { domain: a.domain, userId: a.userId, cert, key, notAfter: facts.notAfter, updatedAt: now, source: 'acme' },
      { ...still, status: 'valid', lastError: null, failures: 0, nextAt: renewalTime(facts.notBefore, facts.notAfter, now), updatedAt: now },
    );
    await this.#certs.refresh();
    this.#log('acme: certificate installed', { domain: a.domain, notAfter: new Date(facts.notAfter).toISOString() });
  }

  async #failed(a: AcmeDomain, status: AcmeStatus, e: unknown): Promise<void> {
    if (this.#closed) return;
    const now = this.#clock.now();
    const failures = a.failures + 1;
    const backoff = Math.min(this.#retryMaxMs, this.#retryBaseMs * 2 ** Math.min(failures - 1, 20));
    const lastError = `${status === 'renewing' ? 'renewal' : 'order'} failed: ${errorText(e)}`;
    const still = await this.#store.getAcmeDomain(a.domain);
    if (!still || still.userId !== a.userId) return;
    await this.#store.putAcmeDomain({ ...still, status: 'failed', lastError, failures, nextAt: now + backoff, updatedAt: now });
    this.#log('acme: order failed', { domain: a.domain, error: lastError, retryInMs: backoff });
  }

  /** One ACME order for `domain` with acme-client: a fresh P-256 key, HTTP-01 answered by the gate. */
  async #obtain(domain: string): Promise<[string, string]> {
    const client = await this.#accountClient();
    const [key, csr] = await acmeCrypto.createCsr({ commonName: domain, altNames: [domain] }, await acmeCrypto.createPrivateEcdsaKey());
    const cert = await client.auto({
      csr,
      ...(this.#settings.email ? { email: this.#settings.email } : {}),
      termsOfServiceAgreed: true,
      // The library's own pre-check fetches the token from here, through this host's DNS; only the directory's view counts.
      skipChallengeVerification: true,
      challengePriority: ['http-01'],
      challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
        this.#tokens.set(challenge.token, keyAuthorization);
        await this.#store.putAcmeChallenge({ token: challenge.token, keyAuthorization, expiresAt: this.#clock.now() + CHALLENGE_TTL_MS });
      },
      challengeRemoveFn: async (_authz, challenge) => {
        this.#tokens.delete(challenge.token);
        await this.#store.deleteAcmeChallenge(challenge.token, this.#clock.now());
      },
    });
    await this.#saveAccountUrl(client);
    return [cert, key.toString()];
  }

  /** The client of the cloud's account at the directory: its key made once, sealed in the store. */
  #accountClient(): Promise<Client> {
    this.#client ??= (async () => {
      const dir = this.#settings.directoryUrl;
      // acme-client shares one axios instance; a test directory's CA is trusted on it, for this process.
      if (this.#settings.ca !== null) acmeAxios.defaults.httpsAgent = new Agent({ ca: this.#settings.ca });
      let account = await this.#store.getAcmeAccount(dir);
      if (!account) {
        const pem = (await acmeCrypto.createPrivateEcdsaKey()).toString();
        account = { directory: dir, sealedKey: this.#box.seal(pem, `acme-account:${dir}`), url: null };
        await this.#store.putAcmeAccount(account);
      }
      return new Client({
        directoryUrl: dir,
        accountKey: this.#box.open(account.sealedKey, `acme-account:${dir}`),
        ...(account.url ? { accountUrl: account.url } : {}),
        backoffMin: this.#poll.minMs,
        backoffMax: this.#poll.maxMs,
        backoffAttempts: this.#poll.attempts,
      });
    })().catch((e: unknown) => {
      this.#client = null;
      throw e;
    });
    return this.#client;
  }

  async #saveAccountUrl(client: Client): Promise<void> {
    const dir = this.#settings.directoryUrl;
    const account = await this.#store.getAcmeAccount(dir);
    const url = client.getAccountUrl();
    if (account && account.url !== url) await this.#store.putAcmeAccount({ ...account, url });
  }
}

/**
 * When to renew: once less than a third of the lifetime remains, but not
 * sooner than a tenth of the lifetime after `now`, so that a clock ahead of
 * the directory's cannot make every new certificate due at once (an order
 * loop that would spend the account's rate limits).
 */
export function renewalTime(notBefore: number, notAfter: number, now: number): number {
  const life = notAfter - notBefore;
  return Math.floor(Math.max(notAfter - life * RENEW_REMAINING, now + life / 10));
}

function errorText(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.length > 500 ? `${msg.slice(0, 500)}…` : msg;
}
