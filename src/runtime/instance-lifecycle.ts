import { EphError } from '../core/errors.ts';
import type { HostPort } from '../core/config.ts';
import type { ExitInfo } from './driver.ts';
import type { BoundedLog } from './process/log-file.ts';

/** The part of a driver's record of one instance that {@link InstanceTable} keeps. */
export interface InstanceState {
  readonly hostname: string;
  log: BoundedLog | null;
  /** stop() was called: a start() arriving meanwhile waits for the exit. */
  requested: boolean;
  /** The app has exited; clean-up may still be running. */
  ended: boolean;
  /** The upstream; rejects (after clean-up) when the start failed. */
  started: Promise<HostPort>;
  /** Resolves once the instance is gone and released. */
  exited: Promise<void>;
  markExited: () => void;
}

/** What {@link InstanceTable.start} needs from the driver for one start. */
export interface StartSteps<I extends InstanceState> {
  /** The driver's record, made from the common state (keep its fields: they are the same object's). */
  create(state: InstanceState): I;
  /** Brings the instance up; its rejection is a failed start. */
  launch(inst: I): Promise<HostPort>;
  /** Frees whatever a failed launch left behind; never throws. */
  releaseFailed(inst: I): Promise<void>;
}

/**
 * The instances of one driver by hostname, and the bookkeeping every driver
 * shares around them: one start at a time per hostname, a failed start that
 * cleans up after itself, stop requests that wait for the start, exit
 * listeners. What starting, stopping and releasing mean is the driver's.
 */
export class InstanceTable<I extends InstanceState> {
  readonly #instances = new Map<string, I>();
  readonly #listeners: ((hostname: string, info: ExitInfo) => void)[] = [];

  /**
   * Starts the instance `hostname` unless it runs. A start while running
   * answers the same upstream; a start while stopping (or cleaning up after an
   * exit) waits for that to finish, then starts afresh.
   *
   * @throws EphError the launch's own, or START_FAILED wrapping any other error.
   */
  start(hostname: string, steps: StartSteps<I>): Promise<HostPort> {
    const existing = this.#instances.get(hostname);
    if (existing) return existing.requested || existing.ended ? existing.exited.then(() => this.start(hostname, steps)) : existing.started;
    let markExited = (): void => undefined;
    const exited = new Promise<void>((r) => (markExited = r));
    const inst = steps.create({
      hostname,
      log: null,
      requested: false,
      ended: false,
      started: Promise.resolve({ host: '', port: 0 }),
      exited,
      markExited,
    });
    this.#instances.set(hostname, inst);
    inst.started = steps.launch(inst).catch(async (e: unknown) => {
      inst.log?.note(`start failed: ${errorText(e)}`);
      await steps.releaseFailed(inst);
      if (this.#instances.get(hostname) === inst) this.#instances.delete(hostname);
      inst.markExited();
      throw e instanceof EphError ? e : new EphError('START_FAILED', errorText(e), { cause: e });
    });
    return inst.started;
  }

  /**
   * Marks a stop of `hostname` as requested (at once, so that a start()
   * arriving meanwhile waits for it), then waits for its start. Null when there
   * is nothing to stop: no such instance, or its start failed (and has cleaned
   * up after itself). `first` is false when a stop was already requested.
   */
  async requestStop(hostname: string): Promise<{ inst: I; first: boolean } | null> {
    const inst = this.#instances.get(hostname);
    if (!inst) return null;
    const first = !inst.requested;
    inst.requested = true;
    try {
      await inst.started;
    } catch {
      return null;
    }
    return { inst, first };
  }

  /** Forgets an instance that has exited and been released, and reports its exit to the listeners. */
  reportExit(inst: I, exit: { code: number | null; signal: NodeJS.Signals | null; reason?: string }): void {
    if (this.#instances.get(inst.hostname) === inst) this.#instances.delete(inst.hostname);
    inst.markExited();
    const info: ExitInfo = { code: exit.code, signal: exit.signal, requested: inst.requested, ...(exit.reason ? { reason: exit.reason } : {}) };
    for (const listener of this.#listeners) {
      try {
        listener(inst.hostname, info);
      } catch {
        // a listener's failure is its own; the others still hear about the exit
      }
    }
  }

  isRunning(hostname: string): boolean {
    const inst = this.#instances.get(hostname);
    return inst !== undefined && !inst.ended;
  }

  onExit(listener: (hostname: string, info: ExitInfo) => void): void {
    this.#listeners.push(listener);
  }

  hostnames(): string[] {
    return [...this.#instances.keys()];
  }

  values(): IterableIterator<I> {
    return this.#instances.values();
  }
}

/** The message of an error, or the thrown value as text. */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
