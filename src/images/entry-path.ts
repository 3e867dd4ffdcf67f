import { EphError } from '../core/errors.ts';

const MAX_SEGMENT_BYTES = 255;
const MAX_PATH_BYTES = 4096;
/** The kernel gives up after 40 links (ELOOP); so do we. */
const MAX_LINK_HOPS = 40;

const unsafe = (name: string, why: string): EphError => new EphError('ARCHIVE_UNSAFE', `entry '${printable(name)}' ${why}`);

/** Entry names come from the archive: keep control characters out of messages and logs. */
export function printable(name: string): string {
  return name.replace(/[\0-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * Turns an entry name from an archive into a normalised relative path
 * ('' for the root itself), or throws ARCHIVE_UNSAFE for names that could
 * land outside the unpack directory: absolute paths, `..` segments, Windows
 * drive letters and backslashes (which Windows tools treat as separators).
 *
 * @example safeEntryPath('./app/Procfile') // 'app/Procfile'
 */
export function safeEntryPath(raw: string): string {
  if (raw.length === 0) throw new EphError('ARCHIVE_INVALID', 'archive has an entry with an empty name');
  if (raw.includes('\0')) throw unsafe(raw, 'has a NUL byte in its name');
  if (raw.includes('\\')) throw unsafe(raw, 'has a backslash in its name (a Windows path separator)');
  if (raw.startsWith('/')) throw unsafe(raw, 'is an absolute path');
  if (/^[A-Za-z]:/.test(raw)) throw unsafe(raw, 'starts with a Windows drive letter');
  const parts: string[] = [];
  for (const seg of raw.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') throw unsafe(raw, "escapes the archive root ('..')");
    if (Buffer.byteLength(seg) > MAX_SEGMENT_BYTES) throw new EphError('ARCHIVE_INVALID', `entry '${printable(raw)}' has a name segment longer than ${MAX_SEGMENT_BYTES} bytes`);
    parts.push(seg);
  }
  const path = parts.join('/');
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) throw new EphError('ARCHIVE_INVALID', `entry '${printable(raw).slice(0, 80)}…' has a path longer than ${MAX_PATH_BYTES} bytes`);
  return path;
}

/** Checks a symbolic link target's own syntax (where it points is checked by {@link linkStaysInside}). */
export function checkLinkTarget(name: string, target: string): void {
  if (target.length === 0) throw new EphError('ARCHIVE_INVALID', `symbolic link '${printable(name)}' has an empty target`);
  if (target.includes('\0')) throw unsafe(name, 'is a symbolic link whose target has a NUL byte');
  if (target.startsWith('/')) throw unsafe(name, `is a symbolic link to an absolute path ('${printable(target)}')`);
  if (target.includes('\\') || /^[A-Za-z]:/.test(target)) throw unsafe(name, `is a symbolic link with a Windows-style target ('${printable(target)}')`);
}

/**
 * Follows the symbolic link at `link` the way the kernel would, through every
 * other link of the archive (`links`: path → target), and says whether it
 * ends inside `prefix` ('' for the whole tree). A purely textual check is not
 * enough: with `a -> ..` inside `sub/`, the target `sub/a/..` looks harmless
 * but leaves the tree.
 */
export function linkStaysInside(link: string, links: ReadonlyMap<string, string>, prefix: string): boolean {
  const floor = prefix === '' ? 0 : prefix.split('/').length;
  const cur = link.split('/');
  cur.pop();
  if (cur.length < floor || (floor > 0 && cur.slice(0, floor).join('/') !== prefix)) return false;
  const pending = splitTarget(links.get(link) ?? '');
  let hops = 0;
  while (pending.length > 0) {
    const seg = pending.shift()!;
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (cur.length <= floor) return false;
      cur.pop();
      continue;
    }
    cur.push(seg);
    const target = links.get(cur.join('/'));
    if (target !== undefined) {
      if (++hops > MAX_LINK_HOPS) return false;
      cur.pop();
      pending.unshift(...splitTarget(target));
    }
  }
  return true;
}

function splitTarget(target: string): string[] {
  return target.split('/');
}
