import { connect } from 'node:net';
import { EphError } from '../core/errors.ts';
import type { HostPort } from '../core/config.ts';

/**
 * Resolves once a TCP connection to `addr` succeeds; rejects with WAKE_TIMEOUT
 * after `timeoutMs`, or with `abort.reason` as soon as the signal fires (e.g.
 * the process exited while we were waiting).
 */
export async function waitReady(addr: HostPort, timeoutMs: number, abort?: AbortSignal): Promise<void> {
  const started = Date.now();
  const deadline = started + timeoutMs;
  for (;;) {
    if (abort?.aborted) throw abort.reason;
    if (await tryConnect(addr)) return;
    const now = Date.now();
    if (now >= deadline) {
      throw new EphError('WAKE_TIMEOUT', `did not accept connections on port ${addr.port} within ${timeoutMs} ms`);
    }
    // A refused connect costs tens of microseconds and every wait here is a visitor waiting: retry
    // every millisecond while a small app may be booting (each poll interval is added to its boot,
    // half of it on average), then back off for the slow starters (a Smalltalk image takes seconds).
    const elapsed = now - started;
    await new Promise((r) => setTimeout(r, elapsed < 1000 ? 1 : elapsed < 5000 ? 5 : 25));
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
