/**
 * Decompression bombs built byte by byte, fast: a deflate stream of N MiB of
 * zeros is the same ~1 KB block (flushed with Z_FULL_FLUSH, so blocks do not
 * refer to each other) repeated N times, then an empty final block.
 */
import { constants, crc32, deflateRawSync } from 'node:zlib';
import { tarHeader } from '../helpers/archives.ts';

const MiB = 2 ** 20;
const ZEROS = Buffer.alloc(MiB);
const ZERO_BLOCK = deflateRawSync(ZEROS, { finishFlush: constants.Z_FULL_FLUSH });
/** BFINAL=1, fixed Huffman, end-of-block: the stream's last block, byte-aligned after a full flush. */
const FINAL_BLOCK = Buffer.from([0x03, 0x00]);

/** Raw deflate of `prefix` followed by `zeroMiB` MiB of zeros; with the CRC-32 and length of what it inflates to. */
function deflateZeros(prefix: Buffer, zeroMiB: number): { data: Buffer; crc: number; size: number } {
  const parts: Buffer[] = [];
  let crc = 0;
  if (prefix.length > 0) {
    parts.push(deflateRawSync(prefix, { finishFlush: constants.Z_FULL_FLUSH }));
    crc = crc32(prefix, crc);
  }
  for (let i = 0; i < zeroMiB; i++) {
    parts.push(ZERO_BLOCK);
    crc = crc32(ZEROS, crc);
  }
  parts.push(FINAL_BLOCK);
  return { data: Buffer.concat(parts), crc: crc >>> 0, size: prefix.length + zeroMiB * MiB };
}

interface ZipPart {
  name: string;
  method: 0 | 8;
  data: Buffer;
  crc: number;
  /** What the headers say the entry inflates to. */
  declared: number;
}

/**
 * A zip holding a Procfile and `bomb.bin`, whose headers (local and central)
 * declare `declaredSize` bytes while its deflate data inflates to `zeroMiB`
 * MiB of zeros.
 */
export function lyingZipBomb(zeroMiB: number, declaredSize: number): Buffer {
  const procfile = Buffer.from('web: node server.js\n');
  const bomb = deflateZeros(Buffer.alloc(0), zeroMiB);
  const entries: ZipPart[] = [
    { name: 'Procfile', method: 0, data: procfile, crc: crc32(procfile) >>> 0, declared: procfile.length },
    { name: 'bomb.bin', method: 8, data: bomb.data, crc: bomb.crc, declared: declaredSize },
  ];
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0, 6);
    local.writeUInt16LE(e.method, 8);
    local.writeUInt16LE(0, 10);
    local.writeUInt16LE(0x5021, 12);
    local.writeUInt32LE(e.crc, 14);
    local.writeUInt32LE(e.data.length, 18);
    local.writeUInt32LE(e.declared, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(0, 28);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0, 8);
    central.writeUInt16LE(e.method, 10);
    central.writeUInt16LE(0, 12);
    central.writeUInt16LE(0x5021, 14);
    central.writeUInt32LE(e.crc, 16);
    central.writeUInt32LE(e.data.length, 20);
    central.writeUInt32LE(e.declared, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE((0o100644 << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, e.data);
    centrals.push(central, name);
    offset += local.length + name.length + e.data.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

/**
 * A valid tar.gz of a Procfile and `zeros.bin`, a file of `zeroMiB` MiB of
 * zeros (its header declares that size, as GNU tar would), followed by the
 * end-of-archive marker.
 */
export function zeroTarGzBomb(zeroMiB: number): Buffer {
  const procfile = Buffer.from('web: node server.js\n');
  const prefix = Buffer.concat([
    tarHeader({ name: 'Procfile' }, procfile.length),
    procfile,
    Buffer.alloc(512 - procfile.length),
    tarHeader({ name: 'zeros.bin' }, zeroMiB * MiB),
  ]);
  // The file's zeros and then the two zero blocks of the end marker, rounded to whole MiB of zeros.
  const { data, crc, size } = deflateZeros(prefix, zeroMiB + 1);
  const head = Buffer.from([0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0x03]);
  const tail = Buffer.alloc(8);
  tail.writeUInt32LE(crc, 0);
  tail.writeUInt32LE(size % 2 ** 32, 4);
  return Buffer.concat([head, data, tail]);
}
