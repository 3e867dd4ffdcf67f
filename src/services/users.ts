import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { EphError } from '../core/errors.ts';
import { newToken, newUserId } from '../core/ids.ts';
import type { Clock } from '../core/clock.ts';
import type { Plan, User } from '../core/types.ts';
import type { Store } from '../store/store.ts';

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

  constructor(store: Store, plans: Plan[], clock: Clock) {
    this.#store = store;
    this.#plans = new Map(plans.map((p) => [p.name, p]));
    this.#clock = clock;
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

  /** Answers the user when (userId, token) match; null otherwise. Constant-time comparison. */
  async authenticate(userId: string, token: string): Promise<User | null> {
    const key = createHash('sha256').update(`${userId}:${token}`).digest('base64');
    const cached = this.#verified.get(key);
    if (cached) return cached;
    const user = await this.#store.getUser(userId);
    if (!user || !(await verifyToken(token, user.tokenHash))) return null;
    if (this.#verified.size > 10_000) this.#verified.clear();
    this.#verified.set(key, user);
    return user;
  }
}

export async function hashToken(token: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scrypt(token, salt, 32);
  return `${salt.toString('hex')}:${hash.toString('hex')}`;
}

export async function verifyToken(token: string, stored: string): Promise<boolean> {
  const [saltHex, hashHex] = stored.split(':');
  if (!saltHex || !hashHex) return false;
  const expected = Buffer.from(hashHex, 'hex');
  const actual = await scrypt(token, Buffer.from(saltHex, 'hex'), expected.length);
  return timingSafeEqual(actual, expected);
}
