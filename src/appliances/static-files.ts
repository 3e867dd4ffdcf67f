import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import type { Stats } from 'node:fs';
import { copyFile, lstat, mkdir, open, readdir, realpath, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { EphError } from '../core/errors.ts';
import { contentTypeOf } from './content-types.ts';

/** One stored file, as listed over the API. */
export interface StaticFileInfo {
  /** Relative to the site root, `/`-separated, no leading slash. */
  path: string;
  size: number;
  etag: string;
  contentType: string;
  modifiedAt: number;
}

/** A file or directory found at a path. */
export interface StaticEntry {
  /** Normalised relative path ('' is the root). */
  path: string;
  full: string;
  stats: Stats;
}

/** Default cap on one uploaded file. */
export const MAX_STATIC_FILE_BYTES = 512 * 1024 * 1024;
/** Default cap on all the files of a site together (the same as a restore may unpack). */
export const MAX_STATIC_SITE_BYTES = 8 * 1024 ** 3;

/**
 * The files of a static appliance under one root directory. Every path a
 * client sends goes through {@link normalizePath}, so nothing outside the
 * root is ever touched; uploads land in a temporary file renamed into place,
 * so readers never see half a file.
 */
export class StaticFiles {
  readonly root: string;
  readonly #maxFileBytes: number;
  readonly #maxSiteBytes: number;

  constructor(root: string, maxFileBytes = MAX_STATIC_FILE_BYTES, maxSiteBytes = MAX_STATIC_SITE_BYTES) {
    this.root = root;
    this.#maxFileBytes = maxFileBytes;
    this.#maxSiteBytes = maxSiteBytes;
  }

  /**
   * The entry at `path`, or null. Symbolic links are never followed: not
   * the last component (lstat), and not a directory on the way (the real
   * path of the parent must be the root joined with the parent's path).
   */
  async entry(path: string): Promise<StaticEntry | null> {
    const rel = normalizePath(path);
    const full = rel === '' ? this.root : join(this.root, rel);
    try {
      const stats = await lstat(full);
      if (!stats.isFile() && !stats.isDirectory()) return null;
      const parent = dirname(rel);
      if (parent !== '.' && (await realpath(dirname(full))) !== join(await realpath(this.root), parent)) return null;
      return { path: rel, full, stats };
    } catch {
      return null;
    }
  }

  /** Bytes of all the files of the site. */
  async usage(): Promise<number> {
    let n = 0;
    for (const f of await this.list()) n += f.size;
    return n;
  }

  /** Children of a directory entry. */
  async children(dir: StaticEntry): Promise<StaticEntry[]> {
    const names = (await readdir(dir.full)).filter((n) => !n.startsWith('.eph-upload-')).sort();
    const out: StaticEntry[] = [];
    for (const name of names) {
      const e = await this.entry(dir.path === '' ? name : `${dir.path}/${name}`);
      if (e) out.push(e);
    }
    return out;
  }

  /** Every file, depth first, sorted by path. */
  async list(): Promise<StaticFileInfo[]> {
    const out: StaticFileInfo[] = [];
    const walk = async (dir: StaticEntry): Promise<void> => {
      for (const e of await this.children(dir)) {
        if (e.stats.isDirectory()) await walk(e);
        else out.push(fileInfo(e));
      }
    };
    const root = await this.entry('');
    if (root) await walk(root);
    return out;
  }

  /**
   * Stores `body` at `path`. `createParents` makes missing directories (the
   * API does; WebDAV answers 409 instead, as RFC 4918 asks).
   * @returns whether the file is new.
   */
  async put(path: string, body: Readable, createParents: boolean): Promise<{ created: boolean; info: StaticFileInfo }> {
    const rel = normalizePath(path);
    if (rel === '') throw new EphError('INVALID_VALUE', 'file path: expected a file name, got the site root');
    const full = join(this.root, rel);
    const existing = await this.entry(rel);
    if (existing?.stats.isDirectory()) throw new EphError('CONFLICT', `file path: /${rel} is a directory`);
    const parent = dirname(full);
    if (createParents) await this.#mkdirs(dirname(rel));
    else {
      const p = await this.entry(dirname(rel) === '.' ? '' : dirname(rel));
      if (!p?.stats.isDirectory()) throw new EphError('CONFLICT', `file path: the directory of /${rel} does not exist`);
    }
    const temp = join(parent, `.eph-upload-${randomBytes(6).toString('hex')}`);
    // What the site may still take, the file being replaced not counted.
    const siteLeft = this.#maxSiteBytes - (await this.usage()) + (existing?.stats.size ?? 0);
    try {
      await pipeline(body, sizeCap(this.#maxFileBytes, rel, siteLeft, this.#maxSiteBytes), createWriteStream(temp, { mode: 0o644 }));
      // On disk before the answer: an acknowledged upload survives a crash.
      const fh = await open(temp, 'r');
      await fh.sync();
      await fh.close();
      await rename(temp, full);
    } catch (e) {
      await rm(temp, { force: true });
      throw e;
    }
    const stored = await this.entry(rel);
    return { created: !existing, info: fileInfo(stored!) };
  }

  /** Creates one directory; its parent must exist. */
  async mkcol(path: string): Promise<void> {
    const rel = normalizePath(path);
    if (rel === '' || (await this.entry(rel))) throw new EphError('CONFLICT', `/${rel} exists already`);
    const parent = await this.entry(dirname(rel) === '.' ? '' : dirname(rel));
    if (!parent?.stats.isDirectory()) throw new EphError('CONFLICT', `the directory of /${rel} does not exist`);
    await mkdir(join(this.root, rel));
  }

  /** Deletes a file or a directory with its contents. */
  async delete(path: string): Promise<void> {
    const rel = normalizePath(path);
    if (rel === '') throw new EphError('INVALID_VALUE', 'file path: the site root cannot be deleted');
    const e = await this.entry(rel);
    if (!e) throw new EphError('NOT_FOUND', `file /${rel} not found`);
    await rm(e.full, { recursive: true, force: true });
  }

  /** Moves a file or directory (WebDAV MOVE). */
  async move(from: string, to: string, overwrite: boolean): Promise<{ created: boolean }> {
    const src = await this.entry(from);
    if (!src || src.path === '') throw new EphError('NOT_FOUND', `/${normalizePath(from)} not found`);
    const dest = normalizePath(to);
    if (dest === '' || dest === src.path || dest.startsWith(`${src.path}/`)) throw new EphError('FORBIDDEN', 'cannot move onto itself');
    const existing = await this.entry(dest);
    if (existing && !overwrite) throw new EphError('CONFLICT', `/${dest} exists already`);
    const parent = await this.entry(dirname(dest) === '.' ? '' : dirname(dest));
    if (!parent?.stats.isDirectory()) throw new EphError('CONFLICT', `the directory of /${dest} does not exist`);
    if (existing) await rm(existing.full, { recursive: true, force: true });
    await rename(src.full, join(this.root, dest));
    return { created: !existing };
  }

  /**
   * Copies a file or directory (WebDAV COPY) to `to`, whose parent exists
   * and which does not; `shallow` copies a directory without its members
   * (Depth: 0). Refused with STORAGE_FULL, before a byte is copied, when
   * the site would pass its size limit.
   */
  async copy(from: string, to: string, shallow: boolean): Promise<void> {
    const src = await this.entry(from);
    if (!src) throw new EphError('NOT_FOUND', `/${normalizePath(from)} not found`);
    const dest = normalizePath(to);
    if (dest === '' || dest === src.path || dest.startsWith(`${src.path}/`)) throw new EphError('FORBIDDEN', 'cannot copy onto or into itself');
    const files: StaticEntry[] = [];
    const dirs: StaticEntry[] = [];
    const walk = async (e: StaticEntry): Promise<void> => {
      if (e.stats.isFile()) return void files.push(e);
      dirs.push(e);
      if (!shallow) for (const c of await this.children(e)) await walk(c);
    };
    await walk(src);
    const adding = files.reduce((n, f) => n + f.stats.size, 0);
    if ((await this.usage()) + adding > this.#maxSiteBytes) throw siteFull(this.#maxSiteBytes);
    const target = (e: StaticEntry): string => join(this.root, dest + e.path.slice(src.path.length));
    for (const d of dirs) await mkdir(target(d), { mode: 0o755 });
    for (const f of files) {
      // Through a temporary name, as uploads: a reader never sees half a file.
      const temp = join(dirname(target(f)), `.eph-upload-${randomBytes(6).toString('hex')}`);
      try {
        await copyFile(f.full, temp);
        await rename(temp, target(f));
      } catch (e) {
        await rm(temp, { force: true });
        throw e;
      }
    }
  }

  async #mkdirs(rel: string): Promise<void> {
    if (rel === '.' || rel === '') return;
    let at = '';
    for (const part of rel.split('/')) {
      at = at === '' ? part : `${at}/${part}`;
      const e = await this.entry(at);
      if (e?.stats.isFile()) throw new EphError('CONFLICT', `file path: /${at} is a file, not a directory`);
      if (!e) await mkdir(join(this.root, at)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      });
    }
  }
}

/** Ensures the root exists. */
export async function ensureRoot(root: string): Promise<void> {
  await mkdir(root, { recursive: true, mode: 0o755 });
  await stat(root);
}

/**
 * A client path made safe: percent-decoded by the caller, split on `/`,
 * empty and `.` segments dropped; `..`, NUL, backslashes and our own upload
 * temporaries are refused.
 */
export function normalizePath(path: string): string {
  const parts: string[] = [];
  for (const seg of path.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..' || seg.includes('\0') || seg.includes('\\') || seg.startsWith('.eph-upload-') || seg.length > 255) {
      throw new EphError('INVALID_VALUE', `file path: '${path.slice(0, 200)}' is not allowed`);
    }
    parts.push(seg);
  }
  return parts.join('/');
}

/** Strong validator from size and modification time (changes whenever the file is replaced). */
export function etagOf(stats: Stats): string {
  return `"${stats.size.toString(16)}-${Math.floor(stats.mtimeMs * 1000).toString(16)}"`;
}

export function fileInfo(e: StaticEntry): StaticFileInfo {
  return { path: e.path, size: e.stats.size, etag: etagOf(e.stats), contentType: contentTypeOf(e.path), modifiedAt: Math.floor(e.stats.mtimeMs) };
}

function sizeCap(limit: number, rel: string, siteLeft: number, siteLimit: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done): void {
      seen += chunk.length;
      if (seen > limit) done(new EphError('ARCHIVE_TOO_LARGE', `file /${rel} is over the ${limit}-byte limit`));
      else if (seen > siteLeft) done(siteFull(siteLimit));
      else done(null, chunk);
    },
  });
}

function siteFull(limit: number): EphError {
  return new EphError('STORAGE_FULL', `the site is over its limit of ${limit} bytes of files`);
}
