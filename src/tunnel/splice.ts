import type { Socket } from 'node:net';

/**
 * Joins two connected sockets full-duplex: bytes flow both ways with
 * backpressure (pipe pauses the reader while the writer is full), an end of
 * input on one side becomes an end of output on the other (half-close, so
 * "send request, shut down writing, read reply" protocols work), and an error
 * on either side destroys both. Both sockets must allow half-open.
 *
 * `onDone` runs once, when both sockets are closed.
 */
export function splice(a: Socket, b: Socket, onDone?: () => void): void {
  a.setNoDelay(true);
  b.setNoDelay(true);
  a.pipe(b);
  b.pipe(a);
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
