import { open, stat } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { PassThrough, type Readable } from 'node:stream';

/**
 * Streams a log file from `start` and keeps following it (like tail -f) until
 * the client goes away. Polls: fs.watch misses appends on some file systems,
 * and a 250 ms poll is cheap next to a human reading logs.
 */
export function followLog(file: string, start: number, req: IncomingMessage): Readable {
  const out = new PassThrough();
  let pos = start;
  let closed = false;
  const stop = () => {
    closed = true;
    out.end();
  };
  req.once('close', stop);
  const tick = async (): Promise<void> => {
    while (!closed) {
      const size = await stat(file).then((s) => s.size, () => 0);
      if (size < pos) pos = 0; // rotated: start over from the new file
      if (size > pos) {
        const fh = await open(file, 'r');
        try {
          const buf = Buffer.alloc(Math.min(size - pos, 1 << 20));
          const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
          pos += bytesRead;
          if (!closed) out.write(buf.subarray(0, bytesRead));
        } finally {
          await fh.close();
        }
        continue;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  };
  void tick().catch((e: unknown) => out.destroy(e as Error));
  return out;
}
