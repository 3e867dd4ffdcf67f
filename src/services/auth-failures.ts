import { isIPv6 } from 'node:net';
import type { AuthLimits, FailureRate } from '../core/config.ts';

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * Token buckets of failures, one per key, in a Map bounded to `max` entries:
 * a new key beyond that evicts the least recently charged one, so that an
 * attacker inventing keys (user ids, addresses) cannot grow memory. Keys that
 * were never charged cost nothing.
 */
class FailureBuckets {
  readonly #rate: FailureRate;
  readonly #max: number;
  readonly #map = new Map<string, Bucket>();

  constructor(rate: FailureRate, max: number) {
    this.#rate = rate;
    this.#max = max;
  }

  get size(): number {
    return this.#map.size;
  }

  /** Tokens left for `key` now (a full bucket for an unknown key). */
  level(key: string, now: number): number {
    const b = this.#map.get(key);
    if (!b) return this.#rate.burst;
    return Math.min(this.#rate.burst, b.tokens + ((now - b.at) * this.#rate.burst) / this.#rate.windowMs);
  }

  /** True when `key` has no failure outstanding (less than one token spent). */
  clean(key: string, now: number): boolean {
    return this.level(key, now) > this.#rate.burst - 1;
  }

  /** Milliseconds until `key` has one token again; 0 when it has one now. */
  waitMs(key: string, now: number): number {
    const level = this.level(key, now);
    return level >= 1 ? 0 : Math.ceil(((1 - level) * this.#rate.windowMs) / this.#rate.burst);
  }

  charge(key: string, now: number): void {
    const tokens = this.level(key, now) - 1;
    // Delete then set: the Map's order is the order of last charge, its first key the one to evict.
    this.#map.delete(key);
    if (this.#map.size >= this.#max) this.#map.delete(this.#map.keys().next().value!);
    this.#map.set(key, { tokens, at: now });
  }
}

/** Why an attempt is refused before its token is even checked, and for how long. */
export interface Throttled {
  retryAfterS: number;
  by: 'source' | 'user';
}

/**
 * Throttles FAILED authentications per source address and per claimed user id.
 * Successes are never charged. A source over its limit is refused outright.
 * A user id over its limit (many sources guessing one account) is refused only
 * to sources that have failures of their own: a client that never failed still
 * gets its attempt, so that the owner signs in during a distributed attack.
 */
export class AuthFailureLimiter {
  readonly #source: FailureBuckets | null;
  readonly #user: FailureBuckets | null;
  readonly #now: () => number;

  constructor(limits: AuthLimits, now: () => number = Date.now) {
    this.#source = limits.perSource ? new FailureBuckets(limits.perSource, limits.maxTracked) : null;
    this.#user = limits.perUser ? new FailureBuckets(limits.perUser, limits.maxTracked) : null;
    this.#now = now;
  }

  /** Entries held (sources, user ids): for tests and metrics. */
  get tracked(): { sources: number; users: number } {
    return { sources: this.#source?.size ?? 0, users: this.#user?.size ?? 0 };
  }

  /** Null when `source` may try to authenticate as `userId` now. */
  check(source: string, userId: string): Throttled | null {
    const now = this.#now();
    const src = sourceKey(source);
    const bySource = this.#source?.waitMs(src, now) ?? 0;
    if (bySource > 0) return { retryAfterS: Math.ceil(bySource / 1000), by: 'source' };
    const byUser = this.#user?.waitMs(userId, now) ?? 0;
    if (byUser > 0 && !(this.#source?.clean(src, now) ?? false)) return { retryAfterS: Math.ceil(byUser / 1000), by: 'user' };
    return null;
  }

  failed(source: string, userId: string): void {
    const now = this.#now();
    this.#source?.charge(sourceKey(source), now);
    this.#user?.charge(userId, now);
  }
}

/**
 * The key of a source address: IPv4 as is (also when IPv4-mapped), IPv6 by its
 * /64, since one host commonly holds a whole /64.
 */
export function sourceKey(address: string): string {
  const a = address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
  if (!isIPv6(a)) return a;
  return `${expandIPv6(a).slice(0, 4).join(':')}::/64`;
}

function expandIPv6(a: string): string[] {
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : Array<string>(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((p) => p.toLowerCase().replace(/^0+(?=.)/, ''));
}
