/**
 * Builds application archives from a folder, for tests across the project
 * and by hand: `node --import tsx examples/make-archives.ts examples/node-app out.zip`.
 */
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { create as createTar } from 'tar';
import yazl from 'yazl';

/** Fixed timestamps make the same folder give the same bytes, hence the same digest. */
const MTIME = new Date('2020-01-01T00:00:00Z');

/** Files of `dir` (recursively, sorted, '/'-separated), with their mode. */
async function walk(dir: string, rel = ''): Promise<{ path: string; mode: number; kind: 'file' | 'dir' | 'link' }[]> {
  const out: { path: string; mode: number; kind: 'file' | 'dir' | 'link' }[] = [];
  const names = (await readdir(rel === '' ? dir : join(dir, rel))).sort();
  for (const name of names) {
    const path = rel === '' ? name : `${rel}/${name}`;
    const st = await lstat(join(dir, path));
    if (st.isDirectory()) {
      out.push({ path, mode: st.mode & 0o7777, kind: 'dir' });
      out.push(...(await walk(dir, path)));
    } else if (st.isSymbolicLink()) out.push({ path, mode: 0o777, kind: 'link' });
    else if (st.isFile()) out.push({ path, mode: st.mode & 0o7777, kind: 'file' });
  }
  return out;
}

/** A zip of the contents of `dir` (paths relative to it), keeping modes and symbolic links. */
export async function buildZip(dir: string): Promise<Buffer> {
  const zip = new yazl.ZipFile();
  for (const e of await walk(dir)) {
    if (e.kind === 'dir') zip.addEmptyDirectory(e.path, { mode: 0o40000 | e.mode, mtime: MTIME });
    else if (e.kind === 'link') zip.addBuffer(Buffer.from(await readlink(join(dir, e.path))), e.path, { mode: 0o120000 | e.mode, compress: false, mtime: MTIME });
    else zip.addBuffer(await readFile(join(dir, e.path)), e.path, { mode: 0o100000 | e.mode, mtime: MTIME });
  }
  zip.end();
  return collect(zip.outputStream);
}

/** A gzip-compressed tar of the contents of `dir` (paths relative to it). */
export async function buildTarGz(dir: string): Promise<Buffer> {
  return buildTar(dir, true);
}

/** A tar (gzip-compressed if asked) of the contents of `dir`. */
export async function buildTar(dir: string, gzip = false): Promise<Buffer> {
  const paths = (await walk(dir)).filter((e) => !e.path.includes('/')).map((e) => e.path);
  return collect(createTar({ cwd: dir, gzip, portable: true, mtime: MTIME }, paths) as unknown as NodeJS.ReadableStream);
}

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer | string>) chunks.push(typeof c === 'string' ? Buffer.from(c) : c);
  return Buffer.concat(chunks);
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (invokedDirectly) {
  const [dir, out] = process.argv.slice(2);
  if (!dir || !out) {
    console.error('usage: make-archives.ts DIR OUT.(zip|tar|tar.gz)');
    process.exit(2);
  }
  const { writeFile } = await import('node:fs/promises');
  const bytes = out.endsWith('.zip') ? await buildZip(dir) : await buildTar(dir, /\.(tgz|gz)$/.test(out));
  await writeFile(out, bytes);
  console.log(`${out}: ${bytes.length} bytes`);
}
