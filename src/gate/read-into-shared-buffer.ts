/**
 * The one place the gate reaches into net.Socket internals, kept alone with its
 * canary test (test/gate/reads-into-shared-buffer.test.ts), which fails first
 * if a Node upgrade moves the slots. Measured gain (bench/gate/README.md): CPU
 * per request 19.8 → 18.8 µs when it came, 23.4 → 21.3 µs re-measured for
 * issue 13 on a loaded machine: 5–9%, enough to keep it.
 */
import type { Socket } from 'node:net';

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
