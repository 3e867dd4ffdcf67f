/** What the idle reaper needs; the instance service supplies it. */
export interface IdleReaperOptions {
  intervalMs: number;
  idleTimeoutMs: number;
  /** Running instances with their last access time (ms since the epoch). */
  listRunning: () => Array<{ hostname: string; accessAt: number }>;
  /** Requests in flight plus open WebSockets and streams (the gate's activeCount). */
  activeCount: (hostname: string) => number;
  stop: (hostname: string) => Promise<void>;
  onReap?: (hostname: string) => void;
  onError?: (hostname: string, err: unknown) => void;
  now?: () => number;
}

/**
 * Stops instances that nobody used for longer than the idle timeout. An
 * instance with an open connection is busy however old its last request is
 * (a WebSocket may carry traffic for hours after its upgrade request).
 *
 * @example
 * const reaper = startIdleReaper({ intervalMs: 10_000, idleTimeoutMs: 30 * 60_000,
 *   listRunning, activeCount: gate.activeCount, stop: (h) => instances.stop(h) });
 * // at shutdown
 * reaper.stop();
 */
export function startIdleReaper(opts: IdleReaperOptions): { stop(): void } {
  const now = opts.now ?? Date.now;
  /** Stops in flight, so that a slow stop is not started twice by the next sweep. */
  const stopping = new Set<string>();
  const sweep = (): void => {
    const t = now();
    for (const { hostname, accessAt } of opts.listRunning()) {
      if (stopping.has(hostname) || t - accessAt <= opts.idleTimeoutMs || opts.activeCount(hostname) > 0) continue;
      stopping.add(hostname);
      opts.stop(hostname).then(
        () => {
          stopping.delete(hostname);
          opts.onReap?.(hostname);
        },
        (err: unknown) => {
          stopping.delete(hostname);
          opts.onError?.(hostname, err);
        },
      );
    }
  };
  const timer = setInterval(sweep, opts.intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
