import { createReadStream } from 'node:fs';
import { pipeline, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { EphError } from '../core/errors.ts';
import { printable } from './entry-path.ts';
import type { TreeWriter } from './tree-writer.ts';

const invalid = (msg: string, cause?: unknown): EphError => new EphError('ARCHIVE_INVALID', msg, { cause });
const why = (e: unknown): string => (e instanceof Error ? e.message : String(e));
const noop = (): void => {};

function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve = noop;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * Unpacks a tar (or gzip-compressed tar) file into `sink`, streaming: node-tar
 * parses headers (pax, GNU long names, base-256 sizes), the sink decides what
 * is safe. The parser runs strict, so a bad checksum or truncated body is an
 * error, and we also insist on the end-of-archive marker, which is the only
 * sign that a tar cut at a block boundary is incomplete.
 */
export async function unpackTar(file: string, gzip: boolean, sink: TreeWriter): Promise<void> {
  const { maxEntries, maxUnpackedBytes } = sink.budget.limits;
  // A tar stream is its files plus, per entry, a header, padding and maybe a
  // pax record: anything longer (e.g. a gzip of endless zero blocks) is a bomb.
  const streamLimit = maxUnpackedBytes + (maxEntries + 4) * 2048 + (1 << 20);
  const parser = new Parser({ strict: true });
  const queue: ReadEntry[] = [];
  let failure: unknown = null;
  let ended = false;
  let sawEndMarker = false;
  let current: ReadEntry | null = null;
  // One promise that every event resolves: waiters re-check their condition.
  let pulse = signal();
  const notify = (): void => {
    const p = pulse;
    pulse = signal();
    p.resolve();
  };
  const fail = (e: unknown): void => {
    if (failure !== null) return;
    failure = e;
    current?.destroy();
    notify();
  };

  parser.on('entry', (e: ReadEntry) => {
    queue.push(e);
    notify();
  });
  parser.on('ignoredEntry', (e: ReadEntry) => {
    if (e.type === 'SparseFile') fail(invalid(`entry '${printable(e.path)}' is a sparse file, which is not supported`));
  });
  parser.on('error', (e: unknown) => fail(invalid(`not a valid tar archive: ${why(e)}`, e)));
  parser.on('nullBlock', () => (sawEndMarker = true));
  parser.on('eof', () => (sawEndMarker = true));
  parser.on('drain', notify);
  parser.on('end', () => {
    ended = true;
    notify();
  });

  const feed = async (): Promise<void> => {
    const source = createReadStream(file, { highWaterMark: 1 << 20 });
    const input: Readable = gzip ? pipeline(source, createGunzip(), noop) : source;
    let total = 0;
    try {
      for await (const chunk of input as AsyncIterable<Buffer>) {
        if (failure !== null) break;
        total += chunk.length;
        if (total > streamLimit) {
          fail(new EphError('ARCHIVE_TOO_LARGE', `archive unpacks to more than ${maxUnpackedBytes} bytes (tar stream passed ${streamLimit} bytes)`));
          break;
        }
        if (!parser.write(chunk)) {
          let drained = false;
          const onDrain = (): void => {
            drained = true;
          };
          parser.once('drain', onDrain);
          while (!drained && failure === null) await pulse.promise;
          parser.off('drain', onDrain);
        }
      }
    } catch (e) {
      fail(invalid(gzip ? `corrupt or truncated gzip data: ${why(e)}` : `cannot read the archive: ${why(e)}`, e));
    } finally {
      input.destroy();
      source.destroy();
    }
    if (failure === null) parser.end();
  };

  const consume = async (): Promise<void> => {
    for (;;) {
      while (queue.length === 0 && !ended && failure === null) await pulse.promise;
      const entry = queue.shift();
      if (failure !== null || entry === undefined) return;
      current = entry;
      try {
        await unpackEntry(entry, sink);
      } catch (e) {
        fail(e);
        return;
      } finally {
        current = null;
      }
    }
  };

  await Promise.all([feed(), consume()]);
  if (failure !== null) throw failure;
  if (!sawEndMarker) throw invalid('archive is truncated: the tar end-of-archive marker is missing');
}

async function unpackEntry(entry: ReadEntry, sink: TreeWriter): Promise<void> {
  const name = entry.path;
  switch (entry.type) {
    case 'File':
    case 'OldFile':
    case 'ContiguousFile':
      // A tar header's size cannot lie (it frames the stream): refuse a huge file before writing a byte of it.
      sink.budget.expect(entry.size ?? 0, printable(name));
      await sink.file(name, entry.mode ?? 0o644, entry as AsyncIterable<Buffer>);
      return;
    case 'Directory':
    case 'GNUDumpDir':
      entry.resume();
      return sink.dir(name);
    case 'SymbolicLink':
      entry.resume();
      return sink.symlink(name, entry.linkpath ?? '');
    case 'Link':
      entry.resume();
      return sink.hardlink(name, entry.linkpath ?? '');
    case 'CharacterDevice':
    case 'BlockDevice':
    case 'FIFO':
      throw new EphError('ARCHIVE_UNSAFE', `entry '${printable(name)}' is a ${entry.type === 'FIFO' ? 'FIFO' : 'device'}`);
    default:
      throw invalid(`entry '${printable(name)}' has the unsupported type ${entry.type}`);
  }
}
