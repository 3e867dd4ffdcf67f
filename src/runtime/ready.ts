import { connect } from 'node:net';
import { EphError } from '../core/errors.ts';
import type { HostPort } from '../core/config.ts';

/**
 * Resolves once a TCP connection to `addr` succeeds; rejects with WAKE_TIMEOUT
 * after `timeoutMs`, or with `abort.reason` as soon as the signal fires (e.g.
 * the process exited while we were waiting).
 */
export async function waitReady(addr: HostPort, timeoutMs: number, abort?: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  // Short polls: a loopback connect costs microseconds, and every wait here is a visitor waiting.
  let delay = 5;
  for (;;) {
    if (abort?.aborted) throw abort.reason;
    if (await tryConnect(addr)) return;
    if (Date.now() >= deadline) {
      throw new EphError('WAKE_TIMEOUT', `did not accept connections on port ${addr.port} within ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 25);
  }
}

/** One TCP connection attempt: true when something accepts on `addr`. */
export function tryConnect(addr: HostPort): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(addr.port, addr.host);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.setTimeout(1000, () => {
      s.destroy();
      resolve(false);
    });
  });
}
