/**
 * At most `max` ACME orders per user in any `windowMs` (a sliding window of
 * start times). It protects the cloud's one ACME account: the directory's own
 * rate limits (Let's Encrypt: failed validations and orders per account)
 * would otherwise let one tenant stop certificates for everybody.
 *
 * @example
 * const limit = new AcmeOrderLimit(10, 3_600_000);
 * const wait = limit.waitMs(userId, now); // 0: may order now
 * if (wait === 0) limit.record(userId, now);
 */
export class AcmeOrderLimit {
  readonly max: number;
  readonly windowMs: number;
  readonly #starts = new Map<string, number[]>();

  constructor(max: number, windowMs: number) {
    this.max = max;
    this.windowMs = windowMs;
  }

  /** Milliseconds until `userId` may start another order; 0 when they may now. */
  waitMs(userId: string, now: number): number {
    const recent = this.#recent(userId, now);
    if (recent.length < this.max) return 0;
    return recent[recent.length - this.max]! + this.windowMs - now;
  }

  record(userId: string, now: number): void {
    const recent = this.#recent(userId, now);
    recent.push(now);
    this.#starts.set(userId, recent);
  }

  #recent(userId: string, now: number): number[] {
    const all = this.#starts.get(userId) ?? [];
    const recent = all.filter((t) => t > now - this.windowMs);
    if (recent.length === 0) this.#starts.delete(userId);
    else if (recent.length !== all.length) this.#starts.set(userId, recent);
    return recent;
  }
}
