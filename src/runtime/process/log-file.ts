import { mkdir, open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Writable } from 'node:stream';

const MARKER = '[eph] earlier output dropped: log over its size limit\n';

/**
 * An instance's stdout+stderr log, never larger than `maxBytes`.
 *
 * When a write would push the file over the limit, the oldest output is
 * dropped in place ("truncate-front"): the file is rewritten to hold only the
 * newest half of the limit, starting at a line boundary and preceded by a
 * marker line. One file, always ≤ maxBytes, newest output kept; a reader
 * following it should start again from offset 0 when the size shrinks (as
 * `tail -F` does). Output appended across restarts of the same instance.
 *
 * It is a Writable, so child pipes apply back-pressure instead of buffering
 * without bound. Output that cannot be written (disk full) is dropped, and so
 * is output written after close() (a stop ended the log while a start or a
 * pipe still wrote to it): one instance's log never emits an unhandled
 * 'error', which would end the whole cloud process.
 *
 * @example
 * const log = await BoundedLog.open('/data/run/logs/eph-1a2b3c4d.log', 1 << 20);
 * child.stdout.pipe(log, { end: false });
 * log.note('exited with code 1');
 * await log.close();
 */
export class BoundedLog extends Writable {
  readonly path: string;
  readonly maxBytes: number;
  #fh: FileHandle;
  #size: number;
  #dropped = 0;

  private constructor(path: string, maxBytes: number, fh: FileHandle, size: number) {
    super({ decodeStrings: true });
    this.path = path;
    this.maxBytes = maxBytes;
    this.#fh = fh;
    this.#size = size;
    // Nothing in a log is worth an unhandled 'error' (fatal to the process): a
    // failed close is the only error left once writes after the end are dropped.
    this.on('error', () => undefined);
  }

  /** Bytes written after close() or destroy(), dropped instead of failing. */
  get droppedAfterEnd(): number {
    return this.#dropped;
  }

  /**
   * As Writable.write, but a write after the end is dropped (callback called
   * without error) instead of erroring the stream. It answers true, so that a
   * pipe still attached keeps draining the app's output instead of blocking it.
   */
  override write(chunk: unknown, encoding?: BufferEncoding | ((error: Error | null | undefined) => void), cb?: (error: Error | null | undefined) => void): boolean {
    if (this.writableEnded || this.destroyed) {
      this.#dropped += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk instanceof Uint8Array ? chunk.length : 0;
      const done = typeof encoding === 'function' ? encoding : cb;
      if (done) process.nextTick(done, null);
      return true;
    }
    return typeof encoding === 'function' ? super.write(chunk, encoding) : super.write(chunk, encoding as BufferEncoding, cb);
  }

  /** Opens (creating it and its directory) the log at `path` for appending. */
  static async open(path: string, maxBytes: number): Promise<BoundedLog> {
    if (!(maxBytes >= 2 * MARKER.length)) throw new RangeError(`maxBytes too small: ${maxBytes}`);
    // Logs may hold what apps print of their secrets: the service account's only.
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const fh = await open(path, 'a+', 0o600);
    // A log written by an earlier version (0644) is closed to others too.
    await fh.chmod(0o600);
    const log = new BoundedLog(path, maxBytes, fh, (await fh.stat()).size);
    // A log left over a smaller limit is brought under this one at once.
    if (log.#size > maxBytes) await log.#append(Buffer.alloc(0));
    return log;
  }

  /** Current size in bytes. */
  get size(): number {
    return this.#size;
  }

  /** Appends one `[eph] <ISO time> <text>` line (ordered after pending output). */
  note(text: string): void {
    this.write(`[eph] ${new Date().toISOString()} ${text}\n`);
  }

  /** Flushes pending output and closes the file. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      if (this.writableFinished || this.destroyed) return resolve();
      this.end(() => resolve());
    });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    // A failed write (disk full...) drops the chunk rather than erroring: an
    // errored stream would stop draining the app's pipe and block the app.
    this.#append(chunk).then(() => done(), () => done());
  }

  override _final(done: (err?: Error | null) => void): void {
    this.#fh.close().then(() => done(), done);
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this.#fh.close().then(() => done(err), () => done(err));
  }

  async #append(chunk: Buffer): Promise<void> {
    if (this.#size + chunk.length <= this.maxBytes) {
      await this.#fh.write(chunk);
      this.#size += chunk.length;
      return;
    }
    const budget = Math.floor(this.maxBytes / 2) - MARKER.length;
    const fromFile = Math.min(this.#size, Math.max(0, budget - chunk.length));
    const tail = Buffer.alloc(fromFile);
    if (fromFile > 0) await this.#fh.read(tail, 0, fromFile, this.#size - fromFile);
    let kept = Buffer.concat([tail, chunk]);
    if (kept.length > budget) kept = kept.subarray(kept.length - budget);
    // Start at a line boundary unless that would drop (nearly) everything.
    const nl = kept.indexOf(0x0a);
    if (nl >= 0 && nl < kept.length - 1) kept = kept.subarray(nl + 1);
    const next = Buffer.concat([Buffer.from(MARKER), kept]);
    await this.#fh.truncate(0);
    await this.#fh.write(next);
    this.#size = next.length;
  }
}
