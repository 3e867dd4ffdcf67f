import { chmod, lstat, open, readdir, readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';

/** Flushes a directory's entries (new names, renames) to disk. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Deletes a file or a tree even when its directories are read-only (images
 * are 0555; unlinking inside them needs write permission unless we are root).
 * Missing paths are fine.
 */
export async function removeTree(path: string): Promise<void> {
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (st.isDirectory()) await makeDirsWritable(path);
  await rm(path, { recursive: true, force: true });
}

async function makeDirsWritable(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const ent of await readdir(dir, { withFileTypes: true })) {
    if (ent.isDirectory()) await makeDirsWritable(join(dir, ent.name));
  }
}

/** What a directory tree holds, as paths relative to its top ('/'-separated). */
export interface TreeListing {
  files: string[];
  dirs: string[];
  links: Map<string, string>;
}

/** Lists an unpacked image (used when its metadata has to be rebuilt). */
export async function listTree(top: string): Promise<TreeListing> {
  const out: TreeListing = { files: [], dirs: [], links: new Map() };
  const walk = async (rel: string): Promise<void> => {
    for (const ent of await readdir(rel === '' ? top : join(top, rel), { withFileTypes: true })) {
      const p = rel === '' ? ent.name : `${rel}/${ent.name}`;
      if (ent.isDirectory()) {
        out.dirs.push(p);
        await walk(p);
      } else if (ent.isSymbolicLink()) out.links.set(p, await readlink(join(top, p)));
      else if (ent.isFile()) out.files.push(p);
    }
  };
  await walk('');
  return out;
}
