import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { EphError } from '../core/errors.ts';
import type { AppKind } from '../core/types.ts';
import { detectApp } from './detect-app.ts';
import { fsyncDir, listTree, removeTree } from './fs-util.ts';
import { UnpackBudget, type IntakeLimits } from './limits.ts';
import { receiveArchive } from './receive.ts';
import { sniffFormat } from './sniff-format.ts';
import { unpackTar } from './tar-reader.ts';
import { TreeWriter } from './tree-writer.ts';
import { unpackZip } from './zip-reader.ts';
import { KeyedLock } from '../core/keyed-lock.ts';

export type { IntakeLimits } from './limits.ts';

/** The outcome of one publish. */
export interface IntakeResult {
  /** sha256 of the archive bytes, hex. */
  digest: string;
  /** Archive size in bytes. */
  size: number;
  kind: AppKind;
  /** pharo: the image path relative to imageDir; procfile: the `web:` command (run in imageDir). */
  entry: string;
  /** The unpacked, read-only image directory. */
  imageDir: string;
  /** True when this digest was already stored and nothing was written. */
  reused: boolean;
}

export interface ImageStoreOptions {
  /** Where images live: `<root>/<digest>/`, `<root>/<digest>.archive`, `<root>/<digest>.json`. */
  root: string;
  /** Scratch space on the same file system as root (renames must be atomic). */
  tmpDir: string;
  limits: IntakeLimits;
}

export interface IntakeOptions {
  /** Told the bytes received so far. */
  onProgress?: (bytes: number) => void;
  /**
   * A tighter bound than maxArchiveBytes for this one upload (what the
   * user's plan has left): the receive stops as soon as it is passed and
   * `refuse()` is thrown instead of ARCHIVE_TOO_LARGE.
   */
  quota?: { bytes: number; refuse: () => EphError };
}

/** What is kept beside each image so that a re-publish answers without unpacking. */
interface ImageMeta {
  digest: string;
  size: number;
  kind: AppKind;
  entry: string;
}

const DIGEST = /^[0-9a-f]{64}$/;
const SIDECAR = /^([0-9a-f]{64})\.(archive|json)$/;
/** Every scratch name starts with this, so recover() never touches other parts' files in tmpDir. */
const TMP_PREFIX = 'intake-';

const isErrno = (e: unknown, ...codes: string[]): boolean => codes.includes((e as NodeJS.ErrnoException)?.code ?? '');

/**
 * Archive intake: verifies, hashes and unpacks uploaded archives once per
 * digest into read-only directories.
 *
 * Layout and commit order: the archive and its metadata are renamed into
 * root first, the image directory last; the directory's appearance is the
 * commit point (has() is true from then on), and recover() removes archive
 * or metadata files whose directory never appeared.
 *
 * @example
 * const images = new ImageStore({ root: 'data/images', tmpDir: 'data/tmp', limits });
 * await images.recover();
 * const r = await images.intake(request.raw); // { digest, kind: 'procfile', entry: 'node server.js', imageDir, reused }
 */
export class ImageStore {
  readonly root: string;
  readonly tmpDir: string;
  readonly limits: IntakeLimits;
  readonly #locks = new KeyedLock();

  constructor(opts: ImageStoreOptions) {
    this.root = opts.root;
    this.tmpDir = opts.tmpDir;
    this.limits = { ...opts.limits };
    for (const [k, v] of Object.entries(this.limits)) {
      if (!Number.isSafeInteger(v) || v <= 0) throw new EphError('INVALID_CONFIG', `image store: ${k} must be a positive integer, got ${v}`);
    }
  }

  /**
   * Streams an upload to tmp (hashing as it goes, stopping with
   * ARCHIVE_TOO_LARGE as soon as it passes maxArchiveBytes), fsyncs it,
   * then verifies and unpacks it once per digest, atomically. Resolves only
   * when archive and image are durable. On any error nothing is left behind.
   * `onProgress` receives the bytes received so far.
   */
  async intake(body: NodeJS.ReadableStream, opts: IntakeOptions = {}): Promise<IntakeResult> {
    await mkdir(this.root, { recursive: true });
    await mkdir(this.tmpDir, { recursive: true });
    const id = `${TMP_PREFIX}${randomBytes(8).toString('hex')}`;
    const part = join(this.tmpDir, `${id}.archive`);
    const metaTmp = join(this.tmpDir, `${id}.json`);
    const stage = join(this.tmpDir, `${id}.d`);
    try {
      const quota = opts.quota;
      const tighter = quota !== undefined && quota.bytes < this.limits.maxArchiveBytes;
      const got = await receiveArchive(body, part, tighter ? quota.bytes : this.limits.maxArchiveBytes, opts.onProgress).catch((e: unknown) => {
        // Past what the user's plan has left, not past the archive limit: say so.
        throw tighter && e instanceof EphError && e.code === 'ARCHIVE_TOO_LARGE' ? quota.refuse() : e;
      });
      const known = await this.#reuse(got.digest, part);
      if (known) return known;

      const format = sniffFormat(got.head);
      if (format === null) {
        throw new EphError('ARCHIVE_INVALID', got.size === 0 ? 'the upload is empty' : `not a zip, tar or tar.gz archive (it starts with bytes ${got.head.subarray(0, 8).toString('hex')})`);
      }
      await mkdir(stage, 0o755);
      const writer = new TreeWriter(stage, new UnpackBudget(this.limits));
      if (format === 'zip') await unpackZip(part, writer);
      else await unpackTar(part, format === 'tar.gz', writer);
      const app = await detectApp(stage, writer.listing());
      await writer.finish(app.appRoot);

      const meta: ImageMeta = { digest: got.digest, size: got.size, kind: app.kind, entry: app.entry };
      await writeSynced(metaTmp, JSON.stringify(meta));
      const unpacked = app.appRoot === '' ? stage : join(stage, app.appRoot);
      return await this.#locks.run(got.digest, () => this.#commit(meta, part, metaTmp, unpacked));
    } finally {
      // After a commit these are gone or hold only junk beside a wrapped app folder.
      // A failed clean-up must not turn an answered publish into an error; recover() retries it.
      await Promise.all([rm(part, { force: true }), rm(metaTmp, { force: true }), removeTree(stage)].map((p) => p.catch(() => {})));
    }
  }

  /** The image directory of a digest (whether or not it exists). */
  dir(digest: string): string {
    return join(this.root, checkDigest(digest));
  }

  /** The stored archive bytes of a digest. */
  archive(digest: string): string {
    return join(this.root, `${checkDigest(digest)}.archive`);
  }

  has(digest: string): boolean {
    return DIGEST.test(digest) && existsSync(join(this.root, digest));
  }

  /** What a stored image runs (as intake answered it), or null if the digest is not stored. */
  async info(digest: string): Promise<IntakeResult | null> {
    if (!this.has(digest)) return null;
    let meta = await readFile(join(this.root, `${digest}.json`), 'utf8').then(parseMeta, () => null);
    if (meta === null) {
      // The metadata is a cache of what the directory says: rebuild it.
      const dir = this.dir(digest);
      const app = await detectApp(dir, await listTree(dir));
      const size = await stat(this.archive(digest)).then((s) => s.size, () => 0);
      meta = { digest, size, kind: app.kind, entry: app.entry };
    }
    return { digest, size: meta.size, kind: meta.kind, entry: meta.entry, imageDir: this.dir(digest), reused: true };
  }

  /** Removes an image directory, its archive and metadata (call it when no instance uses the digest). */
  async remove(digest: string): Promise<void> {
    checkDigest(digest);
    await this.#locks.run(digest, async () => {
      const target = join(this.root, digest);
      if (existsSync(target)) {
        // Move it out first so that has() turns false at once and a crash
        // mid-delete leaves only scratch that recover() clears.
        await mkdir(this.tmpDir, { recursive: true });
        const trash = join(this.tmpDir, `${TMP_PREFIX}${randomBytes(8).toString('hex')}.rm`);
        await chmod(target, 0o755);
        try {
          await rename(target, trash);
        } catch (e) {
          if (!isErrno(e, 'EXDEV')) throw e;
          await removeTree(target);
        }
        await fsyncDir(this.root);
        await removeTree(trash);
      }
      await rm(join(this.root, `${digest}.archive`), { force: true });
      await rm(join(this.root, `${digest}.json`), { force: true });
      await fsyncDir(this.root).catch(() => {});
    });
  }

  /**
   * Start-up repair, before any intake: removes this store's scratch in
   * tmpDir, archives and metadata whose image directory never appeared, and
   * makes image directories read-only again if a crash came between their
   * rename and chmod.
   */
  async recover(): Promise<void> {
    await mkdir(this.root, { recursive: true });
    await mkdir(this.tmpDir, { recursive: true });
    for (const name of await readdir(this.tmpDir)) {
      if (name.startsWith(TMP_PREFIX)) await removeTree(join(this.tmpDir, name));
    }
    for (const name of await readdir(this.root)) {
      const side = SIDECAR.exec(name);
      if (side && !existsSync(join(this.root, side[1]!))) {
        await rm(join(this.root, name), { force: true });
      } else if (DIGEST.test(name)) {
        const st = await lstat(join(this.root, name));
        if (st.isDirectory() && (st.mode & 0o777) !== 0o555) await chmod(join(this.root, name), 0o555);
      }
    }
    await fsyncDir(this.root);
  }

  /** A stored image answers a re-publish; the upload's bytes restore a lost archive file. */
  async #reuse(digest: string, part: string): Promise<IntakeResult | null> {
    const known = await this.info(digest);
    if (known === null) return null;
    if (!existsSync(this.archive(digest))) {
      await rename(part, this.archive(digest));
      await fsyncDir(this.root);
    }
    return known;
  }

  async #commit(meta: ImageMeta, part: string, metaTmp: string, unpacked: string): Promise<IntakeResult> {
    const known = await this.#reuse(meta.digest, part);
    if (known) return known;
    const target = join(this.root, meta.digest);
    await rename(part, this.archive(meta.digest));
    await rename(metaTmp, join(this.root, `${meta.digest}.json`));
    try {
      await rename(unpacked, target);
    } catch (e) {
      // Another process committed the same digest first: theirs is as good as ours.
      if (isErrno(e, 'EEXIST', 'ENOTEMPTY')) {
        const theirs = await this.info(meta.digest);
        if (theirs) return theirs;
      }
      throw e;
    }
    await chmod(target, 0o555);
    await fsyncDir(target);
    await fsyncDir(this.root);
    return { ...meta, imageDir: target, reused: false };
  }

}

function parseMeta(text: string): ImageMeta | null {
  try {
    const m = JSON.parse(text) as Partial<ImageMeta>;
    if (typeof m.size === 'number' && (m.kind === 'pharo' || m.kind === 'procfile') && typeof m.entry === 'string' && m.entry !== '') {
      return { digest: String(m.digest), size: m.size, kind: m.kind, entry: m.entry };
    }
  } catch {
    // fall through: unreadable metadata is rebuilt from the directory
  }
  return null;
}

function checkDigest(digest: string): string {
  if (!DIGEST.test(digest)) throw new EphError('INVALID_VALUE', `not an image digest (64 lowercase hex characters): '${digest.slice(0, 80)}'`);
  return digest;
}

async function writeSynced(file: string, text: string): Promise<void> {
  const fh = await open(file, 'wx', 0o644);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
}
