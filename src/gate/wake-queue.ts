import type { HostPort } from '../core/config.ts';
import type { GateBackend } from './backend.ts';
import type { GateMetrics } from './metrics.ts';

/**
 * One wake per sleeping instance, however many requests wait for it. The
 * backend shares starts too; sharing here as well means one wake is counted
 * and timed once, and waiters are called back in the order they arrived
 * (callbacks on one promise run in registration order).
 */
export class WakeQueue {
  readonly #pending = new Map<string, Promise<HostPort>>();
  readonly #backend: GateBackend;
  readonly #metrics: GateMetrics;

  constructor(backend: GateBackend, metrics: GateMetrics) {
    this.#backend = backend;
    this.#metrics = metrics;
  }

  /** Wakes `hostname` (or joins the wake under way). */
  wake(hostname: string): Promise<HostPort> {
    let p = this.#pending.get(hostname);
    if (p === undefined) {
      const started = performance.now();
      p = Promise.resolve()
        .then(() => this.#backend.wake(hostname))
        .then(
          (up) => {
            this.#pending.delete(hostname);
            this.#metrics.wake(true, (performance.now() - started) / 1000);
            return up;
          },
          (err: unknown) => {
            this.#pending.delete(hostname);
            this.#metrics.wake(false, (performance.now() - started) / 1000);
            throw err;
          },
        );
      this.#pending.set(hostname, p);
    }
    return p;
  }

  /** Instances being woken now. */
  get size(): number {
    return this.#pending.size;
  }
}
