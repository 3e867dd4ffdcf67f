import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { EphError } from '../core/errors.ts';
import { newToken, newUserId } from '../core/ids.ts';
import type { Clock } from '../core/clock.ts';
import type { Plan, User } from '../core/types.ts';
import type { Store } from '../store/store.ts';
import { DEFAULT_AUTH_LIMITS, type AuthLimits } from '../core/config.ts';
import { AuthFailureLimiter } from './auth-failures.ts';

const scrypt = promisify(scryptCb) as (pw: string, salt: Buffer, len: number) => Promise<Buffer>;

/** Users, plans and authentication. Tokens are stored as salted scrypt hashes only. */
export class UserService {
  readonly #store: Store;
  readonly #plans: Map<string, Plan>;
  readonly #clock: Clock;
  /**
   * sha256(userId:token) of credentials already verified: scrypt is slow on
   * purpose, and clients such as the Pharo one authenticate every request.
   */
  readonly #verified = new Map<string, User>();
  readonly #failures: AuthFailureLimiter;
  /**
   * What an unknown user's token is checked against: the same KDF as a real
   * user's, so that an unknown id costs what a wrong token costs and ids
   * cannot be probed by timing.
   */
  #dummyHash: Promise<string> | null = null;
  #kdfRuns = 0;

  constructor(store: Store, plans: Plan[], clock: Clock, authLimits: AuthLimits = DEFAULT_AUTH_LIMITS) {
    this.#store = store;
    this.#plans = new Map(plans.map((p) => [p.name, p]));
    this.#clock = clock;
    this.#failures = new AuthFailureLimiter(authLimits, () => this.#clock.now());
  }

  /** Key derivations run to check tokens so far (tests compare the cost of refusals by it). */
  get kdfRuns(): number {
    return this.#kdfRuns;
  }

  /** Sources and user ids with failures remembered (bounded by the configured maximum). */
  get failuresTracked(): { sources: number; users: number } {
    return this.#failures.tracked;
  }

  plan(name: string): Plan {
    const p = this.#plans.get(name);
    if (!p) throw new EphError('INVALID_VALUE', `unknown plan '${name}' (plans: ${[...this.#plans.keys()].join(', ')})`);
    return p;
  }

  /** Creates a user and answers the only copy of its token. */
  async add(name: string, planName: string): Promise<{ user: User; token: string }> {
    if (!/^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/.test(name)) {
      throw new EphError('INVALID_VALUE', `user name must be 1-64 letters, digits, '.', '_' or '-', got '${name}'`);
    }
    this.plan(planName);
    const token = newToken();
    const user: User = { id: newUserId(), name, plan: planName, tokenHash: await hashToken(token), createdAt: this.#clock.now() };
    await this.#store.createUser(user);
    return { user, token };
  }

  list(): Promise<User[]> {
    return this.#store.listUsers();
  }

  /**
   * Answers the user when (userId, token) match; null otherwise. `source` is
   * the client's address: failures are throttled per source and per claimed
   * user id (RATE_LIMITED with a retry delay). Credentials already proven
   * pass without a KDF run and are never throttled.
   */
  async authenticate(userId: string, token: string, source = 'unknown'): Promise<User | null> {
    const key = createHash('sha256').update(`${userId}:${token}`).digest('base64');
    const cached = this.#verified.get(key);
    if (cached) return cached;
    // Made on the first sign-in, not at construction: `eph users add` has no use for it.
    const dummy = (this.#dummyHash ??= hashToken(newToken()));
    const throttled = this.#failures.check(source, userId);
    if (throttled) {
      const who = throttled.by === 'source' ? 'from this address' : 'for this user';
      throw new EphError('RATE_LIMITED', `too many failed authentications ${who}; retry in ${throttled.retryAfterS} s`, { retryAfter: throttled.retryAfterS });
    }
    // A control character (a trailing NUL, a newline) is never part of a token we issued.
    if (!wellFormed(userId) || !wellFormed(token)) {
      this.#failures.failed(source, userId);
      return null;
    }
    const user = await this.#store.getUser(userId);
    // Unknown or not, one KDF run and one constant-time comparison: same cost either way.
    const ok = await verifyToken(token, user ? user.tokenHash : await dummy, () => this.#kdfRuns++);
    if (!user || !ok) {
      this.#failures.failed(source, userId);
      return null;
    }
    if (this.#verified.size > 10_000) this.#verified.clear();
    this.#verified.set(key, user);
    return user;
  }
}

/** Printable, non-empty and of a sane length: what issued ids and tokens look like. */
function wellFormed(s: string): boolean {
  return s.length > 0 && s.length <= 256 && !/[\u0000-\u001f\u007f]/.test(s);
}

export async function hashToken(token: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scrypt(token, salt, 32);
  return `${salt.toString('hex')}:${hash.toString('hex')}`;
}

/** `onKdf` is told of each key derivation run (the costly part). */
export async function verifyToken(token: string, stored: string, onKdf?: () => void): Promise<boolean> {
  const [saltHex, hashHex] = stored.split(':');
  if (!saltHex || !hashHex) return false;
  const expected = Buffer.from(hashHex, 'hex');
  onKdf?.();
  const actual = await scrypt(token, Buffer.from(saltHex, 'hex'), expected.length);
  return timingSafeEqual(actual, expected);
}
