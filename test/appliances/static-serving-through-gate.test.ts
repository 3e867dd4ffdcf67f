// What a visitor of a static site gets through the real cloud's gate
// (`<name>.static.<domain>`): files sent by `send` with our ETag, 304 on
// If-None-Match and If-Modified-Since, single ranges (206), unsatisfiable
// ranges (416), If-Range, content types from the mime-types database, names
// with `%` in them, and no way out of the site.
import assert from 'node:assert/strict';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { startCloudFixture } from '../cli/cloud.fixtures.ts';
import type { CloudFixture } from '../cli/cloud.fixtures.ts';

const cleanups: (() => Promise<void>)[] = [];
let fx: CloudFixture;
let auth: string;
let host: string;
const SITE = `serve${process.pid}`;
const OTHER = `other${process.pid}`;
const bytes = Buffer.from([...Array(256).keys()]);

before(async () => {
  fx = await startCloudFixture((fn) => void cleanups.push(fn));
  auth = `Basic ${Buffer.from(`${fx.user.id}:${fx.env.EPH_TOKEN}`).toString('base64')}`;
  for (const name of [SITE, OTHER]) {
    const r = await request(`${fx.cloud.apiUrl}/v1/appliances`, {
      method: 'POST',
      headers: { authorization: auth, 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'static', name }),
    });
    assert.equal(r.statusCode, 201, await r.body.text());
  }
  host = `${SITE}.static.${fx.cloud.config.domain}`;
  const files: [string, string | Buffer][] = [
    ['index.html', '<h1>home</h1>'],
    ['app.js', 'console.log(1)'],
    ['style.css', 'a{}'],
    ['logo.svg', '<svg xmlns="http://www.w3.org/2000/svg"/>'],
    ['pic.png', Buffer.from([0x89, 0x50, 0x4e, 0x47])],
    ['data.json', '{}'],
    ['mod.wasm', Buffer.from([0, 0x61, 0x73, 0x6d])],
    ['Object.st', 'Object subclass: #Foo'],
    ['blob.unknownext', 'x'],
    ['100%.txt', 'percent'],
    ['bytes.bin', bytes],
  ];
  for (const [name, body] of files) {
    const r = await request(`${fx.cloud.apiUrl}/v1/appliances/${SITE}/files/${encodeURIComponent(name)}`, { method: 'PUT', headers: { authorization: auth }, body });
    assert.equal(r.statusCode, 201, `${name}: ${await r.body.text()}`);
  }
  const r = await request(`${fx.cloud.apiUrl}/v1/appliances/${OTHER}/files/secret.txt`, { method: 'PUT', headers: { authorization: auth }, body: 'OTHER-SECRET' });
  assert.equal(r.statusCode, 201);
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** GET through the gate as a visitor, the path sent exactly as written. */
function visit(path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: fx.cloud.gatePort, method, path, headers: { host, ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.setTimeout(30_000, () => req.destroy(new Error('gate request timed out')));
    req.on('error', reject);
    req.end();
  });
}

test('content types come from the mime-types database (with .st as Smalltalk text)', async () => {
  const want: Record<string, string> = {
    '/': 'text/html; charset=utf-8',
    '/app.js': 'text/javascript; charset=utf-8',
    '/style.css': 'text/css; charset=utf-8',
    '/logo.svg': 'image/svg+xml',
    '/pic.png': 'image/png',
    '/data.json': 'application/json; charset=utf-8',
    '/mod.wasm': 'application/wasm',
    '/Object.st': 'text/plain; charset=utf-8',
    '/blob.unknownext': 'application/octet-stream',
  };
  for (const [path, type] of Object.entries(want)) {
    const r = await visit(path);
    assert.equal(r.status, 200, path);
    assert.equal(r.headers['content-type'], type, path);
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
  }
  const pct = await visit('/100%25.txt');
  assert.equal(pct.status, 200);
  assert.equal(pct.body.toString(), 'percent');
});

test('ETag is the one the API lists; If-None-Match and If-Modified-Since answer 304 without a body; HEAD has no body', async () => {
  const list = await request(`${fx.cloud.apiUrl}/v1/appliances/${SITE}/files`, { headers: { authorization: auth } });
  const listed = ((await list.body.json()) as { files: { path: string; etag: string }[] }).files.find((f) => f.path === 'style.css');
  const first = await visit('/style.css');
  assert.equal(first.headers.etag, listed?.etag);
  assert.ok(first.headers['last-modified']);
  const inm = await visit('/style.css', { 'if-none-match': String(first.headers.etag) });
  assert.equal(inm.status, 304);
  assert.equal(inm.body.length, 0);
  const ims = await visit('/style.css', { 'if-modified-since': String(first.headers['last-modified']) });
  assert.equal(ims.status, 304);
  const stale = await visit('/style.css', { 'if-none-match': '"not-it"' });
  assert.equal(stale.status, 200);
  assert.equal(stale.body.toString(), 'a{}');
  const head = await visit('/style.css', {}, 'HEAD');
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], '3');
  assert.equal(head.body.length, 0);
  const ifMatch = await visit('/style.css', { 'if-match': '"not-it"' });
  assert.equal(ifMatch.status, 412);
});

test('ranges: one range is 206 with its bytes, a suffix range the tail, past the end 416, If-Range with another ETag the whole file', async () => {
  const mid = await visit('/bytes.bin', { range: 'bytes=10-19' });
  assert.equal(mid.status, 206);
  assert.equal(mid.headers['content-range'], 'bytes 10-19/256');
  assert.deepEqual([...mid.body], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
  const tail = await visit('/bytes.bin', { range: 'bytes=-2' });
  assert.equal(tail.status, 206);
  assert.deepEqual([...tail.body], [254, 255]);
  const beyond = await visit('/bytes.bin', { range: 'bytes=300-' });
  assert.equal(beyond.status, 416);
  assert.equal(beyond.headers['content-range'], 'bytes */256');
  const etag = String((await visit('/bytes.bin', {}, 'HEAD')).headers.etag);
  const same = await visit('/bytes.bin', { range: 'bytes=0-0', 'if-range': etag });
  assert.equal(same.status, 206);
  assert.deepEqual([...same.body], [0]);
  const other = await visit('/bytes.bin', { range: 'bytes=0-0', 'if-range': '"old"' });
  assert.equal(other.status, 200);
  assert.equal(other.body.length, 256);
});

test('no path out of the site: .., %2e%2e, encoded slashes and links on the disk', async () => {
  for (const path of [`/../${OTHER}/files/secret.txt`, `/%2e%2e/%2e%2e/${OTHER}/files/secret.txt`, `/x/..%2f..%2f${OTHER}%2ffiles%2fsecret.txt`, '/%2e%2e%2f%2e%2e%2fstore.db']) {
    const r = await visit(path);
    assert.ok(r.status === 400 || r.status === 404, `${path}: ${r.status}`);
    assert.ok(!r.body.toString().includes('OTHER-SECRET'), path);
  }
  const siteDir = join(fx.dir, 'data', 'appliances', fx.user.id, SITE, 'files');
  const otherDir = join(fx.dir, 'data', 'appliances', fx.user.id, OTHER, 'files');
  const outside = await mkdtemp(join(tmpdir(), 'eph-serve-outside-'));
  cleanups.push(() => rm(outside, { recursive: true, force: true }));
  await writeFile(join(outside, 'index.html'), 'HOST-FILE');
  await symlink(otherDir, join(siteDir, 'other'));
  await symlink(join(otherDir, 'secret.txt'), join(siteDir, 'secret.txt'));
  await symlink(outside, join(siteDir, 'host'));
  for (const path of ['/other/secret.txt', '/secret.txt', '/host/', '/host/index.html', '/other']) {
    const r = await visit(path);
    assert.equal(r.status, 404, `${path}: ${r.status}`);
    assert.ok(!/OTHER-SECRET|HOST-FILE/.test(r.body.toString()), path);
  }
});
