/**
 * One visitor connection, its visitor side (third of the three layers, see
 * exchange-state.ts): read request heads (pipelined ones wait in a bounded
 * stash), route each by its Host to an instance, wake a sleeping one, and
 * handle the visitor's timeouts and close. Start reading here: a request
 * enters at #onRead / #onData → #onHeadBytes → #startExchange, which either
 * answers at once (decisions.ts) or attaches to the instance (upstream-leg.ts)
 * and ends in exchange-state.ts (finish, answer, failExchange).
 */
import type { Socket } from 'node:net';
import type { HostPort } from '../core/config.ts';
import { normalizeHost } from '../core/ids.ts';
import { ACME_CHALLENGE_PREFIX, challengeResponse, challengeToken, type AcmeChallengeAnswers } from './acme-challenge.ts';
import {
  ROUTE_REDIRECT,
  ROUTE_UNKNOWN,
  chooseInstance,
  isRetryable,
  rejectionPage,
  routeAction,
  wakeFailureAnswer,
  wantsStartingPage,
} from './decisions.ts';
import { PAGES, httpsRedirect, startingPage, unknownHostPage } from './error-pages.ts';
import { P_CLOSED, P_CLOSING, P_EXCHANGE, P_HEAD, P_TUNNEL, STASH_LIMIT } from './exchange-state.ts';
import { forwardingHead, forwardingLines, requestHeadToForward } from './forward-heads.ts';
import type { GateConn, GateContext } from './gate-context.ts';
import { parseRequestHead } from './http-parse.ts';
import { readIntoSharedBuffer } from './read-into-shared-buffer.ts';
import type { HostRoute } from './routing-table.ts';
import { UpstreamLeg } from './upstream-leg.ts';

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
/** Landing buffer for visitor reads (see readIntoSharedBuffer); one suffices on a single-threaded event loop. */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);
const HOST_CACHE_LIMIT = 4096;
/** A new connection to an instance must be up within this. */
const CONNECT_TIMEOUT_MS = 5000;

export class ClientConn extends UpstreamLeg implements GateConn {
  /** The forwarding lines that depend on the connection only (peer address, TLS), up to Forwarded's `host=`. */
  readonly #xfHead: string;
  #driving = false;
  readonly #connectedAt: number;
  #headStartedAt = 0;
  #lastReadAt = 0;
  #exchangeId = 0;
  #waking = false;
  #htmlTimer: NodeJS.Timeout | null = null;
  // The last Host seen on this connection and what it led to: a keep-alive visitor
  // sends the same one every time, so routing is a string compare until the table changes.
  #rcRaw: string | null = null;
  #rcVersion = -1;
  #rcHost: string | null = null;
  #rcRoute: HostRoute | undefined = undefined;
  /** The forwarding lines for #rcRaw (see forwardingLines), built once per Host per connection. */
  #rcTail = '';

  constructor(socket: Socket, ctx: GateContext, tls: boolean) {
    super(socket, ctx, tls);
    this.#xfHead = forwardingHead(this.remote, tls);
    this.#connectedAt = this.idleSince = performance.now();
    socket.setNoDelay(true);
    if (tls || !readIntoSharedBuffer(socket, READ_BUFFER, this.#onRead)) socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('error', noop);
    socket.on('close', this.#onClose);
    socket.on('drain', this.onDrain);
    ctx.conns.add(this);
    ctx.metrics.connections++;
  }

  // ---- visitor side ---------------------------------------------------------

  /** Bytes in READ_BUFFER: parsed in place, copied only when kept past this call. */
  #onRead = (n: number): boolean => {
    if (this.phase === P_HEAD) {
      this.#lastReadAt = performance.now();
      this.#onHeadBytes(READ_BUFFER.subarray(0, n), true);
    } else this.#onData(Buffer.from(READ_BUFFER.subarray(0, n)));
    return true;
  };

  #onData = (chunk: Buffer): void => {
    this.#lastReadAt = performance.now();
    switch (this.phase) {
      case P_HEAD:
        this.#onHeadBytes(chunk, false);
        break;
      case P_EXCHANGE:
        if (!this.reqDone && this.headSent && this.stash === null) {
          const used = this.forwardBody(chunk, 0);
          if (used < chunk.length && this.phase === P_EXCHANGE) this.#stashBytes(chunk.subarray(used));
        } else this.#stashBytes(chunk);
        break;
      case P_TUNNEL:
        if (this.upstream !== null && !this.upstream.socket.write(chunk)) {
          this.upBlocked = true;
          this.syncReading();
        }
        break;
      default:
        break; // closing: discard
    }
  };

  #stashBytes(b: Buffer): void {
    this.stash = this.stash === null ? b : Buffer.concat([this.stash, b]);
    if (this.stash.length > STASH_LIMIT) this.syncReading();
  }

  /** `transient`: chunk is a view of READ_BUFFER, to be copied if kept. */
  #onHeadBytes(chunk: Buffer, transient: boolean): void {
    let b = chunk;
    if (this.buf !== null) {
      b = Buffer.concat([this.buf, chunk]);
      this.buf = null;
      transient = false;
    }
    let start = 0;
    // RFC 9112 §2.2: empty lines before a request line are ignored.
    while (start + 1 < b.length && b[start] === 13 && b[start + 1] === 10) start += 2;
    if (start >= b.length) return;
    const idx = b.indexOf(CRLFCRLF, start);
    if (idx < 0) {
      if (b.length - start > this.ctx.maxHeaderBytes) return this.reject(PAGES.headersTooLarge, 431);
      if (chunk === b) this.#headStartedAt = this.#lastReadAt || performance.now();
      const rest = start === 0 ? b : b.subarray(start);
      this.buf = transient ? Buffer.from(rest) : rest;
      return;
    }
    if (idx + 4 - start > this.ctx.maxHeaderBytes) return this.reject(PAGES.headersTooLarge, 431);
    if (idx + 4 === b.length) this.stash = null;
    else this.stash = transient ? Buffer.from(b.subarray(idx + 4)) : b.subarray(idx + 4);
    this.#startExchange(b.toString('latin1', start, idx + 4));
  }

  /** Runs the pipelined requests that arrived during the previous exchange. */
  protected drive(): void {
    if (this.#driving) return;
    this.#driving = true;
    while (this.phase === P_HEAD && this.stash !== null) {
      const b = this.stash;
      this.stash = null;
      this.#onHeadBytes(b, false);
    }
    this.#driving = false;
    this.syncReading();
  }

  #startExchange(h: string): void {
    const ctx = this.ctx;
    const rh = this.rh;
    this.#exchangeId++;
    // Read-ahead requests start now; the others when their bytes were read.
    this.startAt = this.#driving ? performance.now() : this.#lastReadAt;
    this.phase = P_EXCHANGE;
    this.routeHost = '';
    this.instance = null;
    this.status = 0;
    this.resStarted = false;
    if (!parseRequestHead(h, rh)) return this.reject(rejectionPage(rh.error), rh.error);
    this.isHead = rh.method === 'HEAD';
    this.reqDone = rh.bodyless;
    this.closeAfter = rh.wantsClose;
    const raw = rh.absoluteHost ?? rh.host;
    if (raw === null) return this.reject(PAGES.badHost, 400);
    if (raw !== this.#rcRaw || ctx.table.version !== this.#rcVersion) this.#routeFor(raw);
    const host = this.#rcHost;
    if (host === null) return this.reject(PAGES.badHost, 400);
    // For any host and before routing (and before an HTTPS redirect): the ACME directory asks over plain HTTP.
    if (ctx.acme !== null && rh.target.startsWith(ACME_CHALLENGE_PREFIX)) return this.#answerChallenge(ctx.acme, rh.target);
    const route = this.#rcRoute;
    const action = routeAction(route, this.tls);
    if (action === ROUTE_UNKNOWN) return this.answer(unknownHostPage(host, this.answerCloses, this.isHead), 404);
    this.routeHost = host;
    if (action === ROUTE_REDIRECT) return this.answer(httpsRedirect(host, ctx.httpsPort(), rh.target, this.answerCloses), 308);
    chooseInstance(route!, rh.cookie, ctx.table, this.choice);
    const instance = this.choice.instance;
    this.instance = instance;
    let a = ctx.active.get(instance);
    if (a === undefined) ctx.active.set(instance, (a = { n: 0 }));
    a.n++;
    this.activeRef = a;
    ctx.backend.touch(instance);

    this.upgrade = rh.connUpgrade && rh.upgrade !== null;
    this.fwdHead = requestHeadToForward(h, rh, this.#rcTail, this.upgrade);
    this.chunkedReq = rh.chunked;
    this.bodyRemaining = Math.max(rh.contentLength, 0);
    if (rh.chunked) this.reqScanner.reset();
    this.retryable = isRetryable(rh.method, this.reqDone);
    this.retries = 0;
    this.woke = false;
    this.headSent = false;
    const up = ctx.backend.upstream(instance);
    if (up !== null) this.attach(up, false, this.startAt);
    else this.wake();
    this.syncReading();
  }

  /** Answers an ACME HTTP-01 request: from memory at once, else from the store (another replica's order). */
  #answerChallenge(acme: AcmeChallengeAnswers, target: string): void {
    const opts = { close: this.answerCloses, head: this.isHead };
    const token = challengeToken(target);
    const known = token === null ? null : acme.answer(token);
    if (token === null || known !== null) return this.answer(challengeResponse(known, opts), known === null ? 404 : 200);
    const id = this.#exchangeId;
    acme
      .lookup(token)
      .catch(() => null)
      .then((v) => {
        if (id !== this.#exchangeId || this.phase !== P_EXCHANGE) return;
        this.answer(challengeResponse(v, opts), v === null ? 404 : 200);
      });
  }

  /** Fills the route cache for Host value `raw`. */
  #routeFor(raw: string): void {
    const ctx = this.ctx;
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
    this.#rcTail = forwardingLines(this.#xfHead, raw);
  }

  // ---- waking ---------------------------------------------------------------

  protected wake(): void {
    const id = this.#exchangeId;
    const instance = this.instance!;
    this.#waking = true;
    this.ctx.wakes.wake(instance).then(
      (up) => this.#onWoken(id, up),
      (err: unknown) => this.#onWakeFailed(id, err),
    );
    const rh = this.rh;
    if (this.#htmlTimer === null && wantsStartingPage(rh.method, rh.accept, this.reqDone, this.upgrade, this.ctx.wakeHtmlAfterMs)) {
      this.#htmlTimer = setTimeout(this.#onHtmlTimer, this.ctx.wakeHtmlAfterMs, id);
      this.#htmlTimer.unref();
    }
  }

  #onWoken(id: number, up: HostPort): void {
    if (id !== this.#exchangeId || this.phase !== P_EXCHANGE || !this.#waking) return;
    this.#waking = false;
    this.#clearHtmlTimer();
    this.attach(up);
    this.syncReading();
  }

  #onWakeFailed(id: number, err: unknown): void {
    if (id !== this.#exchangeId || this.phase !== P_EXCHANGE || !this.#waking) return;
    this.#waking = false;
    this.#clearHtmlTimer();
    const a = wakeFailureAnswer(err, this.routeHost, this.answerCloses, this.isHead);
    if (a.unexpected) this.ctx.logger?.info({ host: this.routeHost, instance: this.instance, err: String(err) }, 'wake failed');
    this.answer(a.page, a.status);
  }

  #onHtmlTimer = (id: number): void => {
    this.#htmlTimer = null;
    if (id !== this.#exchangeId || this.phase !== P_EXCHANGE || !this.#waking) return;
    // The wake carries on; the page reloads itself and lands on the instance once it is up.
    this.#waking = false;
    this.answer(startingPage(this.routeHost, 2, this.isHead), 503);
  };

  #clearHtmlTimer(): void {
    if (this.#htmlTimer !== null) {
      clearTimeout(this.#htmlTimer);
      this.#htmlTimer = null;
    }
  }

  // ---- the visitor's end ----------------------------------------------------

  #onEnd = (): void => {
    this.clientEnded = true;
    switch (this.phase) {
      case P_HEAD:
        this.phase = P_CLOSING;
        this.socket.end();
        break;
      case P_TUNNEL:
        this.upstream?.socket.end();
        break;
      case P_CLOSING:
        this.socket.destroy();
        break;
      case P_EXCHANGE:
        // A body cut short can never be completed; a whole request is still answered.
        if (!this.reqDone) this.failExchange(PAGES.badRequest, 400);
        break;
      default:
        break;
    }
  };

  #onClose = (): void => {
    const ctx = this.ctx;
    const was = this.phase;
    this.phase = P_CLOSED;
    this.#clearHtmlTimer();
    ctx.conns.delete(this);
    ctx.metrics.connections--;
    if (was === P_TUNNEL) ctx.metrics.tunnels--;
    if (was === P_EXCHANGE && this.instance !== null) {
      // The visitor left before the answer (nginx's 499).
      if (this.status === 0) this.status = 499;
      this.record();
    }
    this.release();
    const c = this.upstream;
    this.upstream = null;
    c?.socket.destroy();
  };

  /** Called about once a second by the gate: slow clients and idle keep-alive connections. */
  checkTimeouts(now: number): void {
    const ctx = this.ctx;
    switch (this.phase) {
      case P_HEAD:
        if (this.buf !== null) {
          if (now - this.#headStartedAt > ctx.headersTimeoutMs) {
            this.phase = P_EXCHANGE;
            this.reject(PAGES.timeout, 408);
          }
        } else if (now - this.idleSince > (this.served === 0 ? ctx.headersTimeoutMs : ctx.keepAliveTimeoutMs)) {
          this.socket.destroy();
        }
        break;
      case P_EXCHANGE:
        // An app that accepts no connection (and refuses none) is treated like one that refused.
        if (this.upstream !== null && !this.upstream.connected && now - this.attachedAt > CONNECT_TIMEOUT_MS) {
          this.upstream.socket.destroy();
          break;
        }
        if (!this.reqDone && this.headSent && !this.upBlocked && now - Math.max(this.#lastReadAt, this.startAt) > ctx.bodyTimeoutMs) {
          this.failExchange(PAGES.timeout, 408);
        }
        break;
      case P_CLOSING:
        if (now - this.closingSince > 2000) this.socket.destroy();
        break;
      default:
        break;
    }
  }

  /** Ends an idle connection (gate shutdown); busy ones finish their exchange first. */
  closeIdle(): void {
    if (this.phase === P_HEAD && this.buf === null) this.socket.destroy();
    else this.closeAfter = true;
  }

  get connectedAt(): number {
    return this.#connectedAt;
  }
}

function noop(): void {}
