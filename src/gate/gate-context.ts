import type { Socket } from 'node:net';
import type { AcmeChallengeAnswers } from './acme-challenge.ts';
import type { GateBackend } from './backend.ts';
import type { AccessLogger, ExchangeObserver } from './exchange-observer.ts';
import type { GateMetrics } from './metrics.ts';
import type { RoutingTable } from './routing-table.ts';
import type { UpstreamPool } from './upstream-pool.ts';
import type { WakeQueue } from './wake-queue.ts';

export type { AccessLogger } from './exchange-observer.ts';

/** Everything the connections of one gate share. Built once by createGate. */
export interface GateContext {
  table: RoutingTable;
  backend: GateBackend;
  pool: UpstreamPool;
  wakes: WakeQueue;
  metrics: GateMetrics;
  logger: AccessLogger | null;
  /** Told of every exchange when it ends (metrics and access log). */
  observer: ExchangeObserver;
  wakeHtmlAfterMs: number;
  maxHeaderBytes: number;
  headersTimeoutMs: number;
  keepAliveTimeoutMs: number;
  bodyTimeoutMs: number;
  /** Port that HTTP→HTTPS redirects point at. */
  httpsPort: () => number;
  /** ACME HTTP-01 answers (automatic HTTPS); null when the cloud orders no certificates. */
  acme: AcmeChallengeAnswers | null;
  /** Instance hostname → exchanges in flight and open tunnels. Entries stay at 0 (no churn per request) until the gate's sweep. */
  active: Map<string, ActiveCount>;
  /** Raw Host value → normalized host, so that repeat visitors skip normalizeHost. */
  hostCache: Map<string, string | null>;
  conns: Set<GateConn>;
}

/** What the gate itself asks of a visitor connection. */
export interface GateConn {
  readonly socket: Socket;
  /** Called about once a second: slow clients and idle keep-alive connections. */
  checkTimeouts(now: number): void;
  /** Ends an idle connection (gate shutdown); busy ones finish their exchange first. */
  closeIdle(): void;
}

/** A mutable count, so that an exchange holds its instance's entry instead of looking it up again. */
export interface ActiveCount {
  n: number;
}
