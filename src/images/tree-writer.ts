import { constants } from 'node:fs';
import { chmod, link, mkdir, open, symlink, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { EphError } from '../core/errors.ts';
import { checkLinkTarget, linkStaysInside, printable, safeEntryPath } from './entry-path.ts';
import { fsyncDir, type TreeListing } from './fs-util.ts';
import type { UnpackBudget } from './limits.ts';

const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = constants;
/** Chunks are gathered up to this size before a write: fewer syscalls, bounded memory. */
const WRITE_BATCH = 1 << 20;

type Kind = 'file' | 'dir' | 'link';

const conflict = (name: string, was: Kind, now: Kind): EphError =>
  new EphError('ARCHIVE_INVALID', `entry '${printable(name)}' is a ${now} but an earlier entry made it a ${was}`);

/**
 * Writes the entries of one archive into a fresh directory, whatever the
 * format. It is the single place that enforces safety: names are checked,
 * nothing is ever written through a symbolic link (the archive's links are
 * tracked, files are opened O_EXCL|O_NOFOLLOW), every byte is counted
 * against the budget, and files end read-only (0444, or 0555 when the
 * archive marked them executable).
 */
export class TreeWriter {
  readonly top: string;
  readonly budget: UnpackBudget;
  #kinds = new Map<string, Kind>();
  #links = new Map<string, string>();

  constructor(top: string, budget: UnpackBudget) {
    this.top = top;
    this.budget = budget;
  }

  /** A directory entry; its mode is ignored (image directories are 0555). */
  async dir(raw: string): Promise<void> {
    this.budget.entry(raw);
    const p = safeEntryPath(raw);
    if (p === '') return;
    await this.#parents(p, raw);
    const was = this.#kinds.get(p);
    if (was === 'dir') return;
    if (was !== undefined) throw conflict(raw, was, 'dir');
    await mkdir(join(this.top, p), 0o755);
    this.#kinds.set(p, 'dir');
  }

  /** A regular file; resolves with the bytes really written. */
  async file(raw: string, mode: number, data: AsyncIterable<Buffer>): Promise<number> {
    this.budget.entry(raw);
    const p = safeEntryPath(raw);
    if (p === '') throw new EphError('ARCHIVE_INVALID', `entry '${printable(raw)}' is a file without a name`);
    await this.#parents(p, raw);
    await this.#replace(p, raw, 'file');
    const fh = await open(join(this.top, p), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
    this.#kinds.set(p, 'file');
    let written = 0;
    try {
      let batch: Buffer[] = [];
      let batched = 0;
      for await (const chunk of data) {
        this.budget.add(chunk.length, raw);
        written += chunk.length;
        batch.push(chunk);
        batched += chunk.length;
        if (batched >= WRITE_BATCH) {
          await writeAll(fh, batch, batched);
          batch = [];
          batched = 0;
        }
      }
      if (batched > 0) await writeAll(fh, batch, batched);
      await fh.datasync();
      await fh.chmod(mode & 0o111 ? 0o555 : 0o444);
    } finally {
      await fh.close();
    }
    return written;
  }

  /** A symbolic link; where it points is checked in {@link finish}, once all links are known. */
  async symlink(raw: string, target: string): Promise<void> {
    this.budget.entry(raw);
    const p = safeEntryPath(raw);
    if (p === '') throw new EphError('ARCHIVE_INVALID', `entry '${printable(raw)}' is a symbolic link without a name`);
    checkLinkTarget(raw, target);
    await this.#parents(p, raw);
    await this.#replace(p, raw, 'link');
    await symlink(target, join(this.top, p));
    this.#kinds.set(p, 'link');
    this.#links.set(p, target);
  }

  /** A hard link (tar): `targetRaw` names an earlier regular file of the same archive. */
  async hardlink(raw: string, targetRaw: string): Promise<void> {
    this.budget.entry(raw);
    const p = safeEntryPath(raw);
    if (p === '') throw new EphError('ARCHIVE_INVALID', `entry '${printable(raw)}' is a hard link without a name`);
    let t: string;
    try {
      t = safeEntryPath(targetRaw);
    } catch (e) {
      if (e instanceof EphError && e.code === 'ARCHIVE_UNSAFE') {
        throw new EphError('ARCHIVE_UNSAFE', `entry '${printable(raw)}' is a hard link pointing outside the archive root ('${printable(targetRaw)}')`);
      }
      throw e;
    }
    const kind = this.#kinds.get(t);
    if (kind === 'link') throw new EphError('ARCHIVE_UNSAFE', `entry '${printable(raw)}' is a hard link to the symbolic link '${printable(targetRaw)}'`);
    if (kind !== 'file') {
      throw new EphError('ARCHIVE_INVALID', `entry '${printable(raw)}' is a hard link to '${printable(targetRaw)}', which is not an earlier file of the archive`);
    }
    if (t === p) return;
    await this.#parents(p, raw);
    await this.#replace(p, raw, 'file');
    await link(join(this.top, t), join(this.top, p));
    this.#kinds.set(p, 'file');
  }

  /** Everything written so far. */
  listing(): TreeListing {
    const out: TreeListing = { files: [], dirs: [], links: new Map(this.#links) };
    for (const [p, k] of this.#kinds) {
      if (k === 'file') out.files.push(p);
      else if (k === 'dir') out.dirs.push(p);
    }
    return out;
  }

  /**
   * Checks every symbolic link under `prefix` (the folder that becomes the
   * image; '' for the whole tree) resolves inside it, makes directories
   * read-only (except `prefix` and the top, which still have to be renamed:
   * moving a directory to another parent needs write permission on it) and
   * flushes them.
   */
  async finish(prefix: string): Promise<void> {
    for (const [p, target] of this.#links) {
      if (prefix !== '' && !p.startsWith(`${prefix}/`)) continue;
      if (!linkStaysInside(p, this.#links, prefix)) {
        throw new EphError('ARCHIVE_UNSAFE', `entry '${printable(p)}' is a symbolic link pointing outside the ${prefix === '' ? 'archive root' : 'application folder'} ('${printable(target)}')`);
      }
    }
    const dirs = this.listing().dirs.sort((a, b) => depth(b) - depth(a));
    for (const d of dirs) {
      const abs = join(this.top, d);
      if (d !== prefix) await chmod(abs, 0o555);
      await fsyncDir(abs);
    }
    await fsyncDir(this.top);
  }

  async #parents(p: string, raw: string): Promise<void> {
    const segs = p.split('/');
    let a = '';
    for (let i = 0; i < segs.length - 1; i++) {
      a = a === '' ? segs[i]! : `${a}/${segs[i]}`;
      const k = this.#kinds.get(a);
      if (k === 'dir') continue;
      if (k === 'link') throw new EphError('ARCHIVE_UNSAFE', `entry '${printable(raw)}' would be written through the symbolic link '${printable(a)}'`);
      if (k === 'file') throw conflict(a, 'file', 'dir');
      await mkdir(join(this.top, a), 0o755);
      this.#kinds.set(a, 'dir');
    }
  }

  /** A later entry with the same name replaces a file or link (as tar does); never a directory. */
  async #replace(p: string, raw: string, now: Kind): Promise<void> {
    const was = this.#kinds.get(p);
    if (was === undefined) return;
    if (was === 'dir') throw conflict(raw, was, now);
    await unlink(join(this.top, p));
    this.#kinds.delete(p);
    this.#links.delete(p);
  }
}

function depth(p: string): number {
  let n = 0;
  for (let i = 0; i < p.length; i++) if (p.charCodeAt(i) === 47) n++;
  return n;
}

async function writeAll(fh: FileHandle, chunks: Buffer[], total: number): Promise<void> {
  const buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off);
    off += bytesWritten;
  }
}
