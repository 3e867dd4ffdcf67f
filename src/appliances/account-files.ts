import { constants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { open, rename, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { EphError } from '../core/errors.ts';
import type { RunAs } from './run-as.ts';

/*
 * Files the cloud (often root) reads and writes inside an appliance's
 * directory, which belongs to the database server's account (redis,
 * postgres…). Whoever runs as that account can put a symbolic link, a hard
 * link or a FIFO under any name there. A plain writeFile/chown as root would
 * follow the link and overwrite or give away the file it points to
 * (/etc/shadow, the cloud's database…); a plain read would block on a FIFO or
 * read a root-only file. So: new files are created under a fresh name with
 * O_EXCL|O_NOFOLLOW (which never follow a link), owner and mode are set on
 * the open descriptor, and the file is renamed over the old name (rename
 * replaces a link, it does not write through it); reads open with O_NOFOLLOW
 * and accept only a regular file with a single link.
 */

const { O_WRONLY, O_RDONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK } = constants;

/**
 * Creates `path` anew (it must not exist; a link or file left there is an
 * error) for writing, owned by `owner` (when the cloud switches accounts) with
 * `mode`. The caller writes and closes the handle.
 */
export async function createAccountFile(path: string, owner: RunAs | null, mode: number): Promise<FileHandle> {
  const fh = await open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode);
  try {
    if (owner?.switching) await fh.chown(owner.uid, owner.gid);
    // The umask may have taken bits away from `mode`; set exactly what we mean.
    await fh.chmod(mode);
    return fh;
  } catch (e) {
    await fh.close();
    await rm(path, { force: true });
    throw e;
  }
}

/**
 * Replaces `path` with a regular file holding `data`, owned by `owner` with
 * `mode`, whatever `path` was before (file, symbolic or hard link): written
 * under a fresh name, then renamed over it.
 */
export async function writeAccountFile(path: string, data: string | Buffer, owner: RunAs | null, mode: number): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh = await createAccountFile(tmp, owner, mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
    await fh.close();
    await rename(tmp, path);
  } catch (e) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw e;
  }
}

/**
 * Opens `path` for reading only if it is a regular file with one link;
 * answers null when it is absent, a symbolic link, or anything else.
 */
export async function openAccountFile(path: string): Promise<FileHandle | null> {
  let fh: FileHandle;
  try {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    fh = await open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ELOOP' || code === 'ENXIO') return null;
    throw e;
  }
  const st = await fh.stat();
  if (!st.isFile() || st.nlink !== 1) {
    await fh.close();
    return null;
  }
  return fh;
}

/** The text of `path` when it is a plain file (see {@link openAccountFile}), else null. */
export async function readAccountFile(path: string): Promise<string | null> {
  const fh = await openAccountFile(path);
  if (!fh) return null;
  try {
    return await fh.readFile('utf8');
  } finally {
    await fh.close();
  }
}

/** Like {@link openAccountFile}, but a missing or unsafe file is an error naming it. */
export async function mustOpenAccountFile(path: string, what: string): Promise<FileHandle> {
  const fh = await openAccountFile(path);
  if (!fh) throw new EphError('INTERNAL', `${what}: ${basename(path)} is missing or not a plain file`);
  return fh;
}
