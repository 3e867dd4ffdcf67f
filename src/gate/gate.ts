import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { AcmeChallengeAnswers } from './acme-challenge.ts';
import type { GateBackend } from './backend.ts';
import { ClientConn } from './client-conn.ts';
import { metricsAndAccessLog, type AccessLogger } from './exchange-observer.ts';
import type { GateContext } from './gate-context.ts';
import { GateMetrics } from './metrics.ts';
import type { RoutingTable } from './routing-table.ts';
import { tlsServerOptions, type GateTlsOptions } from './tls.ts';
import { UpstreamPool } from './upstream-pool.ts';
import { WakeQueue } from './wake-queue.ts';

/** Options of {@link createGate}. */
export interface GateOptions {
  table: RoutingTable;
  backend: GateBackend;
  /** A browser asking for HTML gets a self-refreshing "starting…" page after this long; 0 disables it. Default 2000. */
  wakeHtmlAfterMs?: number;
  /** pino-compatible logger for the JSON access log; null or absent: no access log. */
  logger?: AccessLogger | null;
  tls?: GateTlsOptions;
  /** Largest request head accepted, in bytes (431 beyond). Default 16 KiB. */
  maxHeaderBytes?: number;
  /** Time for a request head to arrive once it started (and for the first one after connecting). Default 10 s. */
  headersTimeoutMs?: number;
  /** An idle keep-alive connection is closed after this long. Default 60 s. */
  keepAliveTimeoutMs?: number;
  /** A request body that stalls this long is abandoned (408). Default 30 s. */
  bodyTimeoutMs?: number;
  /** Idle pooled connections to instances are closed after this long. Default 4 s. */
  upstreamIdleMs?: number;
  /** Port that HTTP→HTTPS redirects name; default the port of the HTTPS listener (or 443). */
  httpsPort?: number;
  /** Answers to ACME HTTP-01 requests (`/.well-known/acme-challenge/<token>`, any host); absent: routed like any path. */
  acmeChallenge?: AcmeChallengeAnswers;
}

/** The visitor-facing proxy. */
export interface Gate {
  /** Starts the plain HTTP listener. */
  listen(host: string, port: number): Promise<AddressInfo>;
  /** Starts the HTTPS listener (needs `tls` in the options). */
  listenTls(host: string, port: number): Promise<AddressInfo>;
  /** Stops listening, ends idle connections, and waits (up to `graceMs`) for busy ones. */
  close(graceMs?: number): Promise<void>;
  /** Requests in flight plus open WebSockets and streams of one instance: non-zero means it is in use. */
  activeCount(hostname: string): number;
  /** Prometheus text, without host names (safe to serve without credentials). */
  metrics(): string;
  /** Per-host request series for the hosts `include` accepts (an owner's own, or all for the operator). */
  hostMetrics(include: (host: string) => boolean): string;
  /** Exposed in metrics as eph_instances_running. */
  setRunningInstances(n: number): void;
  /** Counts one idle reap (eph_idle_reaps_total). */
  countIdleReap(): void;
  /** Drops pooled connections to an instance that stopped. */
  forgetInstance(hostname: string): void;
  /**
   * Bytes the gate has read so far from the visitor connected from `remotePort`
   * (the socket's own count: nothing is added on the hot path); null when no
   * such visitor is connected. For diagnostics, and for tests that check what
   * the gate holds in memory for a visitor (e.g. during a wake).
   */
  bytesReadFrom(remotePort: number): number | null;
}

/**
 * Builds the gate: routes visitors by Host to instances, waking sleeping ones.
 *
 * @example
 * const gate = createGate({ table, backend: instanceService.gateBackend() });
 * const addr = await gate.listen('127.0.0.1', 8080);
 */
export function createGate(opts: GateOptions): Gate {
  const metrics = new GateMetrics();
  const pool = new UpstreamPool({ idleMs: opts.upstreamIdleMs ?? 4000 });
  pool.onConnect = () => metrics.upstreamConnect();
  let tlsPort = opts.httpsPort ?? 443;
  const ctx: GateContext = {
    table: opts.table,
    backend: opts.backend,
    pool,
    wakes: new WakeQueue(opts.backend, metrics),
    metrics,
    logger: opts.logger ?? null,
    observer: metricsAndAccessLog(metrics, opts.logger ?? null),
    wakeHtmlAfterMs: opts.wakeHtmlAfterMs ?? 2000,
    maxHeaderBytes: opts.maxHeaderBytes ?? 16 * 1024,
    headersTimeoutMs: opts.headersTimeoutMs ?? 10_000,
    keepAliveTimeoutMs: opts.keepAliveTimeoutMs ?? 60_000,
    bodyTimeoutMs: opts.bodyTimeoutMs ?? 30_000,
    httpsPort: () => tlsPort,
    acme: opts.acmeChallenge ?? null,
    active: new Map(),
    hostCache: new Map(),
    conns: new Set(),
  };
  const servers: Array<Server | TlsServer> = [];
  /** Every accepted socket, including TLS ones still in their handshake, so that close() can end them all. */
  const sockets = new Set<Socket>();
  const track = (s: Socket): void => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  };
  // One timer for every connection's deadlines, instead of a timer per connection or request.
  const tick = Math.max(50, Math.min(1000, Math.floor(Math.min(ctx.headersTimeoutMs, ctx.keepAliveTimeoutMs, ctx.bodyTimeoutMs) / 4)));
  const sweeper = setInterval(() => {
    const now = performance.now();
    for (const c of ctx.conns) c.checkTimeouts(now);
    pool.sweep(now);
    // Counts at 0 are kept between requests; only instances nobody is using leave the map.
    for (const [hostname, a] of ctx.active) if (a.n <= 0) ctx.active.delete(hostname);
  }, tick);
  sweeper.unref();

  const onPlain = (socket: Socket): void => {
    new ClientConn(socket, ctx, false);
  };
  const onTls = (socket: TLSSocket): void => {
    new ClientConn(socket, ctx, true);
  };

  function start(server: Server | TlsServer, host: string, port: number): Promise<AddressInfo> {
    server.on('connection', track);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        servers.push(server);
        resolve(server.address() as AddressInfo);
      });
    });
  }

  return {
    listen(host, port) {
      const server = createServer({ allowHalfOpen: true, noDelay: true }, onPlain);
      return start(server, host, port);
    },
    async listenTls(host, port) {
      if (opts.tls === undefined) throw new Error('createGate: listenTls needs the tls option');
      const server = createTlsServer(tlsServerOptions(opts.tls), onTls);
      // A failed handshake is the client's problem; never let it crash the gate.
      server.on('tlsClientError', (_err, socket) => socket.destroy());
      const addr = await start(server, host, port);
      if (opts.httpsPort === undefined) tlsPort = addr.port;
      return addr;
    },
    async close(graceMs = 5000) {
      clearInterval(sweeper);
      const closed = servers.splice(0).map((s) => new Promise<void>((r) => s.close(() => r())));
      for (const c of ctx.conns) c.closeIdle();
      const deadline = Date.now() + graceMs;
      while (ctx.conns.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      for (const c of ctx.conns) c.socket.destroy();
      for (const s of sockets) s.destroy();
      pool.close();
      await Promise.all(closed);
    },
    activeCount(hostname) {
      return ctx.active.get(hostname)?.n ?? 0;
    },
    metrics() {
      return metrics.render();
    },
    hostMetrics(include) {
      return metrics.renderHosts(include);
    },
    setRunningInstances(n) {
      metrics.setRunningInstances(n);
    },
    countIdleReap() {
      metrics.countIdleReap();
    },
    forgetInstance(hostname) {
      pool.drop(hostname);
    },
    bytesReadFrom(remotePort) {
      for (const c of ctx.conns) if (c.socket.remotePort === remotePort) return c.socket.bytesRead;
      return null;
    },
  };
}
