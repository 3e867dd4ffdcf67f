import { request } from 'node:http';
import type { HostPort } from '../core/config.ts';

/** Outcome of a health check; `reason` is written for the user who asked for the switch. */
export interface HealthResult {
  ok: boolean;
  /** Status of the last answer, null when none came. */
  status: number | null;
  reason: string;
  attempts: number;
}

/**
 * Decides whether an upstream may receive a route's traffic. The route
 * service wakes the instance first, then asks this with the time left.
 */
export interface HealthCheck {
  /**
   * Resolves (never rejects) once `upstream` answers `GET path` with a status
   * below 500, or when `timeoutMs` runs out. `host` is sent as the Host
   * header: the domain the instance is about to serve.
   */
  check(upstream: HostPort, host: string, path: string, timeoutMs: number): Promise<HealthResult>;
}

export interface HttpHealthCheckOptions {
  /** First pause between attempts; doubles up to `maxRetryDelayMs`. Default 100 ms. */
  retryDelayMs?: number;
  /** Default 1 s. */
  maxRetryDelayMs?: number;
}

type Attempt = { status: number } | { error: string };

/**
 * Real HTTP health check against the instance's upstream, bypassing the gate.
 * It retries refused connections and 5xx answers until the deadline, because
 * an app that has just been woken often accepts connections a moment before
 * it can serve.
 *
 * @example
 * const res = await new HttpHealthCheck().check({ host: '10.0.0.2', port: 8080 }, 'www.example.org', '/health', 30_000);
 * if (!res.ok) console.error(res.reason);
 */
export class HttpHealthCheck implements HealthCheck {
  readonly #retryDelayMs: number;
  readonly #maxRetryDelayMs: number;

  constructor(opts: HttpHealthCheckOptions = {}) {
    this.#retryDelayMs = opts.retryDelayMs ?? 100;
    this.#maxRetryDelayMs = opts.maxRetryDelayMs ?? 1000;
  }

  async check(upstream: HostPort, host: string, path: string, timeoutMs: number): Promise<HealthResult> {
    const deadline = Date.now() + timeoutMs;
    let delay = this.#retryDelayMs;
    let attempts = 0;
    let last: Attempt = { error: 'no attempt was made' };
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      attempts++;
      last = await probe(upstream, host, path, left);
      if ('status' in last && last.status < 500) {
        return { ok: true, status: last.status, reason: `GET ${path} answered ${last.status}`, attempts };
      }
      if (deadline - Date.now() <= delay) break;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, this.#maxRetryDelayMs);
    }
    const what = 'status' in last ? `answered ${last.status}` : last.error;
    return {
      ok: false,
      status: 'status' in last ? last.status : null,
      reason: `GET ${path} ${what} (${attempts} attempt${attempts === 1 ? '' : 's'} within ${timeoutMs} ms)`,
      attempts,
    };
  }
}

/** One GET; settles on the status line, so a slow or endless body does not hold the check. */
function probe(upstream: HostPort, host: string, path: string, timeoutMs: number): Promise<Attempt> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (a: Attempt): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(a);
    };
    const req = request(
      {
        host: upstream.host,
        port: upstream.port,
        path,
        method: 'GET',
        // A fresh connection each time: a pooled socket could be one the app is about to drop.
        agent: false,
        headers: { host, 'user-agent': 'ephemeric-health-check', accept: '*/*', connection: 'close' },
      },
      (res) => {
        res.resume();
        done({ status: res.statusCode ?? 0 });
      },
    );
    const timer = setTimeout(() => done({ error: `got no answer within ${timeoutMs} ms` }), timeoutMs);
    req.on('error', (e: NodeJS.ErrnoException) => done({ error: `failed: ${e.code ?? e.message}` }));
    req.end();
  });
}
