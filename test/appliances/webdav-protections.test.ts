// The tenant rules of a static site's WebDAV share, on the real cloud and
// through the URL and credentials a client uses (/v1/appliances/NAME/dav/,
// HTTP Basic id:token): no path out of the site (.., %2e%2e, links on the
// disk, Destination headers to another site or host), locks that hold
// against writers without the token, malformed XML refused with 400, and
// properties and locks bounded in number and size.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { MAX_LOCKS_PER_SITE } from '../../src/appliances/webdav-locks.ts';
import { MAX_DEAD_PROP_BYTES, MAX_DEAD_PROPS_PER_RESOURCE } from '../../src/appliances/webdav-props.ts';
import { startCloudFixture } from '../cli/cloud.fixtures.ts';
import type { CloudFixture } from '../cli/cloud.fixtures.ts';

const cleanups: (() => Promise<void>)[] = [];
let fx: CloudFixture;
let auth: string;
const A = `siteа${process.pid}`.replace('а', 'a');
const B = `siteb${process.pid}`;
let aFiles: string;
let bFiles: string;
let outside: string;
const NS = 'http://example.com/ns/';

const dav = (site: string, path = ''): string => `${fx.cloud.apiUrl}/v1/appliances/${site}/dav/${path}`;

before(async () => {
  fx = await startCloudFixture((fn) => void cleanups.push(fn));
  auth = `Basic ${Buffer.from(`${fx.user.id}:${fx.env.EPH_TOKEN}`).toString('base64')}`;
  for (const name of [A, B]) {
    const r = await call('POST', `${fx.cloud.apiUrl}/v1/appliances`, JSON.stringify({ kind: 'static', name }), { 'content-type': 'application/json' });
    assert.equal(r.status, 201, r.text);
  }
  aFiles = join(fx.dir, 'data', 'appliances', fx.user.id, A, 'files');
  bFiles = join(fx.dir, 'data', 'appliances', fx.user.id, B, 'files');
  assert.ok(existsSync(aFiles) && existsSync(bFiles), 'the sites keep their files where the test expects them');
  assert.equal((await call('PUT', dav(B, 'secret.txt'), 'B-SECRET')).status, 201);
  assert.equal((await call('PUT', dav(A, 'index.html'), '<h1>A</h1>')).status, 201);
  outside = await mkdtemp(join(tmpdir(), 'eph-dav-outside-'));
  await writeFile(join(outside, 'host.txt'), 'HOST-FILE');
  cleanups.push(() => rm(outside, { recursive: true, force: true }));
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function call(method: string, url: string, body?: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string; headers: Record<string, unknown> }> {
  const res = await request(url, { method: method as 'GET', headers: { authorization: auth, ...headers }, ...(body !== undefined ? { body } : {}) });
  return { status: res.statusCode, text: await res.body.text(), headers: res.headers };
}

/** A request whose target is sent exactly as written (no URL normalisation on the way). */
function raw(method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: fx.cloud.apiPort, method, path, headers: { authorization: auth, ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const lockBody = (scope: 'exclusive' | 'shared', owner = 'test'): string =>
  `<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:${scope}/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>${owner}</D:owner></D:lockinfo>`;

async function lock(url: string, scope: 'exclusive' | 'shared', depth = 'infinity'): Promise<{ status: number; token: string; text: string }> {
  const r = await call('LOCK', url, lockBody(scope), { depth, timeout: 'Second-600', 'content-type': 'application/xml' });
  return { status: r.status, token: String(r.headers['lock-token'] ?? '').replace(/^<|>$/g, ''), text: r.text };
}

const propPatch = (props: string): string => `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="${NS}"><D:set><D:prop>${props}</D:prop></D:set></D:propertyupdate>`;

test('OPTIONS advertises class 1 and 2 and the methods', async () => {
  const r = await call('OPTIONS', dav(A));
  assert.equal(r.status, 200);
  assert.equal(r.headers.dav, '1, 2');
  for (const m of ['PROPPATCH', 'COPY', 'MOVE', 'LOCK', 'UNLOCK']) assert.match(String(r.headers.allow), new RegExp(`\\b${m}\\b`));
});

test('request paths that climb out of the site (.., %2e%2e, ..%2f) are 400 and reach nothing', async () => {
  const base = `/v1/appliances/${A}/dav`;
  for (const path of [`${base}/../../${B}/files/secret.txt`, `${base}/%2e%2e/%2e%2e/${B}/files/secret.txt`, `${base}/x/..%2f..%2f..%2f${B}%2ffiles%2fsecret.txt`]) {
    for (const method of ['GET', 'PROPFIND', 'DELETE', 'PUT']) {
      const r = await raw(method, path, {}, method === 'PUT' ? 'overwritten' : undefined);
      assert.ok(r.status === 400 || r.status === 404, `${method} ${path}: ${r.status}`);
      assert.ok(!r.text.includes('B-SECRET'), `${method} ${path} leaked B's file`);
    }
  }
  assert.equal((await call('GET', dav(B, 'secret.txt'))).text, 'B-SECRET');
});

test('Destination headers: another site of the same owner is 403, another host 502, a climbing path 400/403; nothing moves', async () => {
  assert.equal((await call('PUT', dav(A, 'move-me.txt'), 'stay')).status, 201);
  const cases: [string, number[]][] = [
    [dav(B, 'stolen.txt'), [403]],
    [`/v1/appliances/${B}/dav/stolen.txt`, [403]],
    [`http://elsewhere.example/v1/appliances/${A}/dav/moved.txt`, [502]],
    [`${dav(A)}../../${B}/dav/stolen.txt`, [403]],
    [`${dav(A)}%2e%2e/%2e%2e/${B}/dav/stolen.txt`, [403]],
    [`${dav(A)}x/..%2f..%2f..%2f${B}%2ffiles%2fstolen.txt`, [400]],
  ];
  for (const method of ['MOVE', 'COPY']) {
    for (const [destination, statuses] of cases) {
      const r = await call(method, dav(A, 'move-me.txt'), undefined, { destination });
      assert.ok(statuses.includes(r.status), `${method} to ${destination}: ${r.status} ${r.text}`);
    }
  }
  assert.equal((await call('GET', dav(A, 'move-me.txt'))).text, 'stay');
  assert.deepEqual((await readdir(bFiles)).sort(), ['secret.txt']);
  // Behind a proxy the public host comes as X-Forwarded-Host: a Destination naming it is this server.
  const proxied = await call('COPY', dav(A, 'move-me.txt'), undefined, { destination: `http://public.example/v1/appliances/${A}/dav/copied.txt`, 'x-forwarded-host': 'public.example' });
  assert.equal(proxied.status, 201, proxied.text);
  assert.equal((await call('GET', dav(A, 'copied.txt'))).text, 'stay');
});

test('links on the disk are never followed: a link to another site or to a host directory is not found, and nothing is written through it', async () => {
  await symlink(bFiles, join(aFiles, 'to-b'));
  await symlink(outside, join(aFiles, 'to-host'));
  await symlink(join(bFiles, 'secret.txt'), join(aFiles, 'secret-link.txt'));
  try {
    for (const path of ['to-b/secret.txt', 'to-host/host.txt', 'secret-link.txt', 'to-b/', 'to-host']) {
      const get = await call('GET', dav(A, path));
      assert.equal(get.status, 404, `GET ${path}: ${get.status}`);
      const find = await call('PROPFIND', dav(A, path), undefined, { depth: '1' });
      assert.equal(find.status, 404, `PROPFIND ${path}: ${find.status}`);
    }
    const listing = await call('PROPFIND', dav(A), undefined, { depth: '1' });
    assert.equal(listing.status, 207);
    assert.doesNotMatch(listing.text, /to-b|to-host|secret-link/);
    for (const path of ['to-host/new.txt', 'to-b/new.txt']) {
      const put = await call('PUT', dav(A, path), 'written through a link');
      assert.equal(put.status, 409, `PUT ${path}: ${put.status}`);
    }
    const copy = await call('COPY', dav(A, 'index.html'), undefined, { destination: dav(A, 'to-host/copied.html') });
    assert.equal(copy.status, 409);
    assert.deepEqual((await readdir(outside)).sort(), ['host.txt']);
    assert.deepEqual((await readdir(bFiles)).sort(), ['secret.txt']);
  } finally {
    for (const l of ['to-b', 'to-host', 'secret-link.txt']) await rm(join(aFiles, l), { force: true });
  }
});

test('an exclusive lock: writers without its token get 423 on PUT, DELETE, MOVE, COPY onto it, PROPPATCH and LOCK; with it they write', async () => {
  assert.equal((await call('PUT', dav(A, 'locked.txt'), 'v1')).status, 201);
  const l = await lock(dav(A, 'locked.txt'), 'exclusive', '0');
  assert.equal(l.status, 200, l.text);
  assert.match(l.token, /^urn:uuid:[0-9a-f-]{36}$/);
  assert.match(l.text, /<D:lockdiscovery><D:activelock>.*<D:exclusive\/>.*<D:timeout>Second-\d+<\/D:timeout>/s);
  assert.equal((await call('PUT', dav(A, 'locked.txt'), 'v2')).status, 423);
  assert.equal((await call('PUT', dav(A, 'locked.txt'), 'v2', { if: '(<urn:uuid:00000000-0000-0000-0000-000000000000>)' })).status, 412);
  assert.equal((await call('PUT', dav(A, 'locked.txt'), 'v2', { if: '(Not <urn:uuid:00000000-0000-0000-0000-000000000000>)' })).status, 423);
  assert.equal((await call('DELETE', dav(A, 'locked.txt'))).status, 423);
  assert.equal((await call('MOVE', dav(A, 'locked.txt'), undefined, { destination: dav(A, 'moved.txt') })).status, 423);
  assert.equal((await call('PUT', dav(A, 'other.txt'), 'x')).status, 201);
  assert.equal((await call('COPY', dav(A, 'other.txt'), undefined, { destination: dav(A, 'locked.txt') })).status, 423);
  assert.equal((await call('PROPPATCH', dav(A, 'locked.txt'), propPatch('<Z:color>red</Z:color>'))).status, 423);
  assert.equal((await lock(dav(A, 'locked.txt'), 'exclusive')).status, 423);
  assert.equal((await lock(dav(A, 'locked.txt'), 'shared')).status, 423);
  assert.equal((await call('GET', dav(A, 'locked.txt'))).text, 'v1');
  const put = await call('PUT', dav(A, 'locked.txt'), 'v2', { if: `(<${l.token}>)` });
  assert.equal(put.status, 204);
  assert.equal((await call('UNLOCK', dav(A, 'locked.txt'), undefined, { 'lock-token': '<urn:uuid:00000000-0000-0000-0000-000000000000>' })).status, 409);
  assert.equal((await call('UNLOCK', dav(A, 'locked.txt'), undefined, { 'lock-token': `<${l.token}>` })).status, 204);
  assert.equal((await call('PUT', dav(A, 'locked.txt'), 'v3')).status, 204);
  assert.equal((await call('GET', dav(A, 'locked.txt'))).text, 'v3');
});

test('a depth-infinity lock on a collection holds its members; shared locks coexist and exclude an exclusive one', async () => {
  assert.equal((await call('MKCOL', dav(A, 'coll'))).status, 201);
  const l = await lock(dav(A, 'coll/'), 'exclusive');
  assert.equal(l.status, 200, l.text);
  assert.equal((await call('PUT', dav(A, 'coll/new.txt'), 'x')).status, 423);
  assert.equal((await call('MKCOL', dav(A, 'coll/sub'))).status, 423);
  assert.equal((await call('DELETE', dav(A, 'coll'))).status, 423);
  assert.equal((await call('PUT', dav(A, 'coll/new.txt'), 'x', { if: `(<${l.token}>)` })).status, 201);
  assert.equal((await call('UNLOCK', dav(A, 'coll/new.txt'), undefined, { 'lock-token': `<${l.token}>` })).status, 204);
  const s1 = await lock(dav(A, 'coll/new.txt'), 'shared');
  const s2 = await lock(dav(A, 'coll/new.txt'), 'shared');
  assert.deepEqual([s1.status, s2.status], [200, 200]);
  assert.notEqual(s1.token, s2.token);
  assert.equal((await lock(dav(A, 'coll/new.txt'), 'exclusive')).status, 423);
  assert.equal((await lock(dav(A, 'coll/'), 'exclusive')).status, 423);
  assert.equal((await call('PUT', dav(A, 'coll/new.txt'), 'y', { if: `(<${s2.token}>)` })).status, 204);
  for (const t of [s1.token, s2.token]) assert.equal((await call('UNLOCK', dav(A, 'coll/new.txt'), undefined, { 'lock-token': `<${t}>` })).status, 204);
});

test('malformed XML bodies are 400 and change nothing: PROPFIND, PROPPATCH, LOCK', async () => {
  assert.equal((await call('PUT', dav(A, 'xml.txt'), 'x')).status, 201);
  const bodies = [
    '<D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop>',
    '<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:bar=""><D:prop><bar:foo/></D:prop></D:propfind>',
    '<D:propfind><D:prop/></D:propfind>',
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]><D:propfind xmlns:D="DAV:">&b;</D:propfind>',
    '<?xml version="1.0"?><!DOCTYPE D:propfind><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>',
    `<D:propfind xmlns:D="DAV:"><D:prop>${'<a>'.repeat(80)}${'</a>'.repeat(80)}</D:prop></D:propfind>`,
    'not xml at all',
    '<D:other xmlns:D="DAV:"/>',
  ];
  for (const [method, ok] of [['PROPFIND', 207], ['PROPPATCH', 207], ['LOCK', 200]] as const) {
    for (const body of bodies) {
      const r = await call(method, dav(A, 'xml.txt'), body, { 'content-type': 'application/xml', depth: '0' });
      assert.equal(r.status, 400, `${method} with ${body}: ${r.status}`);
    }
    const good = method === 'PROPFIND' ? '<D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>' : method === 'PROPPATCH' ? propPatch('<Z:a>1</Z:a>') : lockBody('exclusive');
    const r = await call(method, dav(A, 'xml.txt'), good, { 'content-type': 'application/xml', depth: '0' });
    assert.equal(r.status, ok, `${method} well-formed: ${r.status} ${r.text}`);
    if (method === 'LOCK') await call('UNLOCK', dav(A, 'xml.txt'), undefined, { 'lock-token': String(r.headers['lock-token']) });
  }
  assert.equal((await call('PUT', dav(A, 'xml.txt'), 'x2')).status, 204);
});

test('dead properties: kept and moved with the file, never published; bounded per file and per site (507, nothing stored)', async () => {
  assert.equal((await call('PUT', dav(A, 'props.txt'), 'p')).status, 201);
  const set = await call('PROPPATCH', dav(A, 'props.txt'), propPatch('<Z:color>red</Z:color><Z:tree><Z:leaf k="v">x &amp; y</Z:leaf></Z:tree>'));
  assert.equal(set.status, 207);
  assert.match(set.text, /HTTP\/1.1 200 OK/);
  assert.equal((await call('MOVE', dav(A, 'props.txt'), undefined, { destination: dav(A, 'props2.txt') })).status, 201);
  const got = await call('PROPFIND', dav(A, 'props2.txt'), `<D:propfind xmlns:D="DAV:" xmlns:Z="${NS}"><D:prop><Z:color/><Z:tree/><Z:none/></D:prop></D:propfind>`, { depth: '0' });
  assert.match(got.text, /<p:color xmlns:p="http:\/\/example.com\/ns\/">red<\/p:color>/);
  assert.match(got.text, /<leaf xmlns="http:\/\/example.com\/ns\/" k="v">x &amp; y<\/leaf>/);
  assert.match(got.text, /<p:none xmlns:p="http:\/\/example.com\/ns\/"\/><\/D:prop><D:status>HTTP\/1.1 404 Not Found/);
  // The store lives beside the site's files, never among them.
  assert.deepEqual((await readdir(aFiles)).filter((n) => n.includes('props')), ['props2.txt']);
  // A live property cannot be set: 403, and the other change of the request fails with it (424).
  const live = await call('PROPPATCH', dav(A, 'props2.txt'), propPatch('<D:getetag>"x"</D:getetag><Z:color>blue</Z:color>'));
  assert.match(live.text, /403 Forbidden/);
  assert.match(live.text, /424 Failed Dependency/);
  // Too many properties on one file.
  const many = Array.from({ length: MAX_DEAD_PROPS_PER_RESOURCE + 1 }, (_, i) => `<Z:p${i}>v</Z:p${i}>`).join('');
  const tooMany = await call('PROPPATCH', dav(A, 'props2.txt'), propPatch(many));
  assert.equal(tooMany.status, 207);
  assert.match(tooMany.text, /507 Insufficient Storage/);
  // Too many bytes on the site: ~200 KiB values on several files until the bound.
  const big = 'v'.repeat(200 * 1024);
  let refused = 0;
  for (let i = 0; i < Math.ceil(MAX_DEAD_PROP_BYTES / big.length) + 1; i++) {
    assert.equal((await call('PUT', dav(A, `big${i}.txt`), 'b')).status, 201);
    const r = await call('PROPPATCH', dav(A, `big${i}.txt`), propPatch(`<Z:big>${big}</Z:big>`));
    if (/507 Insufficient Storage/.test(r.text)) refused++;
  }
  assert.ok(refused >= 1, 'the site-wide bound was never reached');
  const sidecar = join(fx.dir, 'data', 'appliances', fx.user.id, A, 'webdav-props.json');
  assert.ok((await stat(sidecar)).size <= MAX_DEAD_PROP_BYTES + 64 * 1024, `sidecar is ${(await stat(sidecar)).size} bytes`);
  const after = await call('PROPFIND', dav(A, 'props2.txt'), `<D:propfind xmlns:D="DAV:" xmlns:Z="${NS}"><D:prop><Z:color/><Z:p0/></D:prop></D:propfind>`, { depth: '0' });
  assert.match(after.text, /red<\/p:color>/);
  assert.match(after.text, /<p:p0 xmlns:p="http:\/\/example.com\/ns\/"\/><\/D:prop><D:status>HTTP\/1.1 404/);
  // A body over the parse limit is 413 before it is parsed.
  const huge = await call('PROPPATCH', dav(A, 'props2.txt'), propPatch(`<Z:huge>${'h'.repeat(300 * 1024)}</Z:huge>`));
  assert.equal(huge.status, 413);
});

test('locks are bounded: an owner over 4 KiB is 400, and past the per-site count LOCK answers 507', async () => {
  assert.equal((await call('MKCOL', dav(A, 'many'))).status, 201);
  const owner = await call('LOCK', dav(A, 'many/owner.txt'), lockBody('exclusive', 'o'.repeat(5000)), { 'content-type': 'application/xml' });
  assert.equal(owner.status, 400);
  // Shared locks on one file: no file is made per lock, only the lock table grows.
  assert.equal((await call('PUT', dav(A, 'many/shared.txt'), 's')).status, 201);
  const tokens: string[] = [];
  let last = 0;
  for (let i = 0; i <= MAX_LOCKS_PER_SITE; i++) {
    const l = await lock(dav(A, 'many/shared.txt'), 'shared', '0');
    last = l.status;
    if (l.status === 507) break;
    assert.equal(l.status, 200, `lock ${i}: ${l.status}`);
    tokens.push(l.token);
  }
  assert.equal(last, 507);
  assert.equal(tokens.length, MAX_LOCKS_PER_SITE);
  for (const token of tokens) assert.equal((await call('UNLOCK', dav(A, 'many/shared.txt'), undefined, { 'lock-token': `<${token}>` })).status, 204);
  assert.equal((await lock(dav(A, 'many/after.txt'), 'exclusive', '0')).status, 201);
});
