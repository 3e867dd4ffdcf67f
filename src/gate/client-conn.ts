import type { Socket } from 'node:net';
import type { HostPort } from '../core/config.ts';
import { isEphError } from '../core/errors.ts';
import { normalizeHost } from '../core/ids.ts';
import type { GateBackend } from './backend.ts';
import { ACME_CHALLENGE_PREFIX, challengeResponse, challengeToken, type AcmeChallengeAnswers } from './acme-challenge.ts';
import { PAGES, httpsRedirect, page, startingPage, unknownHostPage } from './error-pages.ts';
import {
  CHUNK_BAD,
  CHUNK_MORE,
  ChunkScanner,
  RequestHead,
  ResponseHead,
  cookieValue,
  parseRequestHead,
  parseResponseHeadBytes,
} from './http-parse.ts';
import type { GateMetrics } from './metrics.ts';
import { STICKY_COOKIE, type HostRoute, type RoutingTable } from './routing-table.ts';
import type { UpstreamConn, UpstreamOwner, UpstreamPool } from './upstream-pool.ts';
import type { WakeQueue } from './wake-queue.ts';

/** pino-compatible: the gate logs one JSON object per request at info level. */
export interface AccessLogger {
  info(obj: object, msg?: string): void;
}

/** Everything the connections of one gate share. Built once by createGate. */
export interface GateContext {
  table: RoutingTable;
  backend: GateBackend;
  pool: UpstreamPool;
  wakes: WakeQueue;
  metrics: GateMetrics;
  logger: AccessLogger | null;
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
  conns: Set<ClientConn>;
}

/** A mutable count, so that an exchange holds its instance's entry instead of looking it up again. */
export interface ActiveCount {
  n: number;
}

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
/** Landing buffer for visitor reads (see readIntoSharedBuffer); one suffices on a single-threaded event loop. */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);
/** Bytes read ahead of the current exchange (pipelined requests) before reading pauses. */
const STASH_LIMIT = 64 * 1024;
const MAX_RESPONSE_HEAD = 64 * 1024;
const HOST_CACHE_LIMIT = 4096;
/** A request that cannot be replayed only reuses connections idle for less than this (apps close idle ones after seconds). */
const SAFE_REUSE_MS = 1000;
/** A new connection to an instance must be up within this. */
const CONNECT_TIMEOUT_MS = 5000;
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

// Connection phases.
const P_HEAD = 0;
const P_EXCHANGE = 1;
const P_TUNNEL = 2;
/** The gate ended its side and drains what the client still sends, so the answer is not lost to a reset. */
const P_CLOSING = 3;
const P_CLOSED = 4;

// Response body framing.
const R_HEAD = 0;
const R_NONE = 1;
const R_LENGTH = 2;
const R_CHUNKED = 3;
const R_CLOSE = 4;
const R_DONE = 5;

/**
 * One visitor connection: reads request heads, routes each to an instance,
 * and forwards bytes both ways. Exchanges run one at a time (pipelined
 * requests wait in a bounded stash); listeners are attached once and all
 * per-request state lives in fields, so a keep-alive request allocates little
 * more than its forwarded head.
 */
export class ClientConn implements UpstreamOwner {
  readonly socket: Socket;
  readonly #ctx: GateContext;
  readonly #tls: boolean;
  readonly #remote: string;
  /** The forwarding lines that depend on the connection only (peer address, TLS), up to Forwarded's `host=`. */
  readonly #xfHead: string;
  #phase = P_HEAD;
  #paused = false;
  /** A partial request head. */
  #buf: Buffer | null = null;
  /** Bytes read past the current exchange's head: its body (until an upstream is ready) or pipelined requests. */
  #stash: Buffer | null = null;
  #driving = false;
  #served = 0;
  #connectedAt: number;
  #headStartedAt = 0;
  #idleSince = 0;
  #lastReadAt = 0;
  #closingSince = 0;
  #clientEnded = false;

  // The exchange in flight.
  readonly #rh = new RequestHead();
  #exchangeId = 0;
  #startAt = 0;
  #routeHost = '';
  #instance: string | null = null;
  #activeRef: ActiveCount | null = null;
  #fwdHead = '';
  #closeAfter = false;
  #upgrade = false;
  #isHead = false;
  #setCookie: string | null = null;
  #reqDone = true;
  #bodyRemaining = 0;
  #chunkedReq = false;
  readonly #reqScanner = new ChunkScanner();
  #retryable = false;
  #retries = 0;
  #woke = false;
  #waking = false;
  #htmlTimer: NodeJS.Timeout | null = null;
  // The last Host seen on this connection and what it led to: a keep-alive visitor
  // sends the same one every time, so routing is a string compare until the table changes.
  #rcRaw: string | null = null;
  #rcVersion = -1;
  #rcHost: string | null = null;
  #rcRoute: HostRoute | undefined = undefined;
  /** The forwarding lines for #rcRaw (see forwardingHead), built once per Host per connection. */
  #rcTail = '';
  #upstream: UpstreamConn | null = null;
  #headSent = false;
  #attachedAt = 0;
  /** The upstream cannot take more now: client reading pauses until it drains. */
  #upBlocked = false;
  /** The client cannot take more now: upstream reading paused until it drains. */
  #upstreamPaused = false;

  // The response in flight.
  readonly #rs = new ResponseHead();
  #resState = R_HEAD;
  #rbuf: Buffer | null = null;
  #resRemaining = 0;
  readonly #resScanner = new ChunkScanner();
  #gotResponse = false;
  #resStarted = false;
  #reusable = false;
  #status = 0;

  constructor(socket: Socket, ctx: GateContext, tls: boolean) {
    this.socket = socket;
    this.#ctx = ctx;
    this.#tls = tls;
    this.#remote = socket.remoteAddress ?? '';
    this.#xfHead = forwardingHead(this.#remote, tls);
    this.#connectedAt = this.#idleSince = performance.now();
    socket.setNoDelay(true);
    if (tls || !readIntoSharedBuffer(socket, READ_BUFFER, this.#onRead)) socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('error', noop);
    socket.on('close', this.#onClose);
    socket.on('drain', this.#onDrain);
    ctx.conns.add(this);
    ctx.metrics.connections++;
  }

  // ---- visitor side ---------------------------------------------------------

  /** Bytes in READ_BUFFER: parsed in place, copied only when kept past this call. */
  #onRead = (n: number): boolean => {
    if (this.#phase === P_HEAD) {
      this.#lastReadAt = performance.now();
      this.#onHeadBytes(READ_BUFFER.subarray(0, n), true);
    } else this.#onData(Buffer.from(READ_BUFFER.subarray(0, n)));
    return true;
  };

  #onData = (chunk: Buffer): void => {
    this.#lastReadAt = performance.now();
    switch (this.#phase) {
      case P_HEAD:
        this.#onHeadBytes(chunk, false);
        break;
      case P_EXCHANGE:
        if (!this.#reqDone && this.#headSent && this.#stash === null) {
          const used = this.#forwardBody(chunk, 0);
          if (used < chunk.length && this.#phase === P_EXCHANGE) this.#stashBytes(chunk.subarray(used));
        } else this.#stashBytes(chunk);
        break;
      case P_TUNNEL:
        if (this.#upstream !== null && !this.#upstream.socket.write(chunk)) {
          this.#upBlocked = true;
          this.#syncReading();
        }
        break;
      default:
        break; // closing: discard
    }
  };

  #stashBytes(b: Buffer): void {
    this.#stash = this.#stash === null ? b : Buffer.concat([this.#stash, b]);
    if (this.#stash.length > STASH_LIMIT) this.#syncReading();
  }

  /** `transient`: chunk is a view of READ_BUFFER, to be copied if kept. */
  #onHeadBytes(chunk: Buffer, transient: boolean): void {
    let b = chunk;
    if (this.#buf !== null) {
      b = Buffer.concat([this.#buf, chunk]);
      this.#buf = null;
      transient = false;
    }
    let start = 0;
    // RFC 9112 §2.2: empty lines before a request line are ignored.
    while (start + 1 < b.length && b[start] === 13 && b[start + 1] === 10) start += 2;
    if (start >= b.length) return;
    const idx = b.indexOf(CRLFCRLF, start);
    if (idx < 0) {
      if (b.length - start > this.#ctx.maxHeaderBytes) return this.#reject(PAGES.headersTooLarge, 431);
      if (chunk === b) this.#headStartedAt = this.#lastReadAt || performance.now();
      const rest = start === 0 ? b : b.subarray(start);
      this.#buf = transient ? Buffer.from(rest) : rest;
      return;
    }
    if (idx + 4 - start > this.#ctx.maxHeaderBytes) return this.#reject(PAGES.headersTooLarge, 431);
    if (idx + 4 === b.length) this.#stash = null;
    else this.#stash = transient ? Buffer.from(b.subarray(idx + 4)) : b.subarray(idx + 4);
    this.#startExchange(b.toString('latin1', start, idx + 4));
  }

  /** Runs the pipelined requests that arrived during the previous exchange. */
  #drive(): void {
    if (this.#driving) return;
    this.#driving = true;
    while (this.#phase === P_HEAD && this.#stash !== null) {
      const b = this.#stash;
      this.#stash = null;
      this.#onHeadBytes(b, false);
    }
    this.#driving = false;
    this.#syncReading();
  }

  #startExchange(h: string): void {
    const ctx = this.#ctx;
    const rh = this.#rh;
    this.#exchangeId++;
    // Read-ahead requests start now; the others when their bytes were read.
    this.#startAt = this.#driving ? performance.now() : this.#lastReadAt;
    this.#phase = P_EXCHANGE;
    this.#routeHost = '';
    this.#instance = null;
    this.#status = 0;
    this.#resStarted = false;
    if (!parseRequestHead(h, rh)) {
      const p = rh.error === 505 ? PAGES.badVersion : rh.error === 501 ? PAGES.notImplemented : PAGES.badRequest;
      return this.#reject(p, rh.error);
    }
    this.#isHead = rh.method === 'HEAD';
    this.#reqDone = rh.bodyless;
    this.#closeAfter = rh.wantsClose;
    const raw = rh.absoluteHost ?? rh.host;
    if (raw === null) return this.#reject(PAGES.badHost, 400);
    if (raw !== this.#rcRaw || ctx.table.version !== this.#rcVersion) this.#routeFor(raw);
    const host = this.#rcHost;
    if (host === null) return this.#reject(PAGES.badHost, 400);
    // For any host and before routing (and before an HTTPS redirect): the ACME directory asks over plain HTTP.
    if (ctx.acme !== null && rh.target.startsWith(ACME_CHALLENGE_PREFIX)) return this.#answerChallenge(ctx.acme, rh.target);
    const route = this.#rcRoute;
    if (route === undefined || route.targets.length === 0) {
      return this.#answer(unknownHostPage(host, !this.#reqDone || this.#closeAfter, this.#isHead), 404);
    }
    this.#routeHost = host;
    if (!this.#tls && route.httpsRedirect) {
      return this.#answer(httpsRedirect(host, ctx.httpsPort(), rh.target, !this.#reqDone || this.#closeAfter), 308);
    }
    let instance: string;
    this.#setCookie = null;
    if (route.cumulative === null) instance = route.targets[0]!.hostname;
    else {
      const sticky = cookieValue(rh.cookie, STICKY_COOKIE);
      instance = ctx.table.pick(route, sticky);
      if (sticky !== instance) this.#setCookie = `Set-Cookie: ${STICKY_COOKIE}=${instance}; Path=/; HttpOnly; SameSite=Lax\r\n`;
    }
    this.#instance = instance;
    let a = ctx.active.get(instance);
    if (a === undefined) ctx.active.set(instance, (a = { n: 0 }));
    a.n++;
    this.#activeRef = a;
    ctx.backend.touch(instance);

    this.#upgrade = rh.connUpgrade && rh.upgrade !== null;
    this.#fwdHead = this.#forwardHead(h, rh);
    this.#chunkedReq = rh.chunked;
    this.#bodyRemaining = rh.contentLength > 0 ? rh.contentLength : 0;
    if (rh.chunked) this.#reqScanner.reset();
    this.#retryable = this.#reqDone && IDEMPOTENT.has(rh.method);
    this.#retries = 0;
    this.#woke = false;
    this.#headSent = false;
    const up = ctx.backend.upstream(instance);
    if (up !== null) this.#attach(up, false, this.#startAt);
    else this.#wake();
    this.#syncReading();
  }

  /** Answers an ACME HTTP-01 request: from memory at once, else from the store (another replica's order). */
  #answerChallenge(acme: AcmeChallengeAnswers, target: string): void {
    const opts = { close: !this.#reqDone || this.#closeAfter, head: this.#isHead };
    const token = challengeToken(target);
    const known = token === null ? null : acme.answer(token);
    if (token === null || known !== null) return this.#answer(challengeResponse(known, opts), known === null ? 404 : 200);
    const id = this.#exchangeId;
    acme
      .lookup(token)
      .catch(() => null)
      .then((v) => {
        if (id !== this.#exchangeId || this.#phase !== P_EXCHANGE) return;
        this.#answer(challengeResponse(v, opts), v === null ? 404 : 200);
      });
  }

  /** Fills the route cache for Host value `raw`. */
  #routeFor(raw: string): void {
    const ctx = this.#ctx;
    let host = ctx.hostCache.get(raw);
    if (host === undefined) {
      host = normalizeHost(raw);
      if (ctx.hostCache.size >= HOST_CACHE_LIMIT) ctx.hostCache.clear();
      ctx.hostCache.set(raw, host);
    }
    this.#rcRaw = raw;
    this.#rcVersion = ctx.table.version;
    this.#rcHost = host;
    this.#rcRoute = host === null ? undefined : ctx.table.get(host);
    // raw passed the head parser and normalizeHost: no CR, LF, quote or backslash can be in it.
    this.#rcTail = `${this.#xfHead}"${raw}"\r\nX-Forwarded-Host: ${raw}\r\n`;
  }

  /** The head sent upstream: hop-by-hop and visitor-set forwarding lines dropped, ours added. */
  #forwardHead(h: string, rh: RequestHead): string {
    const drop = rh.drop;
    let s: string;
    let from: number;
    if (rh.absoluteHost === null) {
      s = '';
      from = 0;
    } else {
      s = `${rh.method} ${rh.target} HTTP/1.${rh.minor}\r\nHost: ${rh.absoluteHost}\r\n`;
      from = rh.headersStart;
    }
    for (let i = 0; i < drop.length; i += 2) {
      s += h.slice(from, drop[i]);
      from = drop[i + 1]!;
    }
    s += h.slice(from, h.length - 2);
    s += this.#rcTail;
    if (this.#upgrade) s += `Connection: upgrade\r\nUpgrade: ${rh.upgrade}\r\n`;
    return `${s}\r\n`;
  }

  // ---- waking ---------------------------------------------------------------

  #wake(): void {
    const id = this.#exchangeId;
    const instance = this.#instance!;
    this.#waking = true;
    this.#ctx.wakes.wake(instance).then(
      (up) => this.#onWoken(id, up),
      (err: unknown) => this.#onWakeFailed(id, err),
    );
    const rh = this.#rh;
    if (
      this.#htmlTimer === null &&
      this.#ctx.wakeHtmlAfterMs > 0 &&
      (rh.method === 'GET' || this.#isHead) &&
      this.#reqDone &&
      !this.#upgrade &&
      rh.accept !== null &&
      rh.accept.includes('text/html')
    ) {
      this.#htmlTimer = setTimeout(this.#onHtmlTimer, this.#ctx.wakeHtmlAfterMs, id);
      this.#htmlTimer.unref();
    }
  }

  #onWoken(id: number, up: HostPort): void {
    if (id !== this.#exchangeId || this.#phase !== P_EXCHANGE || !this.#waking) return;
    this.#waking = false;
    this.#clearHtmlTimer();
    this.#attach(up);
    this.#syncReading();
  }

  #onWakeFailed(id: number, err: unknown): void {
    if (id !== this.#exchangeId || this.#phase !== P_EXCHANGE || !this.#waking) return;
    this.#waking = false;
    this.#clearHtmlTimer();
    const close = !this.#reqDone || this.#closeAfter;
    const head = this.#isHead;
    const host = this.#routeHost;
    if (!isEphError(err)) {
      this.#ctx.logger?.info({ host, instance: this.#instance, err: String(err) }, 'wake failed');
      return this.#answer(page(502, 'Bad gateway', `The application at ${host} could not be started.`, { close, head }), 502);
    }
    switch (err.code) {
      case 'QUOTA_EXCEEDED':
        return this.#answer(
          page(503, 'Over the plan limit', `The application at ${host} cannot start now: ${err.message}.`, {
            close,
            head,
            retryAfter: err.retryAfter ?? 60,
          }),
          503,
        );
      case 'START_FAILED':
        return this.#answer(
          page(502, 'The application failed to start', `The application at ${host} failed to start: ${err.message}`, { close, head }),
          502,
        );
      case 'WAKE_TIMEOUT':
        return this.#answer(
          page(504, 'The application did not start in time', `The application at ${host} did not accept connections in time.`, {
            close,
            head,
          }),
          504,
        );
      case 'NOT_FOUND':
        return this.#answer(unknownHostPage(host, close, head), 404);
      default: {
        // UNAVAILABLE (e.g. a stopped static site) is the gate's own 503; other server errors are the app's 502.
        const status = err.code === 'UNAVAILABLE' ? 503 : err.status >= 500 ? 502 : err.status;
        return this.#answer(page(status, 'The application is unavailable', err.message, { close, head }), status);
      }
    }
  }

  #onHtmlTimer = (id: number): void => {
    this.#htmlTimer = null;
    if (id !== this.#exchangeId || this.#phase !== P_EXCHANGE || !this.#waking) return;
    // The wake carries on; the page reloads itself and lands on the instance once it is up.
    this.#waking = false;
    this.#answer(startingPage(this.#routeHost, 2, this.#isHead), 503);
  };

  #clearHtmlTimer(): void {
    if (this.#htmlTimer !== null) {
      clearTimeout(this.#htmlTimer);
      this.#htmlTimer = null;
    }
  }

  // ---- request forwarding ---------------------------------------------------

  #attach(up: HostPort, fresh = false, now = performance.now()): void {
    this.#resState = R_HEAD;
    this.#rbuf = null;
    this.#gotResponse = false;
    this.#upBlocked = false;
    this.#upstreamPaused = false;
    this.#attachedAt = now;
    const c = this.#ctx.pool.acquire(this.#instance!, up, this, now, fresh ? -1 : this.#retryable ? Infinity : SAFE_REUSE_MS);
    this.#upstream = c;
    // A new connection gets nothing until it is up: if connecting fails, nothing was sent, so any request may be retried.
    if (c.connected) this.#sendRequest(c);
  }

  onUpstreamConnect(c: UpstreamConn): void {
    if (c !== this.#upstream || this.#phase !== P_EXCHANGE) return;
    this.#sendRequest(c);
    this.#syncReading();
  }

  #sendRequest(c: UpstreamConn): void {
    const s = c.socket;
    this.#headSent = true;
    const stash = this.#stash;
    if (this.#reqDone || stash === null) {
      s.write(this.#fwdHead, 'latin1');
      return;
    }
    // Head and the body bytes already here leave in one writev.
    s.cork();
    s.write(this.#fwdHead, 'latin1');
    this.#stash = null;
    const used = this.#forwardBody(stash, 0);
    if (used < stash.length && this.#phase === P_EXCHANGE) this.#stash = stash.subarray(used);
    s.uncork();
  }

  /** Forwards request body bytes from b[start..]; returns where the body ended in b (or b.length). */
  #forwardBody(b: Buffer, start: number): number {
    let end: number;
    if (this.#chunkedReq) {
      const r = this.#reqScanner.scan(b, start, b.length);
      if (r === CHUNK_BAD) {
        this.#failExchange(PAGES.badRequest, 400);
        return b.length;
      }
      end = r === CHUNK_MORE ? b.length : r;
      if (r !== CHUNK_MORE) this.#reqDone = true;
    } else {
      end = start + Math.min(this.#bodyRemaining, b.length - start);
      this.#bodyRemaining -= end - start;
      if (this.#bodyRemaining === 0) this.#reqDone = true;
    }
    if (end > start && !this.#upstream!.socket.write(start === 0 && end === b.length ? b : b.subarray(start, end))) {
      this.#upBlocked = true;
    }
    if (this.#reqDone && this.#resState === R_DONE) this.#finish();
    return end;
  }

  onUpstreamDrain(c: UpstreamConn): void {
    if (c !== this.#upstream || !this.#upBlocked) return;
    this.#upBlocked = false;
    this.#syncReading();
  }

  // ---- response forwarding --------------------------------------------------

  onUpstreamData(c: UpstreamConn, chunk: Buffer): void {
    if (c !== this.#upstream) return;
    if (this.#phase === P_TUNNEL) {
      this.#toClient(chunk);
      return;
    }
    this.#gotResponse = true;
    let b = chunk;
    let i = 0;
    let from = 0;
    if (this.#resState === R_HEAD) {
      if (this.#rbuf !== null) {
        b = Buffer.concat([this.#rbuf, chunk]);
        this.#rbuf = null;
      }
      const rs = this.#rs;
      let headEnd: number;
      for (;;) {
        const idx = b.indexOf(CRLFCRLF, i);
        if (idx < 0) {
          if (b.length - i > MAX_RESPONSE_HEAD) return this.#failExchange(null, 502);
          this.#rbuf = i === 0 ? b : b.subarray(i);
          return;
        }
        headEnd = idx + 4;
        if (!parseResponseHeadBytes(b, i, headEnd, rs)) return this.#failExchange(null, 502);
        if (rs.status >= 200) break;
        if (rs.status === 101) {
          if (!this.#upgrade) return this.#failExchange(null, 502);
          return this.#startTunnel(b.subarray(i));
        }
        // Interim responses (100 Continue, 103 Early Hints) pass through; the final one follows.
        this.#resStarted = true;
        this.#toClient(b.subarray(i, headEnd));
        i = headEnd;
        if (i === b.length) return;
      }
      this.#status = rs.status;
      this.#resStarted = true;
      if (this.#isHead || rs.status === 204 || rs.status === 304) this.#resState = R_NONE;
      else if (rs.chunked) {
        this.#resState = R_CHUNKED;
        this.#resScanner.reset();
      } else if (rs.contentLength >= 0) {
        this.#resState = R_LENGTH;
        this.#resRemaining = rs.contentLength;
      } else this.#resState = R_CLOSE;
      if (this.#upgrade) this.#closeAfter = true; // a declined upgrade: the client may not expect reuse
      this.#reusable = rs.minor === 1 && !rs.connClose && this.#resState !== R_CLOSE;
      if (
        this.#setCookie !== null ||
        (this.#closeAfter && !rs.connClose) ||
        this.#resState === R_CLOSE ||
        (rs.transferEncoding && rs.sawLength)
      ) {
        this.#toClient(this.#rewriteHead(b.toString('latin1', i, headEnd)));
        from = headEnd;
      } else from = i;
      i = headEnd;
    }
    let end = b.length;
    switch (this.#resState) {
      case R_NONE:
        end = i;
        this.#resState = R_DONE;
        break;
      case R_LENGTH: {
        const n = Math.min(this.#resRemaining, b.length - i);
        this.#resRemaining -= n;
        end = i + n;
        if (this.#resRemaining === 0) this.#resState = R_DONE;
        break;
      }
      case R_CHUNKED: {
        const r = this.#resScanner.scan(b, i, b.length);
        if (r === CHUNK_BAD) {
          if (from < i) this.#toClient(b.subarray(from, i));
          return this.#failExchange(null, 502);
        }
        if (r !== CHUNK_MORE) {
          end = r;
          this.#resState = R_DONE;
        }
        break;
      }
      default:
        break; // R_CLOSE: everything until the app closes
    }
    if (end > from) this.#toClient(from === 0 && end === b.length ? b : b.subarray(from, end));
    if (this.#resState === R_DONE) {
      // Bytes after the response were never asked for: that connection cannot be trusted again.
      if (end < b.length) this.#reusable = false;
      if (this.#reqDone) this.#finish();
      else this.#finishEarly();
    }
  }

  /**
   * The response head with the gate's changes: the sticky cookie, Connection: close
   * when closing, and no Content-Length next to a Transfer-Encoding (RFC 9112 §6.3:
   * a proxy removes it, or the client might frame the body by it).
   */
  #rewriteHead(h: string): string {
    const rs = this.#rs;
    const closing = this.#closeAfter || this.#resState === R_CLOSE;
    let s = h.slice(0, h.length - 2);
    if (closing && rs.drop.length > 0) {
      s = '';
      let from = 0;
      for (let k = 0; k < rs.drop.length; k += 2) {
        s += h.slice(from, rs.drop[k]);
        from = rs.drop[k + 1]!;
      }
      s += h.slice(from, h.length - 2);
    }
    if (rs.transferEncoding && rs.sawLength) s = withoutContentLength(s);
    if (this.#setCookie !== null) s += this.#setCookie;
    if (closing) {
      s += 'Connection: close\r\n';
      this.#closeAfter = true;
    }
    return `${s}\r\n`;
  }

  #toClient(b: Buffer | string): void {
    const ok = typeof b === 'string' ? this.socket.write(b, 'latin1') : this.socket.write(b);
    if (!ok && this.#upstream !== null && !this.#upstreamPaused) {
      this.#upstreamPaused = true;
      this.#upstream.socket.pause();
    }
  }

  #onDrain = (): void => {
    if (this.#upstreamPaused && this.#upstream !== null) {
      this.#upstreamPaused = false;
      this.#upstream.socket.resume();
    }
  };

  onUpstreamEnd(c: UpstreamConn): void {
    if (c !== this.#upstream) return;
    if (this.#phase === P_TUNNEL) {
      this.socket.end();
      return;
    }
    if (this.#resState === R_CLOSE) {
      this.#resState = R_DONE;
      this.#reusable = false;
      this.#closeAfter = true;
      if (this.#reqDone) this.#finish();
      else this.#finishEarly();
      return;
    }
    c.socket.destroy(); // handled as a close below
  }

  onUpstreamClose(c: UpstreamConn, err: NodeJS.ErrnoException | null): void {
    if (c !== this.#upstream) return;
    this.#upstream = null;
    if (this.#phase === P_TUNNEL) {
      this.socket.destroySoon();
      return;
    }
    if (this.#phase !== P_EXCHANGE) return;
    if (!this.#gotResponse) {
      const code = err?.code;
      if (!this.#headSent) {
        // Never connected: the app behind a "running" upstream is gone. Wake it again (once), then retry.
        if (!this.#woke && (code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EPIPE' || err === null)) {
          this.#woke = true;
          return this.#wake();
        }
      } else if (this.#retryable && this.#retries < 2) {
        this.#retries++;
        this.#headSent = false;
        if (c.reused) {
          // An idle keep-alive connection the app had closed: try a new one (its idle siblings may be just as stale).
          const up = this.#ctx.backend.upstream(this.#instance!);
          if (up !== null) return this.#attach(up, true);
          return this.#wake();
        }
        if (!this.#woke) {
          this.#woke = true;
          return this.#wake();
        }
      }
      const close = !this.#reqDone || this.#closeAfter;
      return this.#failExchange(
        page(502, 'Bad gateway', `The application at ${this.#routeHost} closed the connection without answering.`, {
          close,
          head: this.#isHead,
        }),
        502,
      );
    }
    // Cut off in the middle of a response: the client cannot be told but by closing.
    this.#failExchange(null, 502);
  }

  // ---- WebSockets and other upgrades -----------------------------------------

  #startTunnel(head: Buffer): void {
    const ctx = this.#ctx;
    this.#phase = P_TUNNEL;
    this.#status = 101;
    ctx.metrics.tunnels++;
    this.#record();
    this.#toClient(head);
    const stash = this.#stash;
    this.#stash = null;
    if (stash !== null && this.#upstream !== null && !this.#upstream.socket.write(stash)) this.#upBlocked = true;
    if (this.#clientEnded) this.#upstream?.socket.end();
    this.#syncReading();
  }

  // ---- ends of exchanges ----------------------------------------------------

  /** Counts and logs the exchange; returns the time it ended. */
  #record(): number {
    const ctx = this.#ctx;
    const now = performance.now();
    const ms = now - this.#startAt;
    ctx.metrics.request(this.#routeHost, this.#status, ms / 1000);
    if (ctx.logger !== null) {
      ctx.logger.info({
        host: this.#routeHost || (this.#rh.absoluteHost ?? this.#rh.host),
        instance: this.#instance,
        method: this.#rh.method,
        path: this.#rh.target,
        status: this.#status,
        ms: Math.round(ms * 1000) / 1000,
        remote: this.#remote,
        tls: this.#tls,
      });
    }
    return now;
  }

  #release(): void {
    this.#instance = null;
    const a = this.#activeRef;
    if (a === null) return;
    this.#activeRef = null;
    a.n--;
  }

  /** Request and response both complete. */
  #finish(): void {
    const c = this.#upstream;
    this.#upstream = null;
    const now = this.#record();
    this.#release();
    this.#served++;
    if (c !== null) {
      if (this.#upstreamPaused) c.socket.resume();
      c.owner = null;
      if (this.#reusable) this.#ctx.pool.release(c, now);
      else c.socket.destroy();
    }
    this.#upstreamPaused = false;
    this.#upBlocked = false;
    if (this.#closeAfter || this.#clientEnded) return this.#closeClient();
    this.#phase = P_HEAD;
    this.#idleSince = now;
    this.#drive();
  }

  /** The app answered before the request body was all sent: the rest is not forwarded, and the connection closes. */
  #finishEarly(): void {
    this.#reusable = false;
    this.#closeAfter = true;
    this.#reqDone = true;
    this.#finish();
  }

  /** Answers with a page of the gate's own, in place of the app (not yet started answering). */
  #answer(p: Buffer, status: number): void {
    this.#status = status;
    this.#resStarted = true;
    this.socket.write(p);
    this.#resState = R_DONE;
    this.#reusable = false;
    if (!this.#reqDone) this.#closeAfter = true;
    this.#reqDone = true;
    this.#finish();
  }

  /** Rejects a request that cannot be read safely: answer, then close. */
  #reject(p: Buffer, status: number): void {
    this.#closeAfter = true;
    this.#reqDone = false;
    this.#upstream = null;
    this.#phase = P_EXCHANGE;
    this.#answer(p, status);
  }

  /** Aborts the exchange: a page if nothing was answered yet, else a cut connection. */
  #failExchange(p: Buffer | null, status: number): void {
    const c = this.#upstream;
    this.#upstream = null;
    c?.socket.destroy();
    if (this.#phase !== P_EXCHANGE) return;
    if (!this.#resStarted) {
      // A request read whole leaves the connection in a clean state: keep it, as the page says.
      const close = !this.#reqDone || this.#closeAfter;
      this.#answer(p ?? page(status, 'Bad gateway', 'The application sent a malformed response.', { close, head: this.#isHead }), status);
      return;
    }
    this.#status = status;
    this.#record();
    this.#release();
    this.#phase = P_CLOSED;
    this.socket.destroy();
  }

  #closeClient(): void {
    this.#phase = P_CLOSING;
    this.#closingSince = performance.now();
    this.#buf = this.#stash = null;
    this.socket.end();
    this.#syncReading();
  }

  #onEnd = (): void => {
    this.#clientEnded = true;
    switch (this.#phase) {
      case P_HEAD:
        this.#phase = P_CLOSING;
        this.socket.end();
        break;
      case P_TUNNEL:
        this.#upstream?.socket.end();
        break;
      case P_CLOSING:
        this.socket.destroy();
        break;
      case P_EXCHANGE:
        // A body cut short can never be completed; a whole request is still answered.
        if (!this.#reqDone) this.#failExchange(PAGES.badRequest, 400);
        break;
      default:
        break;
    }
  };

  #onClose = (): void => {
    const ctx = this.#ctx;
    const was = this.#phase;
    this.#phase = P_CLOSED;
    this.#clearHtmlTimer();
    ctx.conns.delete(this);
    ctx.metrics.connections--;
    if (was === P_TUNNEL) ctx.metrics.tunnels--;
    if (was === P_EXCHANGE && this.#instance !== null) {
      // The visitor left before the answer (nginx's 499).
      if (this.#status === 0) this.#status = 499;
      this.#record();
    }
    this.#release();
    const c = this.#upstream;
    this.#upstream = null;
    c?.socket.destroy();
  };

  /** Reads from the visitor only when there is somewhere for the bytes to go. */
  #syncReading(): void {
    let want: boolean;
    switch (this.#phase) {
      case P_HEAD:
        want = true;
        break;
      case P_EXCHANGE:
        want = this.#reqDone
          ? this.#stash === null || this.#stash.length <= STASH_LIMIT
          : this.#headSent && !this.#upBlocked && this.#stash === null;
        break;
      case P_TUNNEL:
        want = !this.#upBlocked;
        break;
      case P_CLOSING:
        want = true;
        break;
      default:
        return;
    }
    if (want === this.#paused) {
      this.#paused = !want;
      if (want) this.socket.resume();
      else this.socket.pause();
    }
  }

  /** Called about once a second by the gate: slow clients and idle keep-alive connections. */
  checkTimeouts(now: number): void {
    const ctx = this.#ctx;
    switch (this.#phase) {
      case P_HEAD:
        if (this.#buf !== null) {
          if (now - this.#headStartedAt > ctx.headersTimeoutMs) {
            this.#phase = P_EXCHANGE;
            this.#reject(PAGES.timeout, 408);
          }
        } else if (now - this.#idleSince > (this.#served === 0 ? ctx.headersTimeoutMs : ctx.keepAliveTimeoutMs)) {
          this.socket.destroy();
        }
        break;
      case P_EXCHANGE:
        // An app that accepts no connection (and refuses none) is treated like one that refused.
        if (this.#upstream !== null && !this.#upstream.connected && now - this.#attachedAt > CONNECT_TIMEOUT_MS) {
          this.#upstream.socket.destroy();
          break;
        }
        if (!this.#reqDone && this.#headSent && !this.#upBlocked && now - Math.max(this.#lastReadAt, this.#startAt) > ctx.bodyTimeoutMs) {
          this.#failExchange(PAGES.timeout, 408);
        }
        break;
      case P_CLOSING:
        if (now - this.#closingSince > 2000) this.socket.destroy();
        break;
      default:
        break;
    }
  }

  /** Ends an idle connection (gate shutdown); busy ones finish their exchange first. */
  closeIdle(): void {
    if (this.#phase === P_HEAD && this.#buf === null) this.socket.destroy();
    else this.#closeAfter = true;
  }

  get connectedAt(): number {
    return this.#connectedAt;
  }
}

function noop(): void {}

/** A head (lines ending in CRLF, no final empty line) without its Content-Length lines. */
function withoutContentLength(head: string): string {
  let out = '';
  let pos = 0;
  while (pos < head.length) {
    const eol = head.indexOf('\r\n', pos);
    const end = eol < 0 ? head.length : eol + 2;
    const colon = head.indexOf(':', pos);
    if (!(colon === pos + 14 && head.slice(pos, colon).toLowerCase() === 'content-length')) out += head.slice(pos, end);
    pos = end;
  }
  return out;
}

/**
 * The start of the forwarding lines the gate adds to every request, from what
 * it knows itself: the peer's address and whether the visitor came over TLS.
 * `X-Forwarded-For` holds the peer only (the gate is the edge: any chain a
 * visitor sends is a claim, dropped with the rest of its forwarding lines).
 * Ends inside `Forwarded`, just before its host=, which is per Host.
 */
export function forwardingHead(remote: string, tls: boolean): string {
  // An IPv4 visitor on a dual-stack listener shows as ::ffff:a.b.c.d; apps expect a.b.c.d.
  const addr = remote.startsWith('::ffff:') && remote.includes('.') ? remote.slice(7) : remote || 'unknown';
  const proto = tls ? 'https' : 'http';
  // RFC 7239 §6: an IPv6 address is quoted and bracketed.
  const node = addr.includes(':') ? `"[${addr}]"` : addr;
  return `X-Forwarded-For: ${addr}\r\nX-Real-IP: ${addr}\r\nX-Forwarded-Proto: ${proto}\r\nForwarded: for=${node};proto=${proto};host=`;
}

/** net.Socket's slots behind the `onread` option of net.connect; null when this Node has none. */
let readSlots: { buffer: symbol; callback: symbol } | null | undefined;

/**
 * Makes an accepted socket read into `buf` and call `cb(n)` instead of
 * emitting 'data' with a fresh Buffer per read. Node documents this (the
 * `onread` option) only for sockets it connects; accepted ones use the same
 * machinery, reached here through its internal slots. Per read it saves an
 * ArrayBuffer whose external memory made V8 scavenge often. Returns false,
 * changing nothing, when this Node lacks the slots: 'data' events then serve.
 */
export function readIntoSharedBuffer(socket: Socket, buf: Buffer, cb: (n: number) => boolean): boolean {
  if (readSlots === undefined) {
    const syms = Object.getOwnPropertySymbols(socket);
    const buffer = syms.find((x) => x.description === 'kBuffer');
    const callback = syms.find((x) => x.description === 'kBufferCb');
    readSlots = buffer !== undefined && callback !== undefined ? { buffer, callback } : null;
  }
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (b: Uint8Array) => void } | null })._handle;
  const slots = socket as unknown as Record<symbol, unknown>;
  if (readSlots === null || typeof handle?.useUserBuffer !== 'function' || slots[readSlots.buffer] !== null || socket.readableLength > 0) {
    return false;
  }
  slots[readSlots.buffer] = buf;
  slots[readSlots.callback] = cb;
  handle.useUserBuffer(buf);
  return true;
}
