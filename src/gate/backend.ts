import type { HostPort } from '../core/config.ts';

/**
 * What the gate asks of the rest of the cloud. The instance service
 * implements it; the gate never touches the store or a driver itself.
 */
export interface GateBackend {
  /** Upstream of an instance that is running now, or null when it must be woken. Synchronous and cheap. */
  upstream(hostname: string): HostPort | null;
  /**
   * Starts a sleeping instance (concurrent calls share one start) and resolves
   * once it accepts connections. Rejects with an EphError: QUOTA_EXCEEDED (the
   * gate answers 503 + Retry-After), START_FAILED (502), WAKE_TIMEOUT (504),
   * NOT_FOUND (404).
   */
  wake(hostname: string): Promise<HostPort>;
  /** Records activity on an instance; called on every request, so it must be O(1) and allocation-free. */
  touch(hostname: string): void;
}
