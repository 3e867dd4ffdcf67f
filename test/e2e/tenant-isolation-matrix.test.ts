import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { onPath } from '../../src/appliances/binaries.ts';
import { makeTestCa, type Issued, type TestCa } from '../helpers/certs.ts';
import { procfileApp, startTestCloud, until, type TestCloud, type TestUser } from '../helpers/cloud.ts';

/**
 * The tenant-isolation matrix (issue 8): a real cloud, user A owning an
 * instance, an alias, a gate route, a wildcard certificate, a static site,
 * a CI run and (when redis-server is installed) a Redis appliance; user B
 * calls EVERY route of both APIs against A's names. Each answer must be 404
 * (hidden), 403/409 (refused) or, for the compat API with A's user id in
 * the path, 401 (not B's path); routes that only ever show the caller's own
 * data must not mention any of A's names. Afterwards A's state is exactly
 * as before. The route list comes from the API itself: a new route without
 * a row here fails the test.
 *
 * Then item 1's attacks one by one: B aliasing or routing A's static site,
 * B clearing its alias, names of the platform, localhost and IP literals,
 * and a name under A's wildcard certificate.
 */

// Decided before any test runs: a machine without redis-server skips only the Redis rows.
const REDIS = onPath('redis-server') !== null;
const SKIP_REDIS = REDIS ? false : 'redis-server missing (Debian package redis-server): Redis appliance rows skipped';

const PID = process.pid;
const A_ZONE = `alice${PID}.test`;
const A_ALIAS = `www.${A_ZONE}`;
const A_ROUTE = `shop.${A_ZONE}`;
const A_WILD = `*.${A_ZONE}`;
/** Not routed by anyone, but covered by A's wildcard certificate. */
const A_COVERED = `new.${A_ZONE}`;
const A_SITE = `asite${PID}`;
const A_REDIS = `adb${PID}`;
const B_ROUTE = `www.bob${PID}.test`;

let cloud: TestCloud;
let ca: TestCa;
let aCert: Issued;
let bCert: Issued;
let A: TestUser;
let B: TestUser;
let aHost: string;
let bHost: string;
let aSiteHost: string;
let aRun: string | null = null;
let tlsPort: number;

type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'OPTIONS' | 'PROPFIND' | 'PROPPATCH' | 'MKCOL' | 'COPY' | 'MOVE' | 'LOCK' | 'UNLOCK';
interface Answer {
  status: number;
  text: string;
  json: unknown;
}

/** A request as `user` (null: no credentials); plain objects go as JSON, Buffers as raw bytes. */
async function call(user: TestUser | null, method: Method, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const h: Record<string, string> = { ...(user ? { authorization: cloud.auth(user) } : {}), ...headers };
  let payload: string | Buffer | undefined;
  if (Buffer.isBuffer(body)) {
    payload = body;
    h['content-type'] ??= 'application/octet-stream';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    h['content-type'] ??= 'application/json';
  }
  const r = await request(`${cloud.apiUrl}${path}`, { method, headers: h, ...(payload !== undefined ? { body: payload } : {}) });
  const text = await r.body.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.statusCode, text, json };
}

const ok = (r: Answer, what: string) => assert.ok(r.status >= 200 && r.status < 300, `${what}: ${r.status} ${r.text}`);

before(async () => {
  ca = await makeTestCa();
  [aCert, bCert] = await Promise.all([ca.issue([A_WILD]), ca.issue([A_COVERED])]);
  cloud = await startTestCloud({ gateTls: '127.0.0.1:0' });
  tlsPort = Number(new URL(cloud.gateTlsUrl!).port);
  A = cloud.alice;
  B = await cloud.addUser('bob');
  const app = await procfileApp("require('node:http').createServer((q, s) => s.end('app')).listen(8080)\n");
  aHost = await cloud.publish(app, { user: A, name: 'alice-app' });
  bHost = await cloud.publish(app, { user: B, name: 'bob-app' });
  ok(await call(A, 'PATCH', `/v1/instances/${aHost}`, { alias: A_ALIAS }), 'A sets its alias');
  // skipHealth: nothing in the matrix needs the instance awake, and no start means no timing in the test.
  ok(await call(A, 'PUT', `/v1/gate/routes/${A_ROUTE}`, { hostname: aHost, skipHealth: true }), 'A maps its route');
  ok(await call(A, 'PUT', `/v1/gate/certs/${A_WILD}`, { cert: aCert.cert, key: aCert.key }), "A uploads its wildcard certificate");
  ok(await call(A, 'POST', '/v1/appliances', { kind: 'static', name: A_SITE }), 'A creates its static site');
  aSiteHost = `${A_SITE}.static.eph.test`;
  ok(await call(A, 'PUT', `/v1/appliances/${A_SITE}/files/index.html`, Buffer.from('alice site\n')), 'A uploads index.html');
  if (REDIS) ok(await call(A, 'POST', '/v1/appliances', { kind: 'redis', name: A_REDIS }), 'A creates its Redis appliance');
  if (listed().some((r) => r.url === '/v1/ci/runs')) {
    const run = await call(A, 'POST', '/v1/ci/runs', { name: 'alice run' });
    ok(run, 'A starts a CI run');
    aRun = (run.json as { id: string }).id;
  }
  ok(await call(A, 'PATCH', `/v1/instances/${aHost}/config`, { set: { A_SECRET: `a-secret-${PID}` }, secret: true }), 'A sets a secret config var');
  ok(await call(B, 'PUT', `/v1/gate/routes/${B_ROUTE}`, { hostname: bHost, skipHealth: true }), 'B maps its own route');
  await until("A's static site to answer through the gate", async () => (await cloud.visit(aSiteHost)).body === 'alice site\n', 30_000);
});
after(async () => {
  await cloud?.close();
  await ca?.close();
});

function listed(): Array<{ method: string; url: string }> {
  return cloud.apiRoutes;
}

// ---- the matrix ------------------------------------------------------------

type Expect = 'hidden' | 'refused' | 'notYourPath' | 'ownOnly' | 'public';
interface Case {
  expect: Expect;
  method: Method;
  path: string;
  body?: unknown;
  user?: TestUser | null;
}

/** 404, as for a name that does not exist. */
const hidden = (method: Method, path: string, body?: unknown): Case => ({ expect: 'hidden', method, path, body });
/** 403 or 409: the name is someone else's. */
const refused = (method: Method, path: string, body?: unknown): Case => ({ expect: 'refused', method, path, body });
/** 401: compat paths carry the user id; B's credentials never pass for A's path. */
const notYourPath = (method: Method, path: string, body?: unknown): Case => ({ expect: 'notYourPath', method, path, body });
/** Answers about the caller only: whatever the status (below 500), nothing of A's shows. */
const ownOnly = (method: Method, path: string, body?: unknown): Case => ({ expect: 'ownOnly', method, path, body });
/** Needs no credentials and is about no tenant. */
const publicRoute = (method: Method, path: string): Case => ({ expect: 'public', method, path, user: null });

const enc = encodeURIComponent;
/** A's names B tries to claim: every one must be refused. */
const aNames = () => [A_ALIAS, A_ROUTE, A_COVERED, aSiteHost, aHost];
const DAV_METHODS: Method[] = ['GET', 'PUT', 'DELETE', 'OPTIONS', 'PROPFIND', 'PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK'];

/** One row per route (METHOD + URL pattern, as the API lists it). */
function rows(): Record<string, () => Case[]> {
  const cA = `/api/ephemerics/user/${A.id}`;
  const cB = `/api/ephemerics/user/${B.id}`;
  const aInstances = [aHost, A_ALIAS];
  const apps = REDIS ? [A_SITE, A_REDIS] : [A_SITE];
  const run = aRun ?? 'ci-000000000000';
  const zip = Buffer.from('PK\x05\x06' + '\0'.repeat(18), 'latin1');
  const r: Record<string, () => Case[]> = {
    // compat API
    'POST /api/ephemerics/user/:userId': () => [notYourPath('POST', cA, zip), ownOnly('POST', cB, zip)],
    'GET /api/ephemerics/user/:userId': () => [notYourPath('GET', cA), ownOnly('GET', cB)],
    'GET /api/ephemerics/user/:userId/:host': () => [notYourPath('GET', `${cA}/${aHost}`), ...aInstances.map((h) => hidden('GET', `${cB}/${h}`))],
    'GET /api/ephemerics/user/:userId/:host/:prop': () => aInstances.flatMap((h) => ['alias', 'isRunning', 'imageName'].map((p) => hidden('GET', `${cB}/${h}/${p}`))),
    'PUT /api/ephemerics/user/:userId/:host/:prop': () => [
      notYourPath('PUT', `${cA}/${aHost}/alias`, 'x.bob.test'),
      ...aInstances.flatMap((h) => [hidden('PUT', `${cB}/${h}/alias`, 'x.bob.test'), hidden('PUT', `${cB}/${h}/isRunning`, true), hidden('PUT', `${cB}/${h}/imageName`, 'stolen')]),
      ...aNames().map((n) => refused('PUT', `${cB}/${bHost}/alias`, n)),
    ],
    'DELETE /api/ephemerics/user/:userId/:host': () => [notYourPath('DELETE', `${cA}/${aHost}`), ...aInstances.map((h) => hidden('DELETE', `${cB}/${h}`))],
    // v1: service
    // Public, so it names no host: nothing of A's shows to anyone (B's credentials are ignored there).
    'GET /metrics': () => [publicRoute('GET', '/metrics'), ownOnly('GET', '/metrics')],
    'GET /v1/metrics': () => [ownOnly('GET', '/v1/metrics')],
    'GET /v1/health': () => [publicRoute('GET', '/v1/health')],
    'GET /v1/openapi.json': () => [publicRoute('GET', '/v1/openapi.json')],
    'GET /v1/me': () => [ownOnly('GET', '/v1/me')],
    // v1: instances
    'POST /v1/instances': () => [ownOnly('POST', '/v1/instances', zip)],
    'GET /v1/instances': () => [ownOnly('GET', '/v1/instances')],
    'GET /v1/instances/:host': () => aInstances.map((h) => hidden('GET', `/v1/instances/${h}`)),
    'PATCH /v1/instances/:host': () => [
      ...aInstances.map((h) => hidden('PATCH', `/v1/instances/${h}`, { alias: 'x.bob.test', imageName: 'stolen', running: true })),
      ...aNames().map((n) => refused('PATCH', `/v1/instances/${bHost}`, { alias: n })),
    ],
    'DELETE /v1/instances/:host': () => aInstances.map((h) => hidden('DELETE', `/v1/instances/${h}`)),
    'POST /v1/instances/:host/start': () => aInstances.map((h) => hidden('POST', `/v1/instances/${h}/start`)),
    'POST /v1/instances/:host/stop': () => aInstances.map((h) => hidden('POST', `/v1/instances/${h}/stop`)),
    'GET /v1/instances/:host/logs': () => aInstances.map((h) => hidden('GET', `/v1/instances/${h}/logs`)),
    // v1: config vars and attachments (issue 16)
    'GET /v1/instances/:host/config': () => aInstances.flatMap((h) => [hidden('GET', `/v1/instances/${h}/config`), hidden('GET', `/v1/instances/${h}/config?reveal=true`)]),
    'PATCH /v1/instances/:host/config': () => aInstances.map((h) => hidden('PATCH', `/v1/instances/${h}/config`, { set: { STOLEN: 'bob' }, unset: ['A_SECRET'], restart: true })),
    'DELETE /v1/instances/:host/config/:key': () => aInstances.map((h) => hidden('DELETE', `/v1/instances/${h}/config/A_SECRET`)),
    'GET /v1/instances/:host/attachments': () => aInstances.map((h) => hidden('GET', `/v1/instances/${h}/attachments`)),
    'POST /v1/instances/:host/attachments/:appliance': () => [
      // A's instance with A's appliance, A's instance with nothing of B's, B's own instance with A's appliance: all hidden.
      ...aInstances.flatMap((h) => apps.map((n) => hidden('POST', `/v1/instances/${h}/attachments/${n}`, { as: 'STOLEN_URL' }))),
      ...apps.map((n) => hidden('POST', `/v1/instances/${bHost}/attachments/${n}`, { as: 'STOLEN_URL' })),
    ],
    'DELETE /v1/instances/:host/attachments/:appliance': () => [
      ...aInstances.flatMap((h) => apps.map((n) => hidden('DELETE', `/v1/instances/${h}/attachments/${n}`))),
      ...apps.map((n) => hidden('DELETE', `/v1/instances/${bHost}/attachments/${n}`)),
    ],
    // v1: gate routes
    'GET /v1/gate/routes': () => [ownOnly('GET', '/v1/gate/routes')],
    'GET /v1/gate/routes/:domain': () => [hidden('GET', `/v1/gate/routes/${A_ROUTE}`)],
    'PUT /v1/gate/routes/:domain': () => [
      ...aNames().map((n) => refused('PUT', `/v1/gate/routes/${n}`, { hostname: bHost, skipHealth: true })),
      refused('PUT', `/v1/gate/routes/${A_ROUTE}`, { targets: [{ hostname: bHost, weight: 100 }], skipHealth: true }),
      // B's own name pointed at A's instance or A's static site: not B's to target.
      hidden('PUT', `/v1/gate/routes/${B_ROUTE}`, { hostname: aHost, skipHealth: true }),
      hidden('PUT', `/v1/gate/routes/${B_ROUTE}`, { hostname: aSiteHost, skipHealth: true }),
      hidden('PUT', `/v1/gate/routes/${B_ROUTE}`, { targets: [{ hostname: bHost, weight: 50 }, { hostname: aHost, weight: 50 }], skipHealth: true }),
    ],
    'DELETE /v1/gate/routes/:domain': () => [hidden('DELETE', `/v1/gate/routes/${A_ROUTE}`), hidden('DELETE', `/v1/gate/routes/${A_ALIAS}`)],
    'POST /v1/gate/promote': () => [
      hidden('POST', '/v1/gate/promote', { from: A_ROUTE, to: `new.bob${PID}.test`, skipHealth: true }),
      refused('POST', '/v1/gate/promote', { from: B_ROUTE, to: A_ROUTE, skipHealth: true }),
      refused('POST', '/v1/gate/promote', { from: B_ROUTE, to: A_COVERED, skipHealth: true }),
      refused('POST', '/v1/gate/promote', { from: B_ROUTE, to: aSiteHost, skipHealth: true }),
    ],
    'POST /v1/gate/routes/:domain/rollback': () => [hidden('POST', `/v1/gate/routes/${A_ROUTE}/rollback`, { skipHealth: true })],
    'GET /v1/gate/routes/:domain/history': () => [hidden('GET', `/v1/gate/routes/${A_ROUTE}/history`)],
    // v1: certificates
    'GET /v1/gate/certs': () => [ownOnly('GET', '/v1/gate/certs')],
    'GET /v1/gate/certs/:domain': () => [hidden('GET', `/v1/gate/certs/${enc(A_WILD)}`)],
    'PUT /v1/gate/certs/:domain': () => [
      refused('PUT', `/v1/gate/certs/${enc(A_WILD)}`, { cert: aCert.cert, key: aCert.key }),
      refused('PUT', `/v1/gate/certs/${A_COVERED}`, { cert: bCert.cert, key: bCert.key }),
      refused('PUT', `/v1/gate/certs/${A_ALIAS}`, { cert: aCert.cert, key: aCert.key }),
    ],
    'DELETE /v1/gate/certs/:domain': () => [hidden('DELETE', `/v1/gate/certs/${enc(A_WILD)}`)],
    // Automatic HTTPS for A's names (routed, aliased, under A's wildcard): refused whether or not the cloud orders certificates.
    'POST /v1/gate/certs/:domain/acme': () => [A_ROUTE, A_ALIAS, A_COVERED].map((n) => refused('POST', `/v1/gate/certs/${n}/acme`)),
    'GET /v1/names/:domain/verification': () => [ownOnly('GET', `/v1/names/${A_ROUTE}/verification`)],
    // v1: appliances
    'POST /v1/appliances': () => [refused('POST', '/v1/appliances', { kind: 'static', name: A_SITE })],
    'GET /v1/appliances': () => [ownOnly('GET', '/v1/appliances')],
    'GET /v1/appliances/:name': () => apps.map((n) => hidden('GET', `/v1/appliances/${n}`)),
    'POST /v1/appliances/:name/start': () => apps.map((n) => hidden('POST', `/v1/appliances/${n}/start`)),
    'POST /v1/appliances/:name/stop': () => apps.map((n) => hidden('POST', `/v1/appliances/${n}/stop`)),
    'DELETE /v1/appliances/:name': () => apps.map((n) => hidden('DELETE', `/v1/appliances/${n}`)),
    'GET /v1/appliances/:name/backup': () => apps.map((n) => hidden('GET', `/v1/appliances/${n}/backup`)),
    'POST /v1/appliances/:name/restore': () => apps.map((n) => hidden('POST', `/v1/appliances/${n}/restore`, Buffer.from('not a backup'))),
    'GET /v1/appliances/:name/psk': () => apps.map((n) => hidden('GET', `/v1/appliances/${n}/psk`)),
    'PUT /v1/appliances/:name/psk': () => apps.map((n) => hidden('PUT', `/v1/appliances/${n}/psk`, Buffer.from('bob:00112233445566778899aabbccddeeff\n'))),
    'GET /v1/appliances/:name/stunnel.conf': () => apps.map((n) => hidden('GET', `/v1/appliances/${n}/stunnel.conf`)),
    'GET /v1/appliances/:name/files': () => [hidden('GET', `/v1/appliances/${A_SITE}/files`)],
    'GET /v1/appliances/:name/files/*': () => [hidden('GET', `/v1/appliances/${A_SITE}/files/index.html`)],
    'PUT /v1/appliances/:name/files/*': () => [hidden('PUT', `/v1/appliances/${A_SITE}/files/index.html`, Buffer.from('bob was here\n'))],
    'DELETE /v1/appliances/:name/files/*': () => [hidden('DELETE', `/v1/appliances/${A_SITE}/files/index.html`)],
    // v1: the console's session (B signs in, reads and ends its own; a cookie never crosses users)
    'POST /v1/session': () => [ownOnly('POST', '/v1/session')],
    'GET /v1/session': () => [ownOnly('GET', '/v1/session')],
    'DELETE /v1/session': () => [ownOnly('DELETE', '/v1/session')],
    // The console's files: the same for everyone (the script is 404 where the console is not built).
    'GET /': () => [publicRoute('GET', '/')],
    'GET /console/:file': () => [ownOnly('GET', '/console/app.js'), ownOnly('GET', '/console/app.css')],
    // v1: CI runs
    'POST /v1/ci/runs': () => [ownOnly('POST', '/v1/ci/runs', { bogus: true })],
    'GET /v1/ci/runs': () => [ownOnly('GET', '/v1/ci/runs')],
    'GET /v1/ci/runs/:id': () => [hidden('GET', `/v1/ci/runs/${run}`)],
    'GET /v1/ci/runs/:id/junit': () => [hidden('GET', `/v1/ci/runs/${run}/junit`)],
    'POST /v1/ci/runs/:id/archive': () => [hidden('POST', `/v1/ci/runs/${run}/archive`, zip)],
    'POST /v1/ci/runs/:id/finish': () => [hidden('POST', `/v1/ci/runs/${run}/finish`, { status: 'passed' })],
  };
  // WebDAV share of a static site: every method, on the share and on a file in it.
  for (const m of DAV_METHODS) {
    const body = m === 'PUT' ? Buffer.from('bob was here\n') : undefined;
    r[`${m} /v1/appliances/:name/dav`] = () => [hidden(m, `/v1/appliances/${A_SITE}/dav`, body)];
    r[`${m} /v1/appliances/:name/dav/*`] = () => [hidden(m, `/v1/appliances/${A_SITE}/dav/index.html`, body)];
  }
  return r;
}

/** Row key covering a listed route: HEAD twins share their GET row, trailing-slash twins the row without it. */
function rowKeyOf(method: string, url: string, table: Record<string, unknown>): { key: string; head: boolean; slash: boolean } | null {
  for (const m of method === 'HEAD' ? ['HEAD', 'GET'] : [method]) {
    for (const u of url.length > 1 && url.endsWith('/') ? [url, url.slice(0, -1)] : [url]) {
      if (`${m} ${u}` in table) return { key: `${m} ${u}`, head: m !== method, slash: u !== url };
    }
  }
  return null;
}

/** What of A's may never appear in an answer to B (unless B named it in the request). */
function aSecrets(): string[] {
  return [A.id, A.token, aHost, A_ALIAS, A_ROUTE, A_SITE, A_ZONE, `a-secret-${PID}`, ...(aRun ? [aRun] : []), ...(REDIS ? [A_REDIS] : [])];
}

function judge(c: Case, r: Answer): string | null {
  const what = `${c.method} ${c.path} → ${r.status} ${r.text.slice(0, 200)}`;
  if (r.status >= 500) return `server error: ${what}`;
  const isJsonError = (): boolean => c.method === 'HEAD' || (typeof (r.json as { error?: { code?: unknown } })?.error?.code === 'string');
  switch (c.expect) {
    case 'hidden':
      if (r.status !== 404) return `expected 404 (hidden): ${what}`;
      // WebDAV and raw routes answer with the API's JSON error too; HEAD has no body.
      return isJsonError() ? null : `404 without a JSON error: ${what}`;
    case 'refused':
      if (r.status !== 403 && r.status !== 409) return `expected 403 or 409 (refused): ${what}`;
      return isJsonError() ? null : `refusal without a JSON error: ${what}`;
    case 'notYourPath':
      return r.status === 401 ? null : `expected 401 (not B's path): ${what}`;
    case 'public':
      return r.status === 200 ? null : `expected 200 without credentials: ${what}`;
    case 'ownOnly': {
      const asked = `${c.path} ${c.body === undefined || Buffer.isBuffer(c.body) ? '' : JSON.stringify(c.body)}`;
      const leaked = aSecrets().filter((s) => !asked.includes(s) && r.text.includes(s));
      return leaked.length ? `answer shows A's ${leaked.join(', ')}: ${what}` : null;
    }
  }
}

/** Everything of A's a request could change, as A sees it (access times left out: visits move them). */
async function stateOfA(): Promise<unknown> {
  const get = async (path: string) => {
    const r = await call(A, 'GET', path);
    assert.equal(r.status, 200, `${path}: ${r.text}`);
    return JSON.parse(r.text.replace(/"(accessTime|accessAt|accessTimestamp)":\d+,?/g, '')) as unknown;
  };
  const site = await cloud.visit(aSiteHost);
  return {
    compat: await get(`/api/ephemerics/user/${A.id}/${aHost}`),
    instances: await get('/v1/instances'),
    routes: await get('/v1/gate/routes'),
    history: await get(`/v1/gate/routes/${A_ROUTE}/history`),
    certs: await get('/v1/gate/certs'),
    appliances: await get('/v1/appliances'),
    files: await get(`/v1/appliances/${A_SITE}/files`),
    ci: aRun ? await get(`/v1/ci/runs/${aRun}`) : null,
    config: await get(`/v1/instances/${aHost}/config?reveal=true`),
    attachments: await get(`/v1/instances/${aHost}/attachments`),
    table: [aHost, A_ALIAS, A_ROUTE, aSiteHost].map((h) => [h, cloud.table.get(h)?.targets ?? null]),
    holders: [aHost, A_ALIAS, A_ROUTE, aSiteHost].map((h) => [h, cloud.names.holderOf(h) ?? null]),
    site: [site.status, site.body],
  };
}

test('every route of both APIs has a row in the matrix', () => {
  const table = rows();
  const missing = listed()
    .filter((r) => rowKeyOf(r.method, r.url, table) === null)
    .map((r) => `${r.method} ${r.url}`);
  assert.deepEqual([...new Set(missing)], [], 'routes without a row: add one (hidden/refused/notYourPath/ownOnly/publicRoute)');
});

test("B against A's names on every route: hidden, refused or own-only, and A's state is unchanged", async (t) => {
  const table = rows();
  const before = await stateOfA();
  const failures: string[] = [];
  let requests = 0;
  const seen = new Set<string>();
  for (const route of listed()) {
    const k = rowKeyOf(route.method, route.url, table);
    if (!k) continue; // reported by the coverage test
    const id = `${route.method} ${route.url}`;
    if (seen.has(id)) continue;
    seen.add(id);
    for (const c of table[k.key]!()) {
      const method = k.head ? 'HEAD' : c.method;
      const [p, q] = c.path.split('?') as [string, string | undefined];
      const path = k.slash ? `${p}/${q === undefined ? '' : `?${q}`}` : c.path;
      const r = await call(c.user === undefined ? B : c.user, method, path, method === 'HEAD' ? undefined : c.body);
      requests++;
      const verdict = judge({ ...c, method, path }, r);
      if (verdict) failures.push(verdict);
    }
  }
  t.diagnostic(`${requests} requests over ${seen.size} routes`);
  assert.deepEqual(failures, [], `${failures.length} of ${requests} requests`);
  assert.ok(requests > 100, `only ${requests} requests made`);
  assert.deepEqual(await stateOfA(), before, "A's instance, alias, route, certificate, site, appliances and CI run are as they were");
  // B's refused claims left nothing on B's side either.
  const bAlias = await call(B, 'GET', `/api/ephemerics/user/${B.id}/${bHost}/alias`);
  assert.equal(bAlias.json, null, bAlias.text);
  assert.deepEqual(((await call(B, 'GET', '/v1/gate/routes')).json as { routes: Array<{ domain: string }> }).routes.map((x) => x.domain), [B_ROUTE]);
});

test('the Redis appliance rows ran (redis-server present)', { skip: SKIP_REDIS }, async () => {
  const r = await call(A, 'GET', `/v1/appliances/${A_REDIS}`);
  assert.equal(r.status, 200, r.text);
  assert.equal((await call(B, 'GET', `/v1/appliances/${A_REDIS}`)).status, 404);
});

// ---- item 1, as an attacker ---------------------------------------------------

type ErrorBody = { error: { code: string; message: string } };
const errorOf = (r: Answer) => (r.json as ErrorBody).error;

/** B's alias attempt through both APIs: same status and code on each. */
async function bAlias(value: string): Promise<{ compat: Answer; v1: Answer }> {
  const compat = await call(B, 'PUT', `/api/ephemerics/user/${B.id}/${bHost}/alias`, value);
  const v1 = await call(B, 'PATCH', `/v1/instances/${bHost}`, { alias: value });
  return { compat, v1 };
}

test("B aliases A's static site name (any spelling): 409 on both APIs, and A's site still answers", async () => {
  for (const spelling of [aSiteHost, aSiteHost.toUpperCase(), `${aSiteHost}.`]) {
    const { compat, v1 } = await bAlias(spelling);
    for (const r of [compat, v1]) {
      assert.equal(r.status, 409, r.text);
      assert.equal(errorOf(r).code, 'CONFLICT');
      assert.match(errorOf(r).message, /belong to the platform/);
    }
  }
  assert.deepEqual(cloud.names.holderOf(aSiteHost), { kind: 'static', userId: A.id });
  assert.equal((await cloud.visit(aSiteHost)).body, 'alice site\n');
});

test("B maps a gate route to A's static site (as its domain or as its target): refused, and A's site still answers", async () => {
  const asDomain = await call(B, 'PUT', `/v1/gate/routes/${aSiteHost}`, { hostname: bHost, skipHealth: true });
  assert.equal(asDomain.status, 409, asDomain.text);
  const asTarget = await call(B, 'PUT', `/v1/gate/routes/site.bob${PID}.test`, { hostname: aSiteHost, skipHealth: true });
  assert.equal(asTarget.status, 404, asTarget.text);
  assert.equal(cloud.table.get(`site.bob${PID}.test`), undefined);
  assert.equal((await cloud.visit(aSiteHost)).body, 'alice site\n');
});

test("B sets then clears its alias (and tries A's site on the way): A's site, alias and route all still answer", async () => {
  const own = `own.bob${PID}.test`;
  assert.equal((await bAlias(own)).v1.status, 200);
  assert.equal((await bAlias(aSiteHost)).v1.status, 409);
  const cleared = await call(B, 'PUT', `/api/ephemerics/user/${B.id}/${bHost}/alias`, null);
  assert.equal(cleared.status, 200, cleared.text);
  assert.equal((await call(B, 'PATCH', `/v1/instances/${bHost}`, { alias: null })).status, 200);
  assert.equal((await call(B, 'PATCH', `/v1/instances/${bHost}`, { alias: '' })).status, 200);
  assert.equal(cloud.table.get(own), undefined, "B's own alias is gone");
  assert.equal((await cloud.visit(aSiteHost)).body, 'alice site\n');
  assert.deepEqual(cloud.table.get(A_ALIAS)?.targets, [{ hostname: aHost, weight: 1 }]);
  assert.deepEqual(cloud.table.get(A_ROUTE)?.targets, [{ hostname: aHost, weight: 100 }]);
});

test('aliases under the cloud domain, localhost and IP literals are refused with a JSON reason, the same on both APIs', async () => {
  const platform = ['eph.test', 'EPH.TEST.', 'x.eph.test', 'eph-00000000.eph.test', aHost];
  const never = ['localhost', 'LocalHost.', 'app.localhost', '127.0.0.1', '127.1', '[::1]', '::1', '[::ffff:127.0.0.1]', '0.0.0.0'];
  for (const [names, status, code] of [[platform, 409, 'CONFLICT'], [never, 400, 'INVALID_HOSTNAME']] as const) {
    for (const n of names) {
      const { compat, v1 } = await bAlias(n);
      for (const r of [compat, v1]) {
        assert.equal(r.status, status, `${n}: ${r.text}`);
        assert.ok(errorOf(r).message.length > 10, r.text);
      }
      // The compat API re-reads a string body as JSON (curl's `-d true`): "127.1" arrives as a number there.
      assert.equal(errorOf(v1).code, code, `${n}: ${v1.text}`);
      if (!/^[\d.]+$/.test(n)) assert.equal(errorOf(compat).code, code, `${n}: ${compat.text}`);
      const route = await call(B, 'PUT', `/v1/gate/routes/${enc(n)}`, { hostname: bHost, skipHealth: true });
      assert.equal(route.status, status, `route ${n}: ${route.text}`);
    }
  }
  assert.equal((await call(B, 'GET', `/api/ephemerics/user/${B.id}/${bHost}/alias`)).json, null);
  for (const h of ['localhost', '127.0.0.1', 'x.eph.test']) assert.equal(cloud.table.get(h), undefined);
});

/** GET over HTTPS to the gate with SNI `servername`, trusting only the test CA. */
function viaTls(servername: string): Promise<{ authorized: boolean; subject: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port: tlsPort, path: '/', servername, headers: { host: servername }, ca: [ca.ca], rejectUnauthorized: false, agent: false },
      (res) => {
        const socket = res.socket as TLSSocket;
        const peer = socket.getPeerCertificate();
        res.resume();
        res.on('end', () => resolve({ authorized: socket.authorized, subject: String(peer.subject.CN) }));
      },
    );
    req.setTimeout(20_000, () => req.destroy(new Error('HTTPS request timed out')));
    req.on('error', reject);
    req.end();
  });
}

test("B's alias or route under A's wildcard certificate is refused, and A's certificate is still served", async () => {
  assert.equal((await viaTls(A_ALIAS)).subject, A_WILD);
  const { compat, v1 } = await bAlias(A_COVERED);
  for (const r of [compat, v1]) {
    assert.equal(r.status, 409, r.text);
    assert.match(errorOf(r).message, /covered by another user's certificate/);
  }
  const route = await call(B, 'PUT', `/v1/gate/routes/${A_COVERED}`, { hostname: bHost, skipHealth: true });
  assert.equal(route.status, 409, route.text);
  // The certificate check runs after every claim: give it the chance to switch A's certificate off, then look.
  await cloud.certs.refresh();
  const served = await viaTls(A_ALIAS);
  assert.equal(served.subject, A_WILD);
  assert.equal(served.authorized, true);
  const certs = (await call(A, 'GET', '/v1/gate/certs')).json as { certs: Array<{ domain: string; active: boolean }> };
  assert.deepEqual(certs.certs.map((c) => [c.domain, c.active]), [[A_WILD, true]]);
  // A, the holder, may use the covered name.
  const mine = await call(A, 'PUT', `/v1/gate/routes/${A_COVERED}`, { hostname: aHost, skipHealth: true });
  assert.equal(mine.status, 200, mine.text);
  assert.equal((await call(A, 'DELETE', `/v1/gate/routes/${A_COVERED}`)).status, 200);
});


test('A and B claiming the same new name at the same moment (route against alias): exactly one wins, and the table agrees', async () => {
  for (let i = 0; i < 12; i++) {
    const name = `race${i}.contest${PID}.test`;
    const [route, alias] = await Promise.all([
      call(A, 'PUT', `/v1/gate/routes/${name}`, { hostname: aHost, skipHealth: true }),
      call(B, 'PATCH', `/v1/instances/${bHost}`, { alias: name }),
    ]);
    const statuses = [route.status, alias.status].sort();
    assert.deepEqual(statuses, [200, 409], `${name}: route ${route.status} ${route.text} / alias ${alias.status} ${alias.text}`);
    const winner = route.status === 200 ? { kind: 'route', userId: A.id } : { kind: 'alias', userId: B.id };
    assert.deepEqual(cloud.names.holderOf(name), winner);
    // The store agrees with the table: the loser left nothing behind.
    const aRoutes = ((await call(A, 'GET', '/v1/gate/routes')).json as { routes: Array<{ domain: string }> }).routes.map((r) => r.domain);
    const bAliasNow = (await call(B, 'GET', `/api/ephemerics/user/${B.id}/${bHost}/alias`)).json;
    assert.equal(aRoutes.includes(name), route.status === 200);
    assert.equal(bAliasNow === name, alias.status === 200);
    if (route.status === 200) assert.equal((await call(A, 'DELETE', `/v1/gate/routes/${name}`)).status, 200);
  }
  assert.equal((await call(B, 'PATCH', `/v1/instances/${bHost}`, { alias: null })).status, 200);
});
