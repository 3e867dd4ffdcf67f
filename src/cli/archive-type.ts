import { open } from 'node:fs/promises';

/**
 * The Content-Type for an archive, from its first bytes: zip (`PK\x03\x04`,
 * or `PK\x05\x06` when empty), gzip (`1f 8b`, a tar.gz), POSIX tar (`ustar`
 * at offset 257). Anything else goes as application/octet-stream and the
 * server, which knows its limits, says why it refuses it.
 */
export function archiveContentType(head: Uint8Array): string {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (b.length >= 4 && b[0] === 0x50 && b[1] === 0x4b && (b[2] === 3 || b[2] === 5) && (b[3] === 4 || b[3] === 6)) return 'application/zip';
  if (b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'application/gzip';
  if (b.length >= 262 && b.toString('latin1', 257, 262) === 'ustar') return 'application/x-tar';
  return 'application/octet-stream';
}

/** Reads the first bytes of `file` and names its archive type. */
export async function fileArchiveType(file: string): Promise<string> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(512);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return archiveContentType(buf.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}
