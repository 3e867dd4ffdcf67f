/** Archive formats the intake accepts, told apart by their first bytes, never by name. */
export type ArchiveFormat = 'zip' | 'tar' | 'tar.gz';

/** How many leading bytes {@link sniffFormat} needs to decide. */
export const SNIFF_BYTES = 512;

/**
 * Recognises zip (local file header or, for an empty zip, the end record),
 * gzip (assumed to wrap a tar; the tar reader proves it) and tar (ustar magic,
 * or a pre-POSIX header whose checksum is right). Null for anything else.
 */
export function sniffFormat(head: Buffer): ArchiveFormat | null {
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b) {
    if ((head[2] === 0x03 && head[3] === 0x04) || (head[2] === 0x05 && head[3] === 0x06)) return 'zip';
  }
  if (head.length >= 3 && head[0] === 0x1f && head[1] === 0x8b && head[2] === 0x08) return 'tar.gz';
  if (head.length >= 512) {
    if (head.toString('latin1', 257, 262) === 'ustar') return 'tar';
    if (tarChecksumValid(head)) return 'tar';
  }
  return null;
}

/** The header checksum: sum of all 512 bytes with the checksum field counted as spaces. */
function tarChecksumValid(block: Buffer): boolean {
  const field = block.toString('latin1', 148, 156).replace(/[\0 ]+$/, '').trim();
  if (!/^[0-7]{1,7}$/.test(field)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  // An all-zero block would "match" a zero checksum; a real header never sums to 8 spaces only.
  return sum === parseInt(field, 8) && sum !== 8 * 0x20;
}
