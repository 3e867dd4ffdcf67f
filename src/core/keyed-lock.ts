/**
 * One-at-a-time per key, inside this process: `run(key, fn)` starts `fn` once every earlier call with
 * the same key has settled (fulfilled or not). Keys with nothing pending take no memory.
 *
 * @example
 * const locks = new KeyedLock();
 * await locks.run(`user/${id}`, () => checkThenWrite());
 */
export class KeyedLock {
  readonly #tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(key) ?? Promise.resolve();
    const run = prev.then(fn);
    // The tail never rejects, so the next caller runs whatever happened to this one.
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.#tails.set(key, tail);
    try {
      return await run;
    } finally {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }
}
