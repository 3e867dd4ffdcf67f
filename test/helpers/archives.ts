/**
 * Archive builders for tests: whole folders (re-exported from
 * examples/make-archives.ts) and entry-by-entry, including hand-crafted
 * malicious headers that yazl and node-tar refuse to produce.
 */
import { gzipSync } from 'node:zlib';
import yazl from 'yazl';

export { buildTar, buildTarGz, buildZip } from '../../examples/make-archives.ts';

export interface ZipEntrySpec {
  name: string;
  data?: string | Buffer;
  /** Full st_mode including the type bits, e.g. 0o100755, 0o120777 (symlink: data is the target). */
  mode?: number;
  dir?: boolean;
  /** Store instead of deflate. */
  store?: boolean;
}

const MTIME = new Date('2020-01-01T00:00:00Z');

/** A zip of the given entries, in order. */
export async function zipFrom(entries: ZipEntrySpec[]): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  for (const e of entries) {
    const opts: { mtime: Date; mode?: number; compress?: boolean } = { mtime: MTIME };
    if (e.mode !== undefined) opts.mode = e.mode;
    if (e.dir) zip.addEmptyDirectory(e.name, opts);
    else {
      if (e.store) opts.compress = false;
      zip.addBuffer(typeof e.data === 'string' ? Buffer.from(e.data) : (e.data ?? Buffer.alloc(0)), e.name, opts);
    }
  }
  zip.end();
  const chunks: Buffer[] = [];
  for await (const c of zip.outputStream as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

/**
 * Replaces every occurrence of `from` by `to` (same byte length) in a built
 * archive: how tests plant names such as `../x` that builders refuse.
 */
export function patchBytes(buf: Buffer, from: string, to: string): Buffer {
  const a = Buffer.from(from);
  const b = Buffer.from(to);
  if (a.length !== b.length) throw new Error('patchBytes: from and to must have the same byte length');
  const out = Buffer.from(buf);
  let n = 0;
  for (let i = out.indexOf(a); i !== -1; i = out.indexOf(a, i + a.length)) {
    b.copy(out, i);
    n++;
  }
  if (n === 0) throw new Error(`patchBytes: '${from}' not found`);
  return out;
}

/**
 * Sets the uncompressed size recorded in the central directory (and the
 * local header) of every entry named `name` of a zip: a lying zip bomb.
 */
export function patchZipDeclaredSize(buf: Buffer, name: string, size: number): Buffer {
  const out = Buffer.from(buf);
  const nameBuf = Buffer.from(name);
  let n = 0;
  for (let i = out.indexOf('PK\x01\x02'); i !== -1; i = out.indexOf('PK\x01\x02', i + 4)) {
    const len = out.readUInt16LE(i + 28);
    if (out.subarray(i + 46, i + 46 + len).equals(nameBuf)) {
      out.writeUInt32LE(size, i + 24);
      const local = out.readUInt32LE(i + 42);
      out.writeUInt32LE(size, local + 22);
      n++;
    }
  }
  if (n === 0) throw new Error(`patchZipDeclaredSize: no entry '${name}'`);
  return out;
}

export interface TarEntrySpec {
  name: string;
  /** ustar type flag: '0' file, '1' hard link, '2' symlink, '3' char device, '4' block device, '5' dir, '6' FIFO. */
  type?: string;
  data?: string | Buffer;
  mode?: number;
  linkname?: string;
}

/** One 512-byte ustar header, checksum included. */
export function tarHeader(e: TarEntrySpec, size: number): Buffer {
  const h = Buffer.alloc(512);
  const put = (s: string, off: number, len: number): void => {
    Buffer.from(s, 'utf8').subarray(0, len).copy(h, off);
  };
  const octal = (n: number, off: number, len: number): void => put(n.toString(8).padStart(len - 1, '0') + '\0', off, len);
  put(e.name, 0, 100);
  octal(e.mode ?? (e.type === '5' ? 0o755 : 0o644), 100, 8);
  octal(0, 108, 8);
  octal(0, 116, 8);
  octal(size, 124, 12);
  octal(Math.floor(MTIME.getTime() / 1000), 136, 12);
  h.fill(0x20, 148, 156);
  put(e.type ?? '0', 156, 1);
  put(e.linkname ?? '', 157, 100);
  put('ustar\x0000', 257, 8);
  let sum = 0;
  for (const byte of h) sum += byte;
  put(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8);
  return h;
}

/** A tar of the given entries, byte by byte; `endMarker: false` leaves out the two zero blocks. */
export function tarFrom(entries: TarEntrySpec[], opts: { gzip?: boolean; endMarker?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = typeof e.data === 'string' ? Buffer.from(e.data) : (e.data ?? Buffer.alloc(0));
    parts.push(tarHeader(e, data.length), data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  if (opts.endMarker !== false) parts.push(Buffer.alloc(1024));
  const tar = Buffer.concat(parts);
  return opts.gzip ? gzipSync(tar) : tar;
}
