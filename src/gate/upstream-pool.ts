import { connect, type Socket } from 'node:net';
import type { HostPort } from '../core/config.ts';

/** Shared landing buffer for upstream reads (see UpstreamConn#onRead); the event loop is single-threaded, so one is enough. */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** What an upstream connection reports to the exchange that holds it. */
export interface UpstreamOwner {
  onUpstreamConnect(up: UpstreamConn): void;
  onUpstreamData(up: UpstreamConn, chunk: Buffer): void;
  onUpstreamEnd(up: UpstreamConn): void;
  onUpstreamClose(up: UpstreamConn, err: NodeJS.ErrnoException | null): void;
  onUpstreamDrain(up: UpstreamConn): void;
}

/**
 * One keep-alive connection to an instance. Its listeners are attached once
 * and forward to whichever exchange holds it now, so reuse allocates nothing.
 */
export class UpstreamConn {
  readonly socket: Socket;
  readonly pool: InstancePool;
  owner: UpstreamOwner | null = null;
  connected = false;
  /** False until it has carried a whole exchange: a reused connection may have been closed by the app meanwhile. */
  reused = false;
  idleSince = 0;
  #error: NodeJS.ErrnoException | null = null;

  constructor(pool: InstancePool) {
    this.pool = pool;
    const s = connect({
      host: pool.host,
      port: pool.port,
      allowHalfOpen: true,
      noDelay: true,
      onread: { buffer: READ_BUFFER, callback: this.#onRead },
    });
    this.socket = s;
    s.on('connect', this.#onConnect);
    s.on('end', this.#onEnd);
    s.on('error', this.#onError);
    s.on('close', this.#onClose);
    s.on('drain', this.#onDrain);
  }

  #onConnect = (): void => {
    this.connected = true;
    this.owner?.onUpstreamConnect(this);
  };

  /**
   * Reads land in one shared buffer and are copied out: a small response then
   * costs a slice of Node's Buffer pool instead of a fresh ArrayBuffer per read,
   * whose external-memory accounting made V8 scavenge every few milliseconds
   * under load (measured: about a quarter of the gate's CPU per request).
   */
  #onRead = (n: number, buf: Uint8Array): boolean => {
    const chunk = Buffer.allocUnsafe(n);
    chunk.set(buf.subarray(0, n));
    this.#onData(chunk);
    return true;
  };

  #onData = (chunk: Buffer): void => {
    if (this.owner !== null) this.owner.onUpstreamData(this, chunk);
    else this.socket.destroy(); // bytes nobody asked for: the connection cannot be trusted
  };

  #onEnd = (): void => {
    if (this.owner !== null) this.owner.onUpstreamEnd(this);
    else this.socket.destroy();
  };

  #onError = (err: NodeJS.ErrnoException): void => {
    this.#error = err;
  };

  #onClose = (): void => {
    this.pool.forget(this);
    const owner = this.owner;
    this.owner = null;
    owner?.onUpstreamClose(this, this.#error);
  };

  #onDrain = (): void => {
    this.owner?.onUpstreamDrain(this);
  };
}

/** Idle connections to one instance, most recently used first out. */
export class InstancePool {
  readonly host: string;
  readonly port: number;
  readonly idle: UpstreamConn[] = [];
  /** Set when the instance stopped or the gate closed: connections in use are not kept after their exchange. */
  dropped = false;

  constructor(up: HostPort) {
    this.host = up.host;
    this.port = up.port;
  }

  forget(c: UpstreamConn): void {
    const i = this.idle.indexOf(c);
    if (i >= 0) this.idle.splice(i, 1);
  }
}

/**
 * Keep-alive connections to instances, pooled per instance hostname. An
 * instance that moved (restarted on another address) drops its old pool.
 */
export class UpstreamPool {
  readonly #pools = new Map<string, InstancePool>();
  readonly #maxIdle: number;
  readonly #idleMs: number;
  /** Called for every new connection (metrics). */
  onConnect: (() => void) | null = null;

  constructor(opts: { maxIdlePerInstance?: number; idleMs?: number } = {}) {
    this.#maxIdle = opts.maxIdlePerInstance ?? 256;
    // Below Node's default server keepAliveTimeout (5 s), so the app rarely closes first.
    this.#idleMs = opts.idleMs ?? 4000;
  }

  /**
   * A connection to `up` for `owner`: an idle one when there is one, else a new
   * one. `maxIdleAge` limits how long the idle one may have waited: a request
   * that cannot be replayed (a POST) avoids connections old enough that the app
   * may be closing them at this very moment.
   */
  acquire(hostname: string, up: HostPort, owner: UpstreamOwner, now = 0, maxIdleAge = Infinity): UpstreamConn {
    let pool = this.#pools.get(hostname);
    if (pool === undefined) this.#pools.set(hostname, (pool = new InstancePool(up)));
    else if (pool.host !== up.host || pool.port !== up.port) {
      pool.dropped = true;
      for (const c of pool.idle.splice(0)) c.socket.destroy();
      this.#pools.set(hostname, (pool = new InstancePool(up)));
    }
    const idle = pool.idle;
    // A negative age asks for a new connection, leaving the idle ones be.
    while (maxIdleAge >= 0 && idle.length > 0) {
      const c = idle.pop()!;
      if (c.socket.destroyed || c.socket.readableEnded || now - c.idleSince > maxIdleAge) {
        c.socket.destroy();
        continue;
      }
      c.owner = owner;
      return c;
    }
    this.onConnect?.();
    const c = new UpstreamConn(pool);
    c.owner = owner;
    return c;
  }

  /** Gives back a connection whose exchange ended cleanly. */
  release(c: UpstreamConn, now: number): void {
    c.owner = null;
    c.reused = true;
    const idle = c.pool.idle;
    if (c.socket.destroyed || c.socket.readableEnded || idle.length >= this.#maxIdle || c.pool.dropped) {
      c.socket.destroy();
      return;
    }
    c.idleSince = now;
    idle.push(c);
  }

  /** Closes connections idle for too long. */
  sweep(now: number): void {
    for (const pool of this.#pools.values()) {
      const idle = pool.idle;
      // Oldest first: the array is used as a stack, so the bottom is the stalest.
      while (idle.length > 0 && now - idle[0]!.idleSince > this.#idleMs) idle.shift()!.socket.destroy();
    }
  }

  /** Drops the idle connections of one instance (it stopped). */
  drop(hostname: string): void {
    const pool = this.#pools.get(hostname);
    if (pool === undefined) return;
    this.#pools.delete(hostname);
    pool.dropped = true;
    for (const c of pool.idle.splice(0)) c.socket.destroy();
  }

  idleCount(): number {
    let n = 0;
    for (const p of this.#pools.values()) n += p.idle.length;
    return n;
  }

  close(): void {
    for (const pool of this.#pools.values()) {
      pool.dropped = true;
      for (const c of pool.idle.splice(0)) c.socket.destroy();
    }
    this.#pools.clear();
  }
}
