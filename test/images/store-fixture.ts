import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { TestContext } from 'node:test';
import { removeTree } from '../../src/images/fs-util.ts';
import { ImageStore, type IntakeLimits } from '../../src/images/image-store.ts';

export const LIMITS: IntakeLimits = { maxArchiveBytes: 8 * 1024 * 1024, maxUnpackedBytes: 4 * 1024 * 1024, maxEntries: 200 };

/** A store in a fresh temporary data dir, removed after the test. */
export async function makeStore(t: TestContext, limits: Partial<IntakeLimits> = {}): Promise<ImageStore> {
  const data = await mkdtemp(join(tmpdir(), 'eph-images-'));
  t.after(() => removeTree(data));
  return new ImageStore({ root: join(data, 'images'), tmpDir: join(data, 'tmp'), limits: { ...LIMITS, ...limits } });
}

/** An upload body delivered in chunks, like a request stream. */
export function body(buf: Buffer, chunk = 64 * 1024): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += chunk) parts.push(buf.subarray(i, i + chunk));
  return Readable.from(parts);
}

/** Names in root and tmpDir (missing directories count as empty). */
export async function leftovers(store: ImageStore): Promise<string[]> {
  const list = async (d: string): Promise<string[]> => (await readdir(d).catch(() => [] as string[])).map((n) => join(d, n));
  return [...(await list(store.root)), ...(await list(store.tmpDir))];
}
