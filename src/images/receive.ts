import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { open, rm, type FileHandle } from 'node:fs/promises';
import { EphError, isDiskFull, storageFull } from '../core/errors.ts';
import { SNIFF_BYTES } from './sniff-format.ts';

/** An upload safely on disk. */
export interface Received {
  /** sha256 of the bytes, hex. */
  digest: string;
  size: number;
  /** The first bytes, for format sniffing. */
  head: Buffer;
}

const WRITE_BATCH = 1 << 20;

/**
 * Streams `body` into `file` (created exclusively), hashing as it goes, and
 * fsyncs it. Stops as soon as the upload passes `maxBytes` (ARCHIVE_TOO_LARGE)
 * instead of reading the rest; the body is then left paused, not destroyed,
 * so that an HTTP server can still answer 413 (with `Connection: close`)
 * before dropping the connection. On any failure the file is removed.
 * `onProgress` gets the bytes received so far after each chunk.
 */
export async function receiveArchive(
  body: NodeJS.ReadableStream,
  file: string,
  maxBytes: number,
  onProgress?: (bytes: number) => void,
): Promise<Received> {
  const fh = await open(file, 'wx', 0o600);
  const hash = createHash('sha256');
  let size = 0;
  const head: Buffer[] = [];
  let headBytes = 0;
  let ok = false;
  try {
    let batch: Buffer[] = [];
    let batched = 0;
    try {
      const chunks = body instanceof Readable ? body.iterator({ destroyOnReturn: false }) : (body as AsyncIterable<Buffer | string>);
      for await (const raw of chunks as AsyncIterable<Buffer | string>) {
        const chunk = typeof raw === 'string' ? Buffer.from(raw) : raw;
        size += chunk.length;
        if (size > maxBytes) throw new EphError('ARCHIVE_TOO_LARGE', `archive is larger than the limit of ${maxBytes} bytes`);
        hash.update(chunk);
        if (headBytes < SNIFF_BYTES) {
          head.push(chunk.subarray(0, SNIFF_BYTES - headBytes));
          headBytes += Math.min(chunk.length, SNIFF_BYTES - headBytes);
        }
        batch.push(chunk);
        batched += chunk.length;
        if (batched >= WRITE_BATCH) {
          await writeAll(fh, Buffer.concat(batch, batched));
          batch = [];
          batched = 0;
        }
        onProgress?.(size);
      }
    } catch (e) {
      if (e instanceof EphError) throw e;
      if (isDiskFull(e)) throw storageFull('receiving the upload', e);
      throw new EphError('ARCHIVE_INVALID', `the upload did not complete: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    if (batched > 0) await writeAll(fh, Buffer.concat(batch, batched));
    await fh.chmod(0o444);
    await fh.sync();
    ok = true;
  } finally {
    await fh.close();
    if (!ok) {
      await rm(file, { force: true });
    }
  }
  return { digest: hash.digest('hex'), size, head: Buffer.concat(head) };
}

async function writeAll(fh: FileHandle, buf: Buffer): Promise<void> {
  let off = 0;
  while (off < buf.length) off += (await fh.write(buf, off, buf.length - off)).bytesWritten;
}
