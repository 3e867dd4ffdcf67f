/**
 * The exchange's side towards the instance (second of the three layers of a
 * visitor connection, see exchange-state.ts): take a pooled connection, send
 * the request head and body, frame the response and forward it, rewrite its
 * head when needed, tunnel an upgrade, and carry out the retry rules when the
 * connection fails (decisions.ts decides them).
 */
import type { HostPort } from '../core/config.ts';
import { CHUNK_BAD, CHUNK_MORE } from './chunk-scanner.ts';
import {
  CLOSE_BAD_GATEWAY,
  CLOSE_RETRY_AFTER_WAKE,
  CLOSE_RETRY_NEW,
  CLOSE_WAKE_AGAIN,
  R_CHUNKED,
  R_CLOSE,
  R_DONE,
  R_HEAD,
  R_LENGTH,
  R_NONE,
  afterUpstreamClose,
  noAnswerPage,
  responseFraming,
  upstreamMaxIdleAge,
  upstreamReusable,
} from './decisions.ts';
import { PAGES } from './error-pages.ts';
import { ExchangeState, P_EXCHANGE, P_TUNNEL } from './exchange-state.ts';
import { responseHeadNeedsRewrite, responseHeadToForward } from './forward-heads.ts';
import { parseResponseHeadBytes } from './http-parse.ts';
import type { UpstreamConn, UpstreamOwner } from './upstream-pool.ts';

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
const MAX_RESPONSE_HEAD = 64 * 1024;

export abstract class UpstreamLeg extends ExchangeState implements UpstreamOwner {
  /** Wakes the exchange's instance (client-conn.ts); attaches when it is up. */
  protected abstract wake(): void;

  // ---- request forwarding ---------------------------------------------------

  protected attach(up: HostPort, fresh = false, now = performance.now()): void {
    this.resState = R_HEAD;
    this.rbuf = null;
    this.gotResponse = false;
    this.upBlocked = false;
    this.upstreamPaused = false;
    this.attachedAt = now;
    const c = this.ctx.pool.acquire(this.instance!, up, this, now, upstreamMaxIdleAge(fresh, this.retryable));
    this.upstream = c;
    // A new connection gets nothing until it is up: if connecting fails, nothing was sent, so any request may be retried.
    if (c.connected) this.sendRequest(c);
  }

  onUpstreamConnect(c: UpstreamConn): void {
    if (c !== this.upstream || this.phase !== P_EXCHANGE) return;
    this.sendRequest(c);
    this.syncReading();
  }

  protected sendRequest(c: UpstreamConn): void {
    const s = c.socket;
    this.headSent = true;
    const stash = this.stash;
    if (this.reqDone || stash === null) {
      s.write(this.fwdHead, 'latin1');
      return;
    }
    // Head and the body bytes already here leave in one writev.
    s.cork();
    s.write(this.fwdHead, 'latin1');
    this.stash = null;
    const used = this.forwardBody(stash, 0);
    if (used < stash.length && this.phase === P_EXCHANGE) this.stash = stash.subarray(used);
    s.uncork();
  }

  /** Forwards request body bytes from b[start..]; returns where the body ended in b (or b.length). */
  protected forwardBody(b: Buffer, start: number): number {
    let end: number;
    if (this.chunkedReq) {
      const r = this.reqScanner.scan(b, start, b.length);
      if (r === CHUNK_BAD) {
        this.failExchange(PAGES.badRequest, 400);
        return b.length;
      }
      end = r === CHUNK_MORE ? b.length : r;
      if (r !== CHUNK_MORE) this.reqDone = true;
    } else {
      end = start + Math.min(this.bodyRemaining, b.length - start);
      this.bodyRemaining -= end - start;
      if (this.bodyRemaining === 0) this.reqDone = true;
    }
    if (end > start && !this.upstream!.socket.write(start === 0 && end === b.length ? b : b.subarray(start, end))) {
      this.upBlocked = true;
    }
    if (this.reqDone && this.resState === R_DONE) this.finish();
    return end;
  }

  onUpstreamDrain(c: UpstreamConn): void {
    if (c !== this.upstream || !this.upBlocked) return;
    this.upBlocked = false;
    this.syncReading();
  }

  // ---- response forwarding --------------------------------------------------

  onUpstreamData(c: UpstreamConn, chunk: Buffer): void {
    if (c !== this.upstream) return;
    if (this.phase === P_TUNNEL) {
      this.toClient(chunk);
      return;
    }
    this.gotResponse = true;
    let b = chunk;
    let i = 0;
    let from = 0;
    if (this.resState === R_HEAD) {
      if (this.rbuf !== null) {
        b = Buffer.concat([this.rbuf, chunk]);
        this.rbuf = null;
      }
      const rs = this.rs;
      let headEnd: number;
      for (;;) {
        const idx = b.indexOf(CRLFCRLF, i);
        if (idx < 0) {
          if (b.length - i > MAX_RESPONSE_HEAD) return this.failExchange(null, 502);
          this.rbuf = i === 0 ? b : b.subarray(i);
          return;
        }
        headEnd = idx + 4;
        if (!parseResponseHeadBytes(b, i, headEnd, rs)) return this.failExchange(null, 502);
        if (rs.status >= 200) break;
        if (rs.status === 101) {
          if (!this.upgrade) return this.failExchange(null, 502);
          return this.startTunnel(b.subarray(i));
        }
        // Interim responses (100 Continue, 103 Early Hints) pass through; the final one follows.
        this.resStarted = true;
        this.toClient(b.subarray(i, headEnd));
        i = headEnd;
        if (i === b.length) return;
      }
      this.status = rs.status;
      this.resStarted = true;
      this.resState = responseFraming(rs, this.isHead);
      if (this.resState === R_CHUNKED) this.resScanner.reset();
      else if (this.resState === R_LENGTH) this.resRemaining = rs.contentLength;
      if (this.upgrade) this.closeAfter = true; // a declined upgrade: the client may not expect reuse
      this.reusable = upstreamReusable(rs, this.resState);
      const untilClose = this.resState === R_CLOSE;
      if (responseHeadNeedsRewrite(rs, this.choice.setCookie, this.closeAfter, untilClose)) {
        const closing = this.closeAfter || untilClose;
        this.toClient(responseHeadToForward(b.toString('latin1', i, headEnd), rs, this.choice.setCookie, closing));
        if (closing) this.closeAfter = true;
        from = headEnd;
      } else from = i;
      i = headEnd;
    }
    let end = b.length;
    switch (this.resState) {
      case R_NONE:
        end = i;
        this.resState = R_DONE;
        break;
      case R_LENGTH: {
        const n = Math.min(this.resRemaining, b.length - i);
        this.resRemaining -= n;
        end = i + n;
        if (this.resRemaining === 0) this.resState = R_DONE;
        break;
      }
      case R_CHUNKED: {
        const r = this.resScanner.scan(b, i, b.length);
        if (r === CHUNK_BAD) {
          if (from < i) this.toClient(b.subarray(from, i));
          return this.failExchange(null, 502);
        }
        if (r !== CHUNK_MORE) {
          end = r;
          this.resState = R_DONE;
        }
        break;
      }
      default:
        break; // R_CLOSE: everything until the app closes
    }
    if (end > from) this.toClient(from === 0 && end === b.length ? b : b.subarray(from, end));
    if (this.resState === R_DONE) {
      // Bytes after the response were never asked for: that connection cannot be trusted again.
      if (end < b.length) this.reusable = false;
      if (this.reqDone) this.finish();
      else this.finishEarly();
    }
  }

  protected toClient(b: Buffer | string): void {
    const ok = typeof b === 'string' ? this.socket.write(b, 'latin1') : this.socket.write(b);
    if (!ok && this.upstream !== null && !this.upstreamPaused) {
      this.upstreamPaused = true;
      this.upstream.socket.pause();
    }
  }

  protected onDrain = (): void => {
    if (this.upstreamPaused && this.upstream !== null) {
      this.upstreamPaused = false;
      this.upstream.socket.resume();
    }
  };

  onUpstreamEnd(c: UpstreamConn): void {
    if (c !== this.upstream) return;
    if (this.phase === P_TUNNEL) {
      this.socket.end();
      return;
    }
    if (this.resState === R_CLOSE) {
      this.resState = R_DONE;
      this.reusable = false;
      this.closeAfter = true;
      if (this.reqDone) this.finish();
      else this.finishEarly();
      return;
    }
    c.socket.destroy(); // handled as a close below
  }

  onUpstreamClose(c: UpstreamConn, err: NodeJS.ErrnoException | null): void {
    if (c !== this.upstream) return;
    this.upstream = null;
    if (this.phase === P_TUNNEL) {
      this.socket.destroySoon();
      return;
    }
    if (this.phase !== P_EXCHANGE) return;
    const action = afterUpstreamClose({
      gotResponse: this.gotResponse,
      headSent: this.headSent,
      reused: c.reused,
      woke: this.woke,
      retryable: this.retryable,
      retries: this.retries,
      errorCode: err === null ? null : (err.code ?? ''),
    });
    switch (action) {
      case CLOSE_WAKE_AGAIN:
        this.woke = true;
        return this.wake();
      case CLOSE_RETRY_NEW: {
        this.retries++;
        this.headSent = false;
        const up = this.ctx.backend.upstream(this.instance!);
        if (up !== null) return this.attach(up, true);
        return this.wake();
      }
      case CLOSE_RETRY_AFTER_WAKE:
        this.retries++;
        this.headSent = false;
        this.woke = true;
        return this.wake();
      case CLOSE_BAD_GATEWAY:
        return this.failExchange(noAnswerPage(this.routeHost, this.answerCloses, this.isHead), 502);
      default:
        // Cut off in the middle of a response: the client cannot be told but by closing.
        this.failExchange(null, 502);
    }
  }

  // ---- WebSockets and other upgrades -----------------------------------------

  protected startTunnel(head: Buffer): void {
    const ctx = this.ctx;
    this.phase = P_TUNNEL;
    this.status = 101;
    ctx.metrics.tunnels++;
    this.record();
    this.toClient(head);
    const stash = this.stash;
    this.stash = null;
    if (stash !== null && this.upstream !== null && !this.upstream.socket.write(stash)) this.upBlocked = true;
    if (this.clientEnded) this.upstream?.socket.end();
    this.syncReading();
  }
}
