import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import Fastify from 'fastify';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { request } from 'undici';
import { EphError } from '../../src/core/errors.ts';
import type { User } from '../../src/core/types.ts';
import { errorHandler } from '../../src/api/errors.ts';
import { applianceRoutes } from '../../src/api/v1-appliances.ts';
import { startCloud } from '../appliances/fixtures.ts';
import type { Cloud } from '../appliances/fixtures.ts';
import { generatePskKey } from '../../src/tunnel/psk-file.ts';

const cleanups: (() => unknown)[] = [];
const shared = { after: (fn: () => unknown): void => void cleanups.push(fn) };
let cloud: Cloud;
let app: FastifyInstance;
let base: string;
const TOKEN = 'test-token';
let alice: string;
let bob: string;

/** HTTP Basic userID:token, checked against the store's users (every test user has the same token). */
async function authenticate(req: FastifyRequest): Promise<User> {
  const h = req.headers.authorization ?? '';
  const [id, token] = Buffer.from(h.replace(/^Basic /i, ''), 'base64').toString().split(':');
  const user = id ? await cloud.store.getUser(id) : null;
  if (!user || token !== TOKEN) throw new EphError('UNAUTHORIZED', 'unknown user or wrong token');
  return user;
}

const basic = (id: string): string => `Basic ${Buffer.from(`${id}:${TOKEN}`).toString('base64')}`;

before(async () => {
  cloud = await startCloud(shared);
  alice = basic(cloud.user.id);
  bob = basic(cloud.other.id);
  app = Fastify();
  app.setErrorHandler(errorHandler);
  applianceRoutes(app, { appliances: cloud.appliances, authenticate });
  await app.listen({ port: 0, host: '127.0.0.1' });
  base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
  shared.after(() => app.close());
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function call(method: string, path: string, opts: { auth?: string; body?: string | Buffer; type?: string; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.auth !== undefined) headers.authorization = opts.auth;
  if (opts.type) headers['content-type'] = opts.type;
  const res = await request(`${base}${path}`, { method: method as 'GET', headers, ...(opts.body !== undefined ? { body: opts.body } : {}) });
  const buf = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, text: buf.toString(), buf, json: (): Record<string, unknown> => JSON.parse(buf.toString()) as Record<string, unknown> };
}

test('without credentials: 401 in the error format', async () => {
  const r = await call('GET', '/v1/appliances');
  assert.equal(r.status, 401);
  assert.deepEqual(Object.keys(r.json()), ['error']);
});

test('create answers 201 with the view and the psk.txt once; list and show never carry keys', async () => {
  const r = await call('POST', '/v1/appliances', { auth: alice, type: 'application/json', body: JSON.stringify({ kind: 'static', name: 'web' }) });
  assert.equal(r.status, 201, r.text);
  const created = r.json();
  assert.equal(created.kind, 'static');
  assert.equal(created.status, 'running');
  assert.match(String(created.public), /^127\.0\.0\.1:\d+$/);
  assert.equal(created.url, 'http://127.0.0.1:8000/');
  assert.match(String(created.psk), /^web-client:[0-9a-f]{64}\n$/);
  const key = String(created.psk).split(':')[1]!.trim();
  const list = await call('GET', '/v1/appliances', { auth: alice });
  assert.deepEqual((list.json().appliances as { name: string }[]).map((a) => a.name), ['web']);
  assert.ok(!list.text.includes(key));
  const show = await call('GET', '/v1/appliances/web', { auth: alice });
  assert.equal(show.json().name, 'web');
  const psk = await call('GET', '/v1/appliances/web/psk', { auth: alice });
  assert.deepEqual(psk.json(), { identities: ['web-client'] });
  const dup = await call('POST', '/v1/appliances', { auth: alice, type: 'application/json', body: JSON.stringify({ kind: 'static', name: 'web' }) });
  assert.equal(dup.status, 409);
  const bad = await call('POST', '/v1/appliances', { auth: alice, type: 'application/json', body: JSON.stringify({ kind: 'static', name: 'Web!' }) });
  assert.equal(bad.status, 400);
  assert.equal((bad.json().error as { code: string }).code, 'INVALID_VALUE');
});

test('files: PUT (any content type), list, GET with type/ETag/304/Range, DELETE', async () => {
  const put = await call('PUT', '/v1/appliances/web/files/index.html', { auth: alice, type: 'text/html', body: '<p>hi</p>' });
  assert.equal(put.status, 201, put.text);
  const put2 = await call('PUT', '/v1/appliances/web/files/deep/dir/data.json', { auth: alice, body: '{"a":1}' });
  assert.equal(put2.status, 201, put2.text);
  const again = await call('PUT', '/v1/appliances/web/files/index.html', { auth: alice, type: 'application/octet-stream', body: '<p>hello</p>' });
  assert.equal(again.status, 200);
  const list = await call('GET', '/v1/appliances/web/files', { auth: alice });
  assert.deepEqual((list.json().files as { path: string; size: number }[]).map((f) => [f.path, f.size]), [['deep/dir/data.json', 7], ['index.html', 12]]);
  const get = await call('GET', '/v1/appliances/web/files/deep/dir/data.json', { auth: alice });
  assert.equal(get.status, 200);
  assert.equal(get.headers['content-type'], 'application/json; charset=utf-8');
  assert.equal(get.text, '{"a":1}');
  const cached = await call('GET', '/v1/appliances/web/files/deep/dir/data.json', { auth: alice, headers: { 'if-none-match': String(get.headers.etag) } });
  assert.equal(cached.status, 304);
  const part = await call('GET', '/v1/appliances/web/files/index.html', { auth: alice, headers: { range: 'bytes=3-7' } });
  assert.equal(part.status, 206);
  assert.equal(part.text, 'hello');
  const del = await call('DELETE', '/v1/appliances/web/files/deep', { auth: alice });
  assert.equal(del.status, 204);
  const gone = await call('GET', '/v1/appliances/web/files/deep/dir/data.json', { auth: alice });
  assert.equal(gone.status, 404);
});

test('the stunnel tab: PUT psk.txt (malformed → 400 with the line), GET stunnel.conf as text', async () => {
  const badPsk = await call('PUT', '/v1/appliances/web/psk', { auth: alice, type: 'text/plain', body: `ok:${generatePskKey()}\nbroken\n` });
  assert.equal(badPsk.status, 400);
  assert.match((badPsk.json().error as { message: string }).message, /^psk\.txt line 2: /);
  const key = generatePskKey();
  const psk = await call('PUT', '/v1/appliances/web/psk', { auth: alice, type: 'text/plain', body: `laptop:${key}\n` });
  assert.equal(psk.status, 200, psk.text);
  assert.deepEqual(psk.json(), { identities: ['laptop'] });
  const ids = await call('GET', '/v1/appliances/web/psk', { auth: alice });
  assert.ok(!ids.text.includes(key));
  const rec = await cloud.appliances.get(cloud.user, 'web');
  const conf = await call('GET', '/v1/appliances/web/stunnel.conf', { auth: alice });
  assert.equal(conf.status, 200);
  assert.match(String(conf.headers['content-type']), /^text\/plain/);
  assert.equal(conf.text, `[web]\nclient = yes\naccept = 127.0.0.1:8000\nconnect = 127.0.0.1:${rec.publicPort}\nPSKsecrets = psk.txt\n`);
});

test('WebDAV share under /v1/appliances/NAME/dav with the API credentials', async () => {
  const anon = await call('PROPFIND', '/v1/appliances/web/dav/', { headers: { depth: '1' } });
  assert.equal(anon.status, 401);
  const mk = await call('MKCOL', '/v1/appliances/web/dav/img', { auth: alice });
  assert.equal(mk.status, 201, mk.text);
  const put = await call('PUT', '/v1/appliances/web/dav/img/dot.svg', { auth: alice, type: 'image/svg+xml', body: '<svg/>' });
  assert.equal(put.status, 201, put.text);
  const find = await call('PROPFIND', '/v1/appliances/web/dav/', { auth: alice, headers: { depth: '1' }, type: 'application/xml', body: '<?xml version="1.0"?><propfind xmlns="DAV:"><allprop/></propfind>' });
  assert.equal(find.status, 207, find.text);
  assert.match(find.text, /<D:href>\/v1\/appliances\/web\/dav\/img\/<\/D:href>/);
  assert.match(find.text, /<D:href>\/v1\/appliances\/web\/dav\/index\.html<\/D:href>/);
  const get = await call('GET', '/v1/appliances/web/files/img/dot.svg', { auth: alice });
  assert.equal(get.headers['content-type'], 'image/svg+xml');
  assert.equal(get.text, '<svg/>');
});

test('backup streams a .tar.gz; restore takes the raw body back', async () => {
  const backup = await call('GET', '/v1/appliances/web/backup', { auth: alice });
  assert.equal(backup.status, 200);
  assert.equal(backup.headers['content-type'], 'application/gzip');
  assert.equal(backup.headers['content-disposition'], 'attachment; filename="web.tar.gz"');
  assert.deepEqual([...backup.buf.subarray(0, 2)], [0x1f, 0x8b]);
  await call('DELETE', '/v1/appliances/web/files/index.html', { auth: alice });
  const restore = await call('POST', '/v1/appliances/web/restore', { auth: alice, type: 'application/gzip', body: backup.buf });
  assert.equal(restore.status, 200, restore.text);
  const get = await call('GET', '/v1/appliances/web/files/index.html', { auth: alice });
  assert.equal(get.text, '<p>hello</p>');
  const garbage = await call('POST', '/v1/appliances/web/restore', { auth: alice, body: Buffer.from('nope') });
  assert.equal(garbage.status, 400);
});

test("another user's appliance is 404 everywhere", async () => {
  for (const [method, path] of [
    ['GET', '/v1/appliances/web'],
    ['GET', '/v1/appliances/web/files'],
    ['GET', '/v1/appliances/web/files/index.html'],
    ['PUT', '/v1/appliances/web/files/x.txt'],
    ['GET', '/v1/appliances/web/backup'],
    ['GET', '/v1/appliances/web/stunnel.conf'],
    ['PROPFIND', '/v1/appliances/web/dav/'],
    ['POST', '/v1/appliances/web/stop'],
    ['DELETE', '/v1/appliances/web'],
  ] as const) {
    const r = await call(method, path, { auth: bob, ...(method === 'PUT' ? { body: 'x' } : {}) });
    assert.equal(r.status, 404, `${method} ${path}: ${r.text}`);
  }
  const list = await call('GET', '/v1/appliances', { auth: bob });
  assert.deepEqual(list.json(), { appliances: [] });
});

test('stop, start, delete', async () => {
  const stop = await call('POST', '/v1/appliances/web/stop', { auth: alice });
  assert.equal(stop.json().status, 'stopped');
  const start = await call('POST', '/v1/appliances/web/start', { auth: alice });
  assert.equal(start.json().status, 'running');
  const del = await call('DELETE', '/v1/appliances/web', { auth: alice });
  assert.equal(del.status, 204);
  const gone = await call('GET', '/v1/appliances/web', { auth: alice });
  assert.equal(gone.status, 404);
});
