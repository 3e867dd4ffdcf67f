import { createReadStream } from 'node:fs';
import { pipeline, Readable } from 'node:stream';
import { crc32, createInflateRaw } from 'node:zlib';
import yauzl from 'yauzl';
import type { Entry, ZipFile } from 'yauzl';
import { EphError } from '../core/errors.ts';
import { printable, safeEntryPath } from './entry-path.ts';
import type { TreeWriter } from './tree-writer.ts';

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFREG = 0o100000;
const MAX_LINK_TARGET = 4096;
/** Bigger reads and inflate chunks than yauzl's defaults: the unpack is I/O-bound on few large files. */
const READ_CHUNK = 1 << 20;
const INFLATE_CHUNK = 256 * 1024;
const noop = (): void => {};

const invalid = (msg: string, cause?: unknown): EphError => new EphError('ARCHIVE_INVALID', msg, { cause });
const why = (e: unknown): string => (e instanceof Error ? e.message : String(e));

interface Planned {
  entry: Entry;
  name: string;
  type: 'dir' | 'file' | 'link';
  mode: number;
}

/**
 * Unpacks a zip file into `sink`. The central directory is read and checked
 * first (names, types, declared sizes, entry count), so an unsafe or
 * oversized archive fails before a byte is written; then each entry is
 * inflated with its real size and CRC-32 checked (yauzl checks neither the
 * CRC nor, with validateEntrySizes off, the size: we do both, so that a lying
 * header ends as ARCHIVE_TOO_LARGE with the first inflated chunk past its
 * declared size, before that chunk is written).
 */
export async function unpackZip(file: string, sink: TreeWriter): Promise<void> {
  const { maxEntries, maxUnpackedBytes } = sink.budget.limits;
  let zip: ZipFile;
  try {
    zip = await yauzl.openPromise(file, { lazyEntries: true, autoClose: false, decodeStrings: false, validateEntrySizes: false, strictFileNames: true });
  } catch (e) {
    throw invalid(`not a readable zip archive: ${why(e)}`, e);
  }
  try {
    if (zip.entryCount > maxEntries) throw new EphError('ARCHIVE_TOO_LARGE', `archive has ${zip.entryCount} entries, the limit is ${maxEntries}`);
    const plan: Planned[] = [];
    let declared = 0;
    try {
      for await (const entry of zip.eachEntry()) plan.push(planEntry(entry));
    } catch (e) {
      if (e instanceof EphError) throw e;
      throw invalid(`corrupt zip directory: ${why(e)}`, e);
    }
    for (const p of plan) {
      declared += p.entry.uncompressedSize;
      if (declared > maxUnpackedBytes) {
        throw new EphError('ARCHIVE_TOO_LARGE', `archive declares more than ${maxUnpackedBytes} unpacked bytes (limit passed at '${printable(p.name)}')`);
      }
    }
    for (const p of plan) await extract(file, zip, p, sink);
  } finally {
    zip.close();
  }
}

function planEntry(entry: Entry): Planned {
  const name = yauzl.getFileNameLowLevel(entry.generalPurposeBitFlag, entry.fileNameRaw, entry.extraFields, true);
  safeEntryPath(name);
  // Unix mode in the high half of the external attributes (0 when written on DOS/Windows).
  const mode = (entry.externalFileAttributes >>> 16) & 0xffff;
  const fmt = mode & S_IFMT;
  let type: Planned['type'];
  if (name.endsWith('/') || fmt === S_IFDIR) type = 'dir';
  else if (fmt === S_IFLNK) type = 'link';
  else if (fmt === 0 || fmt === S_IFREG) type = 'file';
  else throw new EphError('ARCHIVE_UNSAFE', `entry '${printable(name)}' is a device, FIFO or socket (mode ${fmt.toString(8)})`);
  if (type !== 'dir') {
    if (entry.isEncrypted()) throw invalid(`entry '${printable(name)}' is encrypted`);
    if (entry.compressionMethod !== 0 && entry.compressionMethod !== 8) {
      throw invalid(`entry '${printable(name)}' uses compression method ${entry.compressionMethod}; only stored and deflate are supported`);
    }
  }
  return { entry, name, type, mode };
}

async function extract(file: string, zip: ZipFile, p: Planned, sink: TreeWriter): Promise<void> {
  if (p.type === 'dir') return sink.dir(p.name);
  const data = entryData(file, zip, p, sink.budget.limits.maxUnpackedBytes);
  if (p.type === 'link') {
    const parts: Buffer[] = [];
    let n = 0;
    for await (const chunk of data) {
      n += chunk.length;
      if (n > MAX_LINK_TARGET) throw invalid(`symbolic link '${printable(p.name)}' has a target longer than ${MAX_LINK_TARGET} bytes`);
      parts.push(chunk);
    }
    return sink.symlink(p.name, Buffer.concat(parts).toString('utf8'));
  }
  await sink.file(p.name, p.mode, data);
}

/**
 * The entry's bytes, counted as they are inflated: ARCHIVE_TOO_LARGE as soon
 * as they pass the declared size, ARCHIVE_INVALID at the end when there are
 * fewer or the CRC-32 is wrong.
 */
async function* entryData(file: string, zip: ZipFile, p: Planned, maxUnpackedBytes: number): AsyncGenerator<Buffer> {
  let stream: Readable;
  try {
    // yauzl finds and checks the local header; we read the data range ourselves.
    const { fileDataStart } = await zip.readLocalFileHeaderPromise(p.entry, { minimal: true });
    const end = fileDataStart + p.entry.compressedSize;
    if (end > zip.fileSize) throw new Error('its data runs past the end of the archive');
    const raw = p.entry.compressedSize === 0 ? Readable.from([]) : createReadStream(file, { start: fileDataStart, end: end - 1, highWaterMark: READ_CHUNK });
    stream = p.entry.compressionMethod === 8 ? pipeline(raw, createInflateRaw({ chunkSize: INFLATE_CHUNK }), noop) : raw;
  } catch (e) {
    throw invalid(`entry '${printable(p.name)}' cannot be read: ${why(e)}`, e);
  }
  let crc = 0;
  let size = 0;
  const declared = p.entry.uncompressedSize;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      size += chunk.length;
      // The declared sizes were checked against the budget: an entry that
      // inflates past its own is a bomb. Stop inflating now (the finally
      // destroys the stream), before this chunk reaches the disk.
      if (size > declared) {
        throw new EphError(
          'ARCHIVE_TOO_LARGE',
          `entry '${printable(p.name)}' inflates past the ${declared} bytes its header declares (the unpack limit is ${maxUnpackedBytes} bytes); refused`,
        );
      }
      crc = crc32(chunk, crc);
      yield chunk;
    }
  } catch (e) {
    if (e instanceof EphError) throw e;
    throw invalid(`entry '${printable(p.name)}' is corrupt: ${why(e)}`, e);
  } finally {
    stream.destroy();
  }
  if (size !== p.entry.uncompressedSize) {
    throw invalid(`entry '${printable(p.name)}' holds ${size} bytes but declares ${p.entry.uncompressedSize}`);
  }
  if (crc >>> 0 !== p.entry.crc32 >>> 0) throw invalid(`entry '${printable(p.name)}' is corrupt (CRC-32 mismatch)`);
}
