/** What the idle reaper needs; the instance service supplies it. */
export interface IdleReaperOptions {
  intervalMs: number;
  /** Idle this long, an instance is stopped (frozen or not). */
  idleTimeoutMs: number;
  /** Idle this long, a running instance is frozen (warm sleep) first; 0 or absent: never frozen. */
  warmIdleTimeoutMs?: number;
  /** Instances with a process (running or frozen) with their last access time (ms since the epoch). */
  listRunning: () => Array<{ hostname: string; accessAt: number; frozen?: boolean }>;
  /** Requests in flight plus open WebSockets and streams (the gate's activeCount). */
  activeCount: (hostname: string) => number;
  stop: (hostname: string) => Promise<void>;
  /** Freezes an instance; resolves false when it was not frozen (the driver cannot, or a request came first). */
  freeze?: (hostname: string) => Promise<boolean>;
  onReap?: (hostname: string) => void;
  onFreeze?: (hostname: string) => void;
  onError?: (hostname: string, err: unknown) => void;
  now?: () => number;
}

/**
 * Puts idle instances to sleep in two tiers: after the warm idle timeout a
 * running instance is frozen (memory kept, no CPU, woken in milliseconds),
 * after the idle timeout it is stopped, frozen or not. An instance with an
 * open connection is busy however old its last request is (a WebSocket may
 * carry traffic for hours after its upgrade request).
 *
 * @example
 * const reaper = startIdleReaper({ intervalMs: 6_000, idleTimeoutMs: 30 * 60_000, warmIdleTimeoutMs: 60_000,
 *   listRunning: () => instances.listLive(), activeCount: gate.activeCount,
 *   stop: (h) => instances.stop(h), freeze: (h) => instances.freeze(h) });
 * // at shutdown
 * reaper.stop();
 */
export function startIdleReaper(opts: IdleReaperOptions): { stop(): void } {
  const now = opts.now ?? Date.now;
  const warm = opts.warmIdleTimeoutMs ?? 0;
  /** Stops and freezes in flight, so that a slow one is not started twice by the next sweep. */
  const busy = new Set<string>();
  const run = (hostname: string, action: Promise<unknown>): void => {
    busy.add(hostname);
    action.then(
      () => {
        busy.delete(hostname);
      },
      (err: unknown) => {
        busy.delete(hostname);
        opts.onError?.(hostname, err);
      },
    );
  };
  const sweep = (): void => {
    const t = now();
    for (const { hostname, accessAt, frozen } of opts.listRunning()) {
      const idle = t - accessAt;
      if (busy.has(hostname) || opts.activeCount(hostname) > 0) continue;
      if (idle > opts.idleTimeoutMs) {
        run(hostname, opts.stop(hostname).then(() => opts.onReap?.(hostname)));
      } else if (!frozen && warm > 0 && idle > warm && opts.freeze) {
        run(hostname, opts.freeze(hostname).then((ok) => ok && opts.onFreeze?.(hostname)));
      }
    }
  };
  const timer = setInterval(sweep, opts.intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
