// The /v1/appliances API on the real cloud (src/server.ts): real users with
// real tokens, checked by the real authentication; alice owns the
// appliances, bob tries every route on them.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import Fastify from 'fastify';
import type { RouteOptions } from 'fastify';
import { request } from 'undici';
import type { ApplianceService } from '../../src/appliances/appliance-service.ts';
import { applianceRoutes } from '../../src/api/v1-appliances.ts';
import { startCloudFixture } from '../cli/cloud.fixtures.ts';
import type { CloudFixture } from '../cli/cloud.fixtures.ts';
import { generatePskKey } from '../../src/tunnel/psk-file.ts';

const cleanups: (() => Promise<void>)[] = [];
let fx: CloudFixture;
let base: string;
let alice: string;
let bob: string;

const basic = (id: string, token: string): string => `Basic ${Buffer.from(`${id}:${token}`).toString('base64')}`;

before(async () => {
  fx = await startCloudFixture((fn) => void cleanups.push(fn));
  base = fx.cloud.apiUrl;
  alice = basic(fx.env.EPH_USER!, fx.env.EPH_TOKEN!);
  const b = await fx.cloud.users.add('bob', 'standard');
  bob = basic(b.user.id, b.token);
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
  const rec = await fx.cloud.appliances.get(fx.user, 'web');
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

/**
 * Every route applianceRoutes registers, read from the registration itself
 * (a scratch Fastify whose onRoute hook records them; no handler runs): a
 * route added later joins the matrix below, or fails it until it does.
 */
async function registeredRoutes(): Promise<{ method: string; url: string }[]> {
  const scratch = Fastify();
  const seen: { method: string; url: string }[] = [];
  scratch.addHook('onRoute', (r: RouteOptions) => {
    for (const method of [r.method].flat()) seen.push({ method, url: r.url });
  });
  applianceRoutes(scratch, {
    appliances: {} as unknown as ApplianceService,
    authenticate: () => Promise.reject(new Error('never called')),
  });
  await scratch.ready();
  await scratch.close();
  const unique = new Map(seen.map((r) => [`${r.method} ${r.url}`, r]));
  return [...unique.values()];
}

test("another user's appliance is 404 on every appliance route, through the real authentication, and nothing of it changes", async () => {
  const routes = await registeredRoutes();
  const byName = routes.filter((r) => r.url.includes(':name'));
  // The two routes without a name are about the caller's own appliances.
  assert.deepEqual(
    routes.filter((r) => !r.url.includes(':name')).map((r) => `${r.method} ${r.url}`).sort(),
    ['GET /v1/appliances', 'HEAD /v1/appliances', 'POST /v1/appliances'],
    'a new route without :name: decide how bob is kept away from alice\'s appliances there, and test it here',
  );
  // The routes of the issue must be among them (a registration that drops one fails here).
  for (const r of [
    'GET /v1/appliances/:name', 'DELETE /v1/appliances/:name', 'POST /v1/appliances/:name/start', 'POST /v1/appliances/:name/stop',
    'GET /v1/appliances/:name/backup', 'POST /v1/appliances/:name/restore', 'GET /v1/appliances/:name/psk', 'PUT /v1/appliances/:name/psk',
    'GET /v1/appliances/:name/stunnel.conf', 'GET /v1/appliances/:name/files', 'GET /v1/appliances/:name/files/*',
    'PUT /v1/appliances/:name/files/*', 'DELETE /v1/appliances/:name/files/*', 'PROPFIND /v1/appliances/:name/dav/*',
  ]) {
    assert.ok(byName.some((x) => `${x.method} ${x.url}` === r), `${r} is registered`);
  }
  const pskBefore = await call('GET', '/v1/appliances/web/psk', { auth: alice });
  const filesBefore = await call('GET', '/v1/appliances/web/files', { auth: alice });
  const backup = await call('GET', '/v1/appliances/web/backup', { auth: alice });
  assert.equal(backup.status, 200);
  // What an attacker would send: a real backup, a psk.txt with their key, a file.
  const bodies: Record<string, Buffer | string> = {
    'POST /v1/appliances/:name/restore': backup.buf,
    'PUT /v1/appliances/:name/psk': `mallory:${generatePskKey()}\n`,
  };
  for (const r of byName) {
    const path = r.url.replace(':name', 'web').replace('*', 'index.html');
    // Bodies only where a route reads one: the JSON routes (start, stop) answer 415 to a stray body before any lookup.
    const body = bodies[`${r.method} ${r.url}`] ?? (r.method === 'PUT' || (r.url.includes('/dav') && ['PROPPATCH', 'LOCK'].includes(r.method)) ? 'x' : undefined);
    const res = await call(r.method, path, { auth: bob, ...(body !== undefined ? { body } : {}), headers: { destination: `${base}/v1/appliances/web/dav/moved.html` } });
    assert.equal(res.status, 404, `${r.method} ${r.url}: ${res.text}`);
    // The appliance lookup said so, not the router: the route exists and refused bob.
    if (r.method !== 'HEAD') assert.equal((res.json().error as { message: string }).message, "appliance 'web' not found", `${r.method} ${r.url}`);
  }
  const list = await call('GET', '/v1/appliances', { auth: bob });
  assert.deepEqual(list.json(), { appliances: [] });
  // The name of a static site is global: bob cannot take it either.
  const take = await call('POST', '/v1/appliances', { auth: bob, type: 'application/json', body: JSON.stringify({ kind: 'static', name: 'web' }) });
  assert.equal(take.status, 409, take.text);
  // Alice's appliance is as it was.
  const show = await call('GET', '/v1/appliances/web', { auth: alice });
  assert.equal(show.status, 200);
  assert.equal(show.json().status, 'running');
  assert.deepEqual((await call('GET', '/v1/appliances/web/psk', { auth: alice })).json(), pskBefore.json());
  assert.deepEqual((await call('GET', '/v1/appliances/web/files', { auth: alice })).json(), filesBefore.json());
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
