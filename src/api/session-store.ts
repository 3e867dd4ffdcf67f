import { createHash, randomBytes } from 'node:crypto';
import type { User } from '../core/types.ts';
import type { UserService } from '../services/users.ts';

/** A console sign-in: the cookie's secret is never kept, only its sha256. */
export interface Session {
  user: User;
  /** Required in `X-CSRF-Token` on every request that changes something with this session's cookie. */
  csrf: string;
  createdAt: number;
  expiresAt: number;
}

export interface SessionLimits {
  /** Lifetime of a session from its sign-in. */
  ttlMs: number;
  /** Sessions one user may hold; a new sign-in beyond that ends the user's oldest. */
  maxPerUser: number;
  /** Sessions of all users together; beyond that the oldest of all ends. */
  maxTotal: number;
}

export const DEFAULT_SESSION_LIMITS: SessionLimits = { ttlMs: 12 * 3600_000, maxPerUser: 20, maxTotal: 10_000 };

const hashOf = (secret: string): string => createHash('sha256').update(secret).digest('base64url');

/**
 * Console sessions, in memory: a restart of the cloud signs everyone out,
 * which is the safe failure. Bounded per user and in total, so that signing
 * in in a loop cannot grow memory; expired sessions are dropped when met and
 * on every sign-in.
 */
export class SessionStore {
  readonly #limits: SessionLimits;
  readonly #now: () => number;
  /** By hash of the cookie secret, in order of creation (the first key is the oldest). */
  readonly #byHash = new Map<string, Session>();

  constructor(limits: SessionLimits = DEFAULT_SESSION_LIMITS, now: () => number = Date.now) {
    this.#limits = limits;
    this.#now = now;
  }

  get size(): number {
    return this.#byHash.size;
  }

  /** Sessions `userId` holds now. */
  countOf(userId: string): number {
    let n = 0;
    for (const s of this.#byHash.values()) if (s.user.id === userId) n++;
    return n;
  }

  /** Starts a session; answers the cookie secret (shown once, to the browser) and the session. */
  create(user: User): { secret: string; session: Session } {
    const now = this.#now();
    this.#sweep(now);
    const mine = [...this.#byHash].filter(([, s]) => s.user.id === user.id);
    for (const [hash] of mine.slice(0, Math.max(0, mine.length - this.#limits.maxPerUser + 1))) this.#byHash.delete(hash);
    while (this.#byHash.size >= this.#limits.maxTotal) this.#byHash.delete(this.#byHash.keys().next().value!);
    const secret = randomBytes(32).toString('base64url');
    const session: Session = { user, csrf: randomBytes(32).toString('base64url'), createdAt: now, expiresAt: now + this.#limits.ttlMs };
    this.#byHash.set(hashOf(secret), session);
    return { secret, session };
  }

  /** The live session of a cookie secret; null when unknown, signed out or expired. */
  get(secret: string): Session | null {
    const hash = hashOf(secret);
    const s = this.#byHash.get(hash);
    if (!s) return null;
    if (s.expiresAt <= this.#now()) {
      this.#byHash.delete(hash);
      return null;
    }
    return s;
  }

  /** Ends a session (sign out); true when it existed. */
  remove(secret: string): boolean {
    return this.#byHash.delete(hashOf(secret));
  }

  #sweep(now: number): void {
    for (const [hash, s] of this.#byHash) if (s.expiresAt <= now) this.#byHash.delete(hash);
  }
}

/**
 * The sessions of one cloud, keyed by its user service: every part that
 * authenticates (auth.ts, the session routes) already holds that service, so
 * no constructor or call site has to change to reach the sessions.
 */
const stores = new WeakMap<UserService, SessionStore>();

export function sessionsOf(users: UserService): SessionStore {
  let s = stores.get(users);
  if (!s) {
    s = new SessionStore();
    stores.set(users, s);
  }
  return s;
}
