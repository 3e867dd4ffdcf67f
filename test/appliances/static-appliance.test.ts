import assert from 'node:assert/strict';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import type { ApplianceRecord } from '../../src/core/types.ts';
import { handleWebDav } from '../../src/appliances/webdav.ts';
import { staticSiteName } from '../../src/appliances/appliance-service.ts';
import type { Cloud } from './fixtures.ts';
import { listeningAddresses, startCloud, tunnelTo } from './fixtures.ts';

const cleanups: (() => unknown)[] = [];
const shared = { after: (fn: () => unknown): void => void cleanups.push(fn) };
let cloud: Cloud;
let rec: ApplianceRecord;
/** A real HTTP server in front of the site (as the gate serves it) and the WebDAV share. */
let base: string;
const DAV = '/dav/site';

before(async () => {
  cloud = await startCloud(shared);
  rec = await cloud.appliances.create(cloud.user, 'static', 'site');
  const server = createServer(async (req, res) => {
    if (req.url?.startsWith(DAV)) {
      handleWebDav(await cloud.appliances.staticFiles(cloud.user, 'site'), req, res, DAV);
      return;
    }
    const site = await cloud.appliances.staticSiteByName('site');
    if (!site) res.writeHead(404).end();
    else site.handle(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  shared.after(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const files = await cloud.appliances.staticFiles(cloud.user, 'site');
  await files.put('index.html', Readable.from(['<h1>hello</h1>\n']), true);
  await files.put('css/site.css', Readable.from(['body { color: red }\n']), true);
  await files.put('data/numbers.bin', Readable.from([Buffer.from([...Array(100).keys()])]), true);
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

test('upload then list: every file with size, content type and ETag', async () => {
  const list = await (await cloud.appliances.staticFiles(cloud.user, 'site')).list();
  assert.deepEqual(
    list.map((f) => [f.path, f.size, f.contentType]),
    [
      ['css/site.css', 20, 'text/css; charset=utf-8'],
      ['data/numbers.bin', 100, 'application/octet-stream'],
      ['index.html', 15, 'text/html; charset=utf-8'],
    ],
  );
  for (const f of list) assert.match(f.etag, /^"[0-9a-f]+-[0-9a-f]+"$/);
});

test('GET serves files with their content type; / serves index.html; unknown is 404', async () => {
  const css = await request(`${base}/css/site.css`);
  assert.equal(css.statusCode, 200);
  assert.equal(css.headers['content-type'], 'text/css; charset=utf-8');
  assert.equal(await css.body.text(), 'body { color: red }\n');
  const index = await request(`${base}/`);
  assert.equal(index.headers['content-type'], 'text/html; charset=utf-8');
  assert.equal(await index.body.text(), '<h1>hello</h1>\n');
  const missing = await request(`${base}/nope.txt`);
  assert.equal(missing.statusCode, 404);
  await missing.body.dump();
  const dir = await request(`${base}/css`);
  assert.equal(dir.statusCode, 301);
  assert.equal(dir.headers.location, '/css/');
  await dir.body.dump();
});

test('If-None-Match with the ETag answers 304 without a body; a changed file has a new ETag', async () => {
  const first = await request(`${base}/css/site.css`);
  const etag = String(first.headers.etag);
  await first.body.dump();
  const again = await request(`${base}/css/site.css`, { headers: { 'if-none-match': etag } });
  assert.equal(again.statusCode, 304);
  assert.equal(await again.body.text(), '');
  const files = await cloud.appliances.staticFiles(cloud.user, 'site');
  await files.put('css/site.css', Readable.from(['body { color: blue }\n']), true);
  const changed = await request(`${base}/css/site.css`, { headers: { 'if-none-match': etag } });
  assert.equal(changed.statusCode, 200);
  assert.notEqual(changed.headers.etag, etag);
  assert.equal(await changed.body.text(), 'body { color: blue }\n');
});

test('Range requests answer 206 with the bytes asked; past the end is 416', async () => {
  const mid = await request(`${base}/data/numbers.bin`, { headers: { range: 'bytes=10-19' } });
  assert.equal(mid.statusCode, 206);
  assert.equal(mid.headers['content-range'], 'bytes 10-19/100');
  assert.deepEqual([...Buffer.from(await mid.body.arrayBuffer())], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
  const tail = await request(`${base}/data/numbers.bin`, { headers: { range: 'bytes=-3' } });
  assert.equal(tail.statusCode, 206);
  assert.deepEqual([...Buffer.from(await tail.body.arrayBuffer())], [97, 98, 99]);
  const beyond = await request(`${base}/data/numbers.bin`, { headers: { range: 'bytes=200-' } });
  assert.equal(beyond.statusCode, 416);
  assert.equal(beyond.headers['content-range'], 'bytes */100');
  await beyond.body.dump();
  const stale = await request(`${base}/data/numbers.bin`, { headers: { range: 'bytes=0-1', 'if-range': '"stale"' } });
  assert.equal(stale.statusCode, 200);
  assert.equal((await stale.body.arrayBuffer()).byteLength, 100);
});

test('paths that climb out of the site are refused', async () => {
  // node:http sends the path as written (a WHATWG URL would resolve the dots away).
  for (const path of ['/../../store.db', '/%2e%2e/%2e%2e/store.db', '/css/..%2f..%2f..%2fstore.db']) {
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: new URL(base).port, path }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 400, path);
  }
  const files = await cloud.appliances.staticFiles(cloud.user, 'site');
  await assert.rejects(files.put('../escape.txt', Readable.from(['x']), true), { code: 'INVALID_VALUE' });
});

test('WebDAV: MKCOL, PUT, PROPFIND depth 1, MOVE, DELETE', async () => {
  const mk = await request(`${base}${DAV}/docs`, { method: 'MKCOL' });
  assert.equal(mk.statusCode, 201);
  await mk.body.dump();
  const put = await request(`${base}${DAV}/docs/readme.txt`, { method: 'PUT', body: 'read me\n' });
  assert.equal(put.statusCode, 201);
  await put.body.dump();
  const orphan = await request(`${base}${DAV}/nowhere/file.txt`, { method: 'PUT', body: 'x' });
  assert.equal(orphan.statusCode, 409);
  await orphan.body.dump();
  const find = await request(`${base}${DAV}/docs/`, { method: 'PROPFIND', headers: { depth: '1' } });
  assert.equal(find.statusCode, 207);
  assert.match(String(find.headers['content-type']), /^application\/xml/);
  const xml = await find.body.text();
  assert.match(xml, /<D:href>\/dav\/site\/docs\/<\/D:href>.*<D:collection\/>/s);
  assert.match(xml, /<D:href>\/dav\/site\/docs\/readme\.txt<\/D:href>.*<D:getcontentlength>8<\/D:getcontentlength>.*<D:getcontenttype>text\/plain; charset=utf-8<\/D:getcontenttype>/s);
  const move = await request(`${base}${DAV}/docs/readme.txt`, { method: 'MOVE', headers: { destination: `${base}${DAV}/docs/README.txt` } });
  assert.equal(move.statusCode, 201);
  await move.body.dump();
  const served = await request(`${base}/docs/README.txt`);
  assert.equal(await served.body.text(), 'read me\n');
  const del = await request(`${base}${DAV}/docs`, { method: 'DELETE' });
  assert.equal(del.statusCode, 204);
  await del.body.dump();
  const gone = await request(`${base}${DAV}/docs/README.txt`, { method: 'PROPFIND', headers: { depth: '0' } });
  assert.equal(gone.statusCode, 404);
  await gone.body.dump();
});

test('the site is reachable through its TLS-PSK tunnel; the loopback server binds 127.0.0.1 only', async () => {
  assert.deepEqual(listeningAddresses(rec.port), ['127.0.0.1']);
  const tunnel = await tunnelTo(shared, rec);
  const res = await request(`http://127.0.0.1:${tunnel.address.port}/index.html`);
  assert.equal(res.statusCode, 200);
  assert.equal(await res.body.text(), '<h1>hello</h1>\n');
});

test('a stopped site answers 503; started again it serves', async () => {
  await cloud.appliances.stop(cloud.user, 'site');
  const res = await request(`${base}/index.html`);
  assert.equal(res.statusCode, 503);
  await res.body.dump();
  await cloud.appliances.start(cloud.user, 'site');
  const ok = await request(`${base}/index.html`);
  assert.equal(ok.statusCode, 200);
  await ok.body.dump();
});

test('backup is a .tar.gz of the files; restore puts them back exactly', async () => {
  const { stream, filename } = await cloud.appliances.backup(cloud.user, 'site');
  assert.equal(filename, 'site.tar.gz');
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  const tgz = Buffer.concat(chunks);
  assert.deepEqual([...tgz.subarray(0, 2)], [0x1f, 0x8b]);
  const files = await cloud.appliances.staticFiles(cloud.user, 'site');
  const before = await files.list();
  await files.delete('index.html');
  await files.put('extra.txt', Readable.from(['x']), true);
  await cloud.appliances.restore(cloud.user, 'site', Readable.from([tgz]));
  const restored = await files.list();
  assert.deepEqual(restored.map((f) => [f.path, f.size]), before.map((f) => [f.path, f.size]));
  await assert.rejects(cloud.appliances.restore(cloud.user, 'site', Readable.from([Buffer.from('garbage')])), { code: 'ARCHIVE_INVALID' });
  assert.deepEqual((await files.list()).map((f) => f.path), before.map((f) => f.path));
});

test('static site names are global: another user cannot take one', async () => {
  await assert.rejects(cloud.appliances.create(cloud.other, 'static', 'site'), { code: 'CONFLICT' });
  await assert.rejects(cloud.appliances.create(cloud.user, 'static', 'site'), { code: 'CONFLICT' });
  assert.equal(await cloud.appliances.staticSiteByName('unknown'), null);
});

test('the gate finds the site from a <name>.static.<domain> host', () => {
  assert.equal(staticSiteName('site.static.eph.localhost', 'eph.localhost'), 'site');
  assert.equal(staticSiteName('Site.Static.EPH.localhost:8080', 'eph.localhost'), 'site');
  assert.equal(staticSiteName('eph-0123abcd.eph.localhost', 'eph.localhost'), null);
  assert.equal(staticSiteName('a.b.static.eph.localhost', 'eph.localhost'), null);
  assert.equal(staticSiteName('site.static.other.org', 'eph.localhost'), null);
});
