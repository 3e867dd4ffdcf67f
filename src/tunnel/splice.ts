import type { Socket } from 'node:net';

/**
 * Joins two connected sockets full-duplex: bytes flow both ways with
 * backpressure, an end of input on one side becomes an end of output on the
 * other (half-close, so "send request, shut down writing, read reply"
 * protocols work), and an error on either side destroys both. Both sockets
 * must allow half-open.
 *
 * `onDone` runs once, when both sockets are closed.
 */
export function splice(a: Socket, b: Socket, onDone?: () => void): void {
  // Interactive protocols (psql, redis) send small requests; Nagle on the
  // tunnel would hold them back behind delayed ACKs.
  a.setNoDelay(true);
  b.setNoDelay(true);
  forward(a, b);
  forward(b, a);
  let open = 2;
  const closed = (other: Socket) => (): void => {
    // A normal close means both directions finished; an abrupt one (destroy,
    // timeout) must still reach the other side, after what it already got.
    finishThenDestroy(other);
    if (--open === 0) onDone?.();
  };
  const failed = (): void => {
    a.destroy();
    b.destroy();
  };
  a.once('close', closed(b));
  b.once('close', closed(a));
  a.on('error', failed);
  b.on('error', failed);
}

function finishThenDestroy(s: Socket): void {
  if (s.destroyed) return;
  if (s.writableFinished) {
    s.destroy();
    return;
  }
  s.once('finish', () => s.destroy());
  s.end();
}

/** Bytes allowed to wait in a writer before its reader is paused. */
const MAX_PENDING = 256 * 1024;

function uncork(s: Socket): void {
  s.uncork();
}

/**
 * Copies `from` into `to`. Unlike `pipe`, writes are corked until the end of
 * the current event-loop turn: a TLS socket hands over one 16 KB record per
 * callback, and batching the records of one TCP read into one writev cut the
 * endpoint's CPU per GB by about a quarter (bench/tunnel).
 */
function forward(from: Socket, to: Socket): void {
  to.on('drain', () => void from.resume());
  from.on('data', (chunk: Buffer) => {
    if (to.destroyed) return;
    if (to.writableCorked === 0) {
      to.cork();
      setImmediate(uncork, to);
    }
    to.write(chunk);
    // Past the high-water mark, so write() returned false and 'drain' follows.
    if (to.writableLength > MAX_PENDING) from.pause();
  });
  from.once('end', () => to.end());
}
