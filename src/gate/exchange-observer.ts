/**
 * Observability of the data plane as one hook: the connection reports each
 * exchange once, when it ends, and the observer counts it (metrics) and logs
 * it (access log). The connection knows nothing of either.
 */
import type { GateMetrics } from './metrics.ts';

/** pino-compatible: the gate logs one JSON object per request at info level. */
export interface AccessLogger {
  info(obj: object, msg?: string): void;
}

/**
 * One ended exchange. Each connection fills its own record and hands it over,
 * so that reporting allocates nothing; an observer must copy what it keeps.
 */
export class EndedExchange {
  /** The host of the route the request matched, '' when none (an unknown or bad host). */
  routeHost = '';
  /** The Host (or absolute-form host) the visitor sent, null when none. */
  requestedHost: string | null = null;
  instance: string | null = null;
  method = '';
  path = '';
  /** The status answered; 101 for an upgrade, 499 when the visitor left first. */
  status = 0;
  /** From the request's arrival to the end of its answer. */
  ms = 0;
  remote = '';
  tls = false;
}

/** Receives every ended exchange. */
export interface ExchangeObserver {
  ended(x: EndedExchange): void;
}

/** The gate's observer: the request metrics, and the JSON access log when a logger is given. */
export function metricsAndAccessLog(metrics: GateMetrics, logger: AccessLogger | null): ExchangeObserver {
  return {
    ended(x) {
      metrics.request(x.routeHost, x.status, x.ms / 1000);
      if (logger === null) return;
      logger.info({
        host: x.routeHost || x.requestedHost,
        instance: x.instance,
        method: x.method,
        path: x.path,
        status: x.status,
        ms: Math.round(x.ms * 1000) / 1000,
        remote: x.remote,
        tls: x.tls,
      });
    },
  };
}
