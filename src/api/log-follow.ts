import { open, stat } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { PassThrough, type Readable } from 'node:stream';

/**
 * New log output a follower may fall behind by, while it does not read, before
 * it is disconnected. Until then it only costs one read chunk and the stream
 * buffers: reading the file stops while the client is not drained.
 */
export const MAX_FOLLOWER_LAG_BYTES = 1 << 20;

/** Bytes read from the file at a time. */
const READ_CHUNK = 64 * 1024;

/** How often the file is looked at for new output (and, while blocked, for how far the follower fell behind). */
const POLL_MS = 250;

interface Follower {
  out: PassThrough;
  req: IncomingMessage;
}

const followers = new Set<Follower>();
let dropped = 0;

/**
 * The bytes the server holds for followers right now: read from their files
 * and not yet handed to the kernel (stream buffers and socket write queues).
 */
export function followerQueuedBytes(): number {
  let n = 0;
  for (const f of followers) n += f.out.readableLength + f.out.writableLength + (f.req.socket?.writableLength ?? 0);
  return n;
}

/** Prometheus text: followers, bytes held for them, followers disconnected for falling behind. */
export function followerMetrics(): string {
  return [
    '# HELP eph_log_followers Clients following an instance log (logs?follow=1).',
    '# TYPE eph_log_followers gauge',
    `eph_log_followers ${followers.size}`,
    '# HELP eph_log_follow_queued_bytes Log bytes read for followers and not yet sent to the kernel.',
    '# TYPE eph_log_follow_queued_bytes gauge',
    `eph_log_follow_queued_bytes ${followerQueuedBytes()}`,
    '# HELP eph_log_followers_dropped_total Followers disconnected for not reading while the log grew past the bound.',
    '# TYPE eph_log_followers_dropped_total counter',
    `eph_log_followers_dropped_total ${dropped}`,
    '',
  ].join('\n');
}

/**
 * Streams a log file from `start` and keeps following it (like tail -f) until
 * the client goes away. Polls: fs.watch misses appends on some file systems,
 * and a 250 ms poll is cheap next to a human reading logs.
 *
 * Respects back-pressure: nothing more is read while the client has not taken
 * what was sent, so a client that does not read holds at most one chunk plus
 * the stream buffers. One that stays behind while the app writes more than
 * {@link MAX_FOLLOWER_LAG_BYTES} is disconnected.
 */
export function followLog(file: string, start: number, req: IncomingMessage): Readable {
  const out = new PassThrough();
  const self: Follower = { out, req };
  followers.add(self);
  let pos = start;
  let closed = false;
  let wake: (() => void) | null = null;
  const stop = (): void => {
    if (closed) return;
    closed = true;
    followers.delete(self);
    out.end();
    wake?.();
  };
  req.once('close', stop);
  out.once('close', stop);
  out.on('error', () => undefined);
  const sizeOf = (): Promise<number> => stat(file).then((s) => s.size, () => 0);
  const pause = (): Promise<void> =>
    new Promise((r) => {
      const t = setTimeout(done, POLL_MS);
      function done(): void {
        clearTimeout(t);
        out.off('drain', done);
        wake = null;
        r();
      }
      wake = done;
      out.once('drain', done);
    });
  /** Waits for the client to drain; false when it fell too far behind meanwhile (then it is cut off). */
  const drained = async (): Promise<boolean> => {
    let seen = await sizeOf();
    let grown = 0;
    let isDrained = false;
    const onDrain = (): void => {
      isDrained = true;
    };
    out.once('drain', onDrain);
    try {
      while (!closed && !isDrained) {
        await pause();
        if (closed || isDrained) break;
        const size = await sizeOf();
        // A log cut down to its newest half (size limit) started again: all of it is new.
        grown += size >= seen ? size - seen : size;
        seen = size;
        if (grown > MAX_FOLLOWER_LAG_BYTES) return false;
      }
      return true;
    } finally {
      out.off('drain', onDrain);
    }
  };
  const tick = async (): Promise<void> => {
    while (!closed) {
      const size = await sizeOf();
      if (size < pos) pos = 0; // rotated: start over from the new file
      if (size > pos) {
        const fh = await open(file, 'r');
        let chunk: Buffer;
        try {
          const buf = Buffer.alloc(Math.min(size - pos, READ_CHUNK));
          const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
          pos += bytesRead;
          chunk = buf.subarray(0, bytesRead);
        } finally {
          await fh.close();
        }
        if (closed) break;
        if (!out.write(chunk) && !(await drained())) {
          dropped++;
          // Cut off: the response cannot end cleanly with data still queued.
          followers.delete(self);
          closed = true;
          req.socket?.destroy();
          out.destroy();
        }
        continue;
      }
      await pause();
    }
  };
  void tick().catch((e: unknown) => {
    followers.delete(self);
    out.destroy(e as Error);
  });
  return out;
}
