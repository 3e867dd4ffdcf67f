// Bounds of the WebDAV share that the real cloud's defaults are too large to
// reach in a test: a site's size cap (COPY and PUT refused with 507, nothing
// written) on a small StaticFiles behind a real HTTP server, and the lock
// table's timeouts on a clock the test moves.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { StaticFiles } from '../../src/appliances/static-files.ts';
import { handleWebDav } from '../../src/appliances/webdav.ts';
import { LockTable, MAX_LOCK_SECONDS, lockSeconds } from '../../src/appliances/webdav-locks.ts';

let dir: string;
let base: string;
const cleanups: (() => Promise<void>)[] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'eph-dav-limits-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const root = join(dir, 'files');
  await mkdir(root);
  // 1 MiB per file, 100 KiB per site.
  const files = new StaticFiles(root, 1024 * 1024, 100 * 1024);
  const server = createServer((req, res) => handleWebDav(files, req, res, '/dav'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/dav`;
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function call(method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<number> {
  const r = await request(`${base}${path}`, { method: method as 'GET', headers, ...(body !== undefined ? { body } : {}) });
  await r.body.dump();
  return r.statusCode;
}

test('a site at its size cap: COPY and PUT answer 507 and write nothing; replacing a file within the cap works', async () => {
  assert.equal(await call('PUT', '/a.bin', Buffer.alloc(60 * 1024)), 201);
  assert.equal(await call('COPY', '/a.bin', undefined, { destination: `${base}/b.bin` }), 507);
  assert.equal(await call('PUT', '/c.bin', Buffer.alloc(50 * 1024)), 507);
  assert.deepEqual((await readdir(join(dir, 'files'))).sort(), ['a.bin']);
  assert.equal(await call('PUT', '/a.bin', Buffer.alloc(90 * 1024)), 204);
  assert.equal(await call('PUT', '/small.txt', 'x'), 201);
});

test('locks expire at their timeout; Timeout headers are bounded', () => {
  let now = 1_000_000;
  const table = new LockTable(() => now);
  const lock = table.add('a.txt', 'exclusive', 0, '', 60);
  assert.ok(lock);
  assert.equal(table.covering('a.txt').length, 1);
  assert.equal(table.conflicts('a.txt', 'shared', 0).length, 1);
  now += 59_000;
  assert.equal(table.secondsLeft(lock), 1);
  table.refresh(lock, 60);
  now += 59_000;
  assert.equal(table.covering('a.txt').length, 1);
  now += 2_000;
  assert.equal(table.covering('a.txt').length, 0);
  assert.equal(table.byToken(lock.token), undefined);
  assert.equal(lockSeconds('Second-99999999999'), MAX_LOCK_SECONDS);
  assert.equal(lockSeconds('Infinite, Second-4100000000'), MAX_LOCK_SECONDS);
  assert.equal(lockSeconds('Second-30'), 30);
});
