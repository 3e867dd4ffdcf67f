/**
 * The state of one visitor connection and of the exchange in flight on it,
 * and how an exchange ends (answered, forwarded, failed). First of three
 * layers that make one visitor connection, read in this order:
 *
 * 1. exchange-state.ts (this file): the fields, the phases, the ends of an exchange, read pausing;
 * 2. upstream-leg.ts: the exchange's side towards the instance (send the request, frame the response, tunnel);
 * 3. client-conn.ts: the visitor's side (read heads, route, wake, timeouts, close).
 *
 * Decisions (which answer, which instance, retry or not) come from the pure
 * functions of decisions.ts; reporting goes to the ExchangeObserver hook.
 * Exchanges run one at a time (pipelined requests wait in a bounded stash);
 * listeners are attached once and all per-request state lives in fields, so a
 * keep-alive request allocates little more than its forwarded head.
 */
import type { Socket } from 'node:net';
import { InstanceChoice, R_DONE, R_HEAD, malformedResponsePage } from './decisions.ts';
import { EndedExchange } from './exchange-observer.ts';
import type { ActiveCount, GateContext } from './gate-context.ts';
import { ChunkScanner } from './chunk-scanner.ts';
import { RequestHead, ResponseHead } from './http-parse.ts';
import type { UpstreamConn } from './upstream-pool.ts';

/** Bytes read ahead of the current exchange (pipelined requests) before reading pauses. */
export const STASH_LIMIT = 64 * 1024;

// Connection phases.
/** Waiting for (or reading) a request head. */
export const P_HEAD = 0;
/** An exchange is in flight: routing, waking, forwarding. */
export const P_EXCHANGE = 1;
/** Upgraded (WebSocket): bytes flow both ways as they are. */
export const P_TUNNEL = 2;
/** The gate ended its side and drains what the client still sends, so the answer is not lost to a reset. */
export const P_CLOSING = 3;
export const P_CLOSED = 4;

export abstract class ExchangeState {
  readonly socket: Socket;
  protected readonly ctx: GateContext;
  protected readonly tls: boolean;
  protected readonly remote: string;
  protected phase = P_HEAD;
  protected paused = false;
  /** A partial request head. */
  protected buf: Buffer | null = null;
  /** Bytes read past the current exchange's head: its body (until an upstream is ready) or pipelined requests. */
  protected stash: Buffer | null = null;
  protected served = 0;
  protected idleSince = 0;
  protected closingSince = 0;
  protected clientEnded = false;

  // The exchange in flight.
  protected readonly rh = new RequestHead();
  protected startAt = 0;
  /** '' until the request matched a route. */
  protected routeHost = '';
  protected instance: string | null = null;
  protected activeRef: ActiveCount | null = null;
  /** The chosen instance and the sticky cookie to set (Set-Cookie line or null). */
  protected readonly choice = new InstanceChoice();
  protected fwdHead = '';
  protected closeAfter = false;
  protected upgrade = false;
  protected isHead = false;
  protected reqDone = true;
  protected bodyRemaining = 0;
  protected chunkedReq = false;
  protected readonly reqScanner = new ChunkScanner();
  protected retryable = false;
  protected retries = 0;
  /** This exchange woke its instance again after a connection failed. */
  protected woke = false;
  protected upstream: UpstreamConn | null = null;
  protected headSent = false;
  protected attachedAt = 0;
  /** The upstream cannot take more now: client reading pauses until it drains. */
  protected upBlocked = false;
  /** The client cannot take more now: upstream reading paused until it drains. */
  protected upstreamPaused = false;

  // The response in flight.
  protected readonly rs = new ResponseHead();
  protected resState = R_HEAD;
  protected rbuf: Buffer | null = null;
  protected resRemaining = 0;
  protected readonly resScanner = new ChunkScanner();
  protected gotResponse = false;
  protected resStarted = false;
  protected reusable = false;
  protected status = 0;
  readonly #ended = new EndedExchange();

  constructor(socket: Socket, ctx: GateContext, tls: boolean) {
    this.socket = socket;
    this.ctx = ctx;
    this.tls = tls;
    this.remote = socket.remoteAddress ?? '';
  }

  /** Runs the pipelined requests that arrived during the previous exchange (client-conn.ts). */
  protected abstract drive(): void;

  /** Tells the observer of the exchange; returns the time it ended. */
  protected record(): number {
    const now = performance.now();
    const x = this.#ended;
    x.routeHost = this.routeHost;
    x.requestedHost = this.rh.absoluteHost ?? this.rh.host;
    x.instance = this.instance;
    x.method = this.rh.method;
    x.path = this.rh.target;
    x.status = this.status;
    x.ms = now - this.startAt;
    x.remote = this.remote;
    x.tls = this.tls;
    this.ctx.observer.ended(x);
    return now;
  }

  protected release(): void {
    this.instance = null;
    const a = this.activeRef;
    if (a === null) return;
    this.activeRef = null;
    a.n--;
  }

  /** Request and response both complete. */
  protected finish(): void {
    const c = this.upstream;
    this.upstream = null;
    const now = this.record();
    this.release();
    this.served++;
    if (c !== null) {
      if (this.upstreamPaused) c.socket.resume();
      c.owner = null;
      if (this.reusable) this.ctx.pool.release(c, now);
      else c.socket.destroy();
    }
    this.upstreamPaused = false;
    this.upBlocked = false;
    if (this.closeAfter || this.clientEnded) return this.closeClient();
    this.phase = P_HEAD;
    this.idleSince = now;
    this.drive();
  }

  /** The app answered before the request body was all sent: the rest is not forwarded, and the connection closes. */
  protected finishEarly(): void {
    this.reusable = false;
    this.closeAfter = true;
    this.reqDone = true;
    this.finish();
  }

  /** Answers with a page of the gate's own, in place of the app (not yet started answering). */
  protected answer(p: Buffer, status: number): void {
    this.status = status;
    this.resStarted = true;
    this.socket.write(p);
    this.resState = R_DONE;
    this.reusable = false;
    if (!this.reqDone) this.closeAfter = true;
    this.reqDone = true;
    this.finish();
  }

  /** True when the gate's own answer must close the connection: the request was not read whole, or the visitor asked. */
  protected get answerCloses(): boolean {
    return !this.reqDone || this.closeAfter;
  }

  /** Rejects a request that cannot be read safely: answer, then close. */
  protected reject(p: Buffer, status: number): void {
    this.closeAfter = true;
    this.reqDone = false;
    this.upstream = null;
    this.phase = P_EXCHANGE;
    this.answer(p, status);
  }

  /** Aborts the exchange: a page if nothing was answered yet, else a cut connection. */
  protected failExchange(p: Buffer | null, status: number): void {
    const c = this.upstream;
    this.upstream = null;
    c?.socket.destroy();
    if (this.phase !== P_EXCHANGE) return;
    if (!this.resStarted) {
      // A request read whole leaves the connection in a clean state: keep it, as the page says.
      this.answer(p ?? malformedResponsePage(status, this.answerCloses, this.isHead), status);
      return;
    }
    this.status = status;
    this.record();
    this.release();
    this.phase = P_CLOSED;
    this.socket.destroy();
  }

  protected closeClient(): void {
    this.phase = P_CLOSING;
    this.closingSince = performance.now();
    this.buf = this.stash = null;
    this.socket.end();
    this.syncReading();
  }

  /** Reads from the visitor only when there is somewhere for the bytes to go. */
  protected syncReading(): void {
    let want: boolean;
    switch (this.phase) {
      case P_HEAD:
        want = true;
        break;
      case P_EXCHANGE:
        want = this.reqDone
          ? this.stash === null || this.stash.length <= STASH_LIMIT
          : this.headSent && !this.upBlocked && this.stash === null;
        break;
      case P_TUNNEL:
        want = !this.upBlocked;
        break;
      case P_CLOSING:
        want = true;
        break;
      default:
        return;
    }
    if (want === this.paused) {
      this.paused = !want;
      if (want) this.socket.resume();
      else this.socket.pause();
    }
  }
}
