import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { chmod, lchown, lstat, mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { PassThrough, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { create as tarCreate, extract as tarExtract } from 'tar';
import { EphError } from '../core/errors.ts';
import type { ApplianceRecord } from '../core/types.ts';
import type { ApplianceDriver } from './appliance.ts';
import { StaticFiles, ensureRoot } from './static-files.ts';
import { StaticSite } from './static-site.ts';

export interface StaticDriverOptions {
  /** Largest backup a restore accepts (compressed bytes); default 2 GiB. */
  maxRestoreBytes?: number;
  /** Largest total of file sizes a restore may unpack; default 8 GiB. */
  maxRestoreUnpackedBytes?: number;
}

/**
 * Static files: a directory `DIR/files` uploaded over the API or WebDAV and
 * served read-only by {@link StaticSite}, both at `<name>.static.<domain>`
 * (the gate calls the site) and on 127.0.0.1:`rec.port` (the loopback
 * server the TLS-PSK endpoint leads to). Backups are gzipped tar files.
 */
export class StaticDriver implements ApplianceDriver {
  readonly kind = 'static' as const;
  readonly defaultLocalPort = 8000;
  readonly backupFormat = { contentType: 'application/gzip', extension: 'tar.gz' };
  readonly #servers = new Map<string, Server>();
  readonly #opts: StaticDriverOptions;

  constructor(opts: StaticDriverOptions = {}) {
    this.#opts = opts;
  }

  /** The site serving the appliance in `dir`; `available` says whether it is started. */
  site(dir: string, available: () => boolean): StaticSite {
    return new StaticSite(new StaticFiles(filesDir(dir)), available);
  }

  async create(rec: ApplianceRecord, dir: string): Promise<Record<string, string>> {
    await mkdir(dir, { recursive: true, mode: 0o755 });
    await ensureRoot(filesDir(dir));
    await this.start(rec, dir);
    return {};
  }

  async start(rec: ApplianceRecord, dir: string): Promise<void> {
    if (this.#servers.has(dir)) return;
    const site = this.site(dir, () => true);
    const server = createServer((req, res) => site.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(rec.port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.#servers.set(dir, server);
  }

  async stop(_rec: ApplianceRecord, dir: string): Promise<void> {
    const server = this.#servers.get(dir);
    if (!server) return;
    this.#servers.delete(dir);
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  backup(_rec: ApplianceRecord, dir: string): Readable {
    // tar's streams are minipass streams; hand out a node stream.
    const out = new PassThrough();
    const pack = tarCreate({ cwd: filesDir(dir), gzip: true, portable: true }, ['.']);
    pack.on('error', (e: unknown) => out.destroy(e as Error));
    pack.pipe(out);
    return out;
  }

  /**
   * Replaces the files with a backup. A backup is tenant input like any
   * upload: owners in it are ignored (everything belongs to the account the
   * cloud runs as, which serves the files), modes are cut to 0755/0644 (no
   * setuid, setgid or sticky bit survives: a setuid-root copy of a binary
   * restored by root would hand root to any local account), only plain files
   * and directories are accepted, and the declared sizes may not add up to
   * more than maxRestoreUnpackedBytes (checked before a byte is written).
   */
  async restore(_rec: ApplianceRecord, dir: string, input: Readable): Promise<void> {
    const incoming = join(dir, `files.restore-${randomBytes(4).toString('hex')}`);
    await mkdir(incoming, { mode: 0o755 });
    const unpackLimit = this.#opts.maxRestoreUnpackedBytes ?? 8 * 1024 ** 3;
    try {
      let bad: string | null = null;
      let tooBig: string | null = null;
      let declared = 0;
      await pipeline(
        input,
        byteCap(this.#opts.maxRestoreBytes ?? 2 * 1024 ** 3),
        tarExtract({
          cwd: incoming,
          strict: true,
          preserveOwner: false,
          // Plain files and directories only: a link could point outside the site.
          filter: (path, entry) => {
            const type = 'type' in entry ? entry.type : entry.isDirectory() ? 'Directory' : 'File';
            const ok = type === 'File' || type === 'OldFile' || type === 'Directory';
            if (!ok) bad ??= path;
            if (!ok || bad !== null || tooBig !== null || !('type' in entry)) return false;
            declared += entry.size ?? 0;
            if (declared > unpackLimit) {
              tooBig ??= path;
              return false;
            }
            // Never a mode bit beyond rwxr-xr-x: see the method's comment.
            entry.mode = safeMode(type === 'Directory', entry.mode ?? 0);
            return true;
          },
        }),
      ).catch((e: unknown) => {
        // What the filter saw says more than the error it led to (the rest of a refused file is skipped).
        if (tooBig === null && bad === null) {
          if (e instanceof EphError) throw e;
          const msg = (e as Error).message;
          // node-tar's own guard against gzip bombs.
          if (/decompression ratio/.test(msg)) throw new EphError('ARCHIVE_TOO_LARGE', `restore: the backup is a decompression bomb (${msg})`);
          throw new EphError('ARCHIVE_INVALID', `restore: expected a .tar.gz made by backup (${msg})`);
        }
      });
      if (tooBig !== null) {
        throw new EphError('ARCHIVE_TOO_LARGE', `restore: the backup unpacks to more than the limit of ${unpackLimit} bytes (passed at '${tooBig}')`);
      }
      if (bad !== null) throw new EphError('ARCHIVE_UNSAFE', `restore: '${bad}' is not a plain file or directory`);
      // The same rules once more on what really landed, whatever the tar library did.
      await settleTree(incoming);
      const old = join(dir, `files.old-${randomBytes(4).toString('hex')}`);
      await rename(filesDir(dir), old);
      await rename(incoming, filesDir(dir));
      await rm(old, { recursive: true, force: true });
    } finally {
      await rm(incoming, { recursive: true, force: true });
    }
  }

  url(_rec: ApplianceRecord, localPort: number): string {
    return `http://127.0.0.1:${localPort}/`;
  }
}

function filesDir(dir: string): string {
  return join(dir, 'files');
}

/** 0755 for directories and executable files, 0644 for other files: never setuid, setgid, sticky or group/world-writable. */
export function safeMode(isDir: boolean, mode: number): number {
  return isDir || (mode & 0o111) !== 0 ? 0o755 : 0o644;
}

/**
 * Walks a restored tree without following links: every file and directory
 * gets {@link safeMode} and, when the cloud runs as root, the cloud's own
 * owner; anything else (it cannot be there, but) is refused.
 */
async function settleTree(top: string): Promise<void> {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const walk = async (d: string): Promise<void> => {
    for (const ent of await readdir(d, { withFileTypes: true })) {
      const p = join(d, ent.name);
      const st = await lstat(p);
      if (!st.isFile() && !st.isDirectory()) throw new EphError('ARCHIVE_UNSAFE', `restore: '${ent.name}' is not a plain file or directory`);
      if (st.uid !== uid || st.gid !== gid) await lchown(p, uid, gid);
      const want = safeMode(st.isDirectory(), st.mode);
      if ((st.mode & 0o7777) !== want) await chmod(p, want);
      if (st.isDirectory()) await walk(p);
    }
  };
  await walk(top);
}

function byteCap(limit: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done): void {
      seen += chunk.length;
      if (seen > limit) done(new EphError('ARCHIVE_TOO_LARGE', `restore: the backup is over ${limit} bytes`));
      else done(null, chunk);
    },
  });
}
