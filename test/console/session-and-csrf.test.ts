import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Fastify from 'fastify';
import { request } from 'undici';
import { procfileApp, startTestCloud, type TestCloud, type TestUser } from '../helpers/cloud.ts';
import { makeTestCa } from '../helpers/certs.ts';
import { consoleRoutes } from '../../src/api/console-routes.ts';
import { sessionRoutes } from '../../src/api/session-routes.ts';
import { errorHandler } from '../../src/api/errors.ts';
import { sessionsOf, SessionStore } from '../../src/api/session-store.ts';
import type { User } from '../../src/core/types.ts';

/**
 * The console's session over plain HTTP, as an attacker's page or script
 * would meet it: the cookie's flags, CSRF refusals of cookie-authenticated
 * changes (Basic auth unaffected), sign out removing the session on the
 * server, bounded sessions, throttled failed sign-ins; and the console's
 * files with their security headers.
 */

let cloud: TestCloud;
let host: string;

interface Answer {
  status: number;
  text: string;
  json: unknown;
  headers: Record<string, string | string[] | undefined>;
}

async function call(method: string, path: string, init: { cookie?: string; csrf?: string; basic?: TestUser; body?: unknown; headers?: Record<string, string>; base?: string } = {}): Promise<Answer> {
  const headers: Record<string, string> = { ...init.headers };
  if (init.cookie) headers.cookie = init.cookie;
  if (init.csrf !== undefined) headers['x-csrf-token'] = init.csrf;
  if (init.basic) headers.authorization = cloud.auth(init.basic);
  let body: string | Buffer | undefined;
  if (Buffer.isBuffer(init.body)) body = init.body;
  else if (init.body !== undefined) {
    body = JSON.stringify(init.body);
    headers['content-type'] = 'application/json';
  }
  const r = await request(`${init.base ?? cloud.apiUrl}${path}`, { method: method as 'GET', headers, ...(body !== undefined ? { body } : {}) });
  const text = await r.body.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.statusCode, text, json, headers: r.headers };
}

interface Signed {
  cookie: string;
  csrf: string;
  setCookie: string;
}

async function signIn(user: TestUser = cloud.alice): Promise<Signed> {
  const r = await call('POST', '/v1/session', { basic: user });
  assert.equal(r.status, 201, r.text);
  const setCookie = String(r.headers['set-cookie']);
  const cookie = setCookie.split(';')[0]!;
  return { cookie, csrf: (r.json as { csrfToken: string }).csrfToken, setCookie };
}

const codeOf = (r: Answer) => (r.json as { error: { code: string } }).error.code;

before(async () => {
  cloud = await startTestCloud();
  host = await cloud.publish(await procfileApp("require('node:http').createServer((q, s) => s.end('ok')).listen(8080)\n"), { name: 'csrf-app.zip' });
});
after(async () => {
  await cloud?.close();
});

test('sign-in sets an HttpOnly, SameSite=Strict, Path=/ cookie (not Secure over plain HTTP) and answers the CSRF token', async () => {
  const s = await signIn();
  const flags = s.setCookie.split(';').map((x) => x.trim());
  assert.match(flags[0]!, /^eph_session=[A-Za-z0-9_-]{43}$/);
  assert.ok(flags.includes('HttpOnly'), s.setCookie);
  assert.ok(flags.includes('SameSite=Strict'), s.setCookie);
  assert.ok(flags.includes('Path=/'), s.setCookie);
  assert.ok(!flags.includes('Secure'), `no Secure over plain HTTP: ${s.setCookie}`);
  assert.match(s.csrf, /^[A-Za-z0-9_-]{43}$/);
  const me = await call('GET', '/v1/session', { cookie: s.cookie });
  assert.equal(me.status, 200, me.text);
  assert.equal((me.json as { userID: string }).userID, cloud.alice.id);
  assert.equal((me.json as { csrfToken: string }).csrfToken, s.csrf);
  const list = await call('GET', '/v1/instances', { cookie: s.cookie });
  assert.equal(list.status, 200, list.text);
  assert.ok((list.json as { instances: Array<{ hostname: string }> }).instances.some((i) => i.hostname === host));
});

test('a cookie-authenticated change without the X-CSRF-Token header (or with a wrong one) is refused 403 and changes nothing', async () => {
  const s = await signIn();
  const attempts: Array<[string, string, unknown]> = [
    ['PATCH', `/v1/instances/${host}`, { imageName: 'forged' }],
    ['POST', `/v1/instances/${host}/stop`, undefined],
    ['DELETE', `/v1/instances/${host}`, undefined],
    ['POST', '/v1/instances', Buffer.from('PK\x05\x06' + '\0'.repeat(18), 'latin1')],
    ['PUT', '/v1/gate/routes/forged.example.org', { hostname: host, skipHealth: true }],
    ['POST', '/v1/appliances', { kind: 'static', name: 'forged' }],
  ];
  for (const [method, path, body] of attempts) {
    for (const csrf of [undefined, 'wrong', `${s.csrf}x`, '']) {
      const r = await call(method, path, { cookie: s.cookie, body, ...(csrf !== undefined ? { csrf } : {}) });
      assert.equal(r.status, 403, `${method} ${path} csrf=${csrf}: ${r.text}`);
      assert.equal(codeOf(r), 'FORBIDDEN');
      assert.match(r.text, /X-CSRF-Token/);
    }
  }
  const after = await cloud.api('GET', `/v1/instances/${host}`);
  assert.equal(after.status, 200, 'the instance is still there');
  assert.equal((after.json as { imageName: string }).imageName, 'csrf-app.zip');
  assert.equal(((await cloud.api('GET', '/v1/gate/routes')).json as { routes: unknown[] }).routes.length, 0);
  assert.equal(((await cloud.api('GET', '/v1/appliances')).json as { appliances: unknown[] }).appliances.length, 0);
  // With the token the same change passes; with Basic credentials no token is needed (not a browser session).
  const ok = await call('PATCH', `/v1/instances/${host}`, { cookie: s.cookie, csrf: s.csrf, body: { imageName: 'renamed-by-console' } });
  assert.equal(ok.status, 200, ok.text);
  const basic = await call('PATCH', `/v1/instances/${host}`, { basic: cloud.alice, body: { imageName: 'csrf-app.zip' } });
  assert.equal(basic.status, 200, basic.text);
});

test('the compat API never takes the session cookie', async () => {
  const s = await signIn();
  const r = await call('GET', `/api/ephemerics/user/${cloud.alice.id}`, { cookie: s.cookie, csrf: s.csrf });
  assert.equal(r.status, 401, r.text);
});

test("a console request's 401 has no WWW-Authenticate (no browser password dialog); others keep it", async () => {
  const wrong = { id: cloud.alice.id, token: 'not-the-token' };
  const fromConsole = await call('POST', '/v1/session', { basic: wrong, headers: { 'x-eph-console': '1' } });
  assert.equal(fromConsole.status, 401, fromConsole.text);
  assert.equal(codeOf(fromConsole), 'UNAUTHORIZED');
  assert.equal(fromConsole.headers['www-authenticate'], undefined);
  const fromCurl = await call('GET', '/v1/instances');
  assert.equal(fromCurl.status, 401);
  assert.equal(fromCurl.headers['www-authenticate'], 'Basic realm="ephemeric"');
  const noCredentials = await call('POST', '/v1/session');
  assert.equal(noCredentials.status, 401, noCredentials.text);
});

test('sign out removes the session on the server: the old cookie is refused afterwards, even if kept', async () => {
  const s = await signIn();
  const forged = await call('DELETE', '/v1/session', { cookie: s.cookie });
  assert.equal(forged.status, 403, 'signing out is a change: it needs the CSRF token too');
  const out = await call('DELETE', '/v1/session', { cookie: s.cookie, csrf: s.csrf });
  assert.equal(out.status, 200, out.text);
  assert.deepEqual(out.json, { signedOut: true });
  assert.match(String(out.headers['set-cookie']), /^eph_session=; Path=\/; HttpOnly; SameSite=Strict; Max-Age=0/);
  for (const path of ['/v1/session', '/v1/instances', '/v1/me']) {
    const r = await call('GET', path, { cookie: s.cookie });
    assert.equal(r.status, 401, `${path}: ${r.text}`);
  }
});

test('sessions are bounded per user: the 21st sign-in ends the oldest session', async () => {
  const bob = await cloud.addUser('bob');
  const sessions: Signed[] = [];
  for (let i = 0; i < 21; i++) sessions.push(await signIn(bob));
  const bobUser = (await cloud.users.list()).find((u) => u.id === bob.id)!;
  assert.equal(sessionsOf(cloud.users).countOf(bobUser.id), 20);
  assert.equal((await call('GET', '/v1/me', { cookie: sessions[0]!.cookie })).status, 401, 'the oldest ended');
  assert.equal((await call('GET', '/v1/me', { cookie: sessions[1]!.cookie })).status, 200);
  assert.equal((await call('GET', '/v1/me', { cookie: sessions[20]!.cookie })).status, 200);
});

test('a session expires: the store forgets it at its time, and sign-ins beyond the total bound end the oldest', () => {
  let now = 1_000_000;
  const store = new SessionStore({ ttlMs: 60_000, maxPerUser: 5, maxTotal: 3 }, () => now);
  const user = (id: string): User => ({ id, name: id, plan: 'free', tokenHash: 'x', createdAt: 0 });
  const a = store.create(user('a'));
  now += 59_999;
  assert.ok(store.get(a.secret), 'alive just before its expiry');
  now += 1;
  assert.equal(store.get(a.secret), null, 'gone at its expiry');
  const [b, c, d, e] = ['b', 'c', 'd', 'e'].map((id) => store.create(user(id)));
  assert.equal(store.size, 3);
  assert.equal(store.get(b!.secret), null, 'the oldest of all ended');
  for (const s of [c, d, e]) assert.ok(store.get(s!.secret));
  assert.equal(store.get('made-up'), null);
});

test('failed sign-ins are throttled like the API: 429 with Retry-After once the source is over its limit', async () => {
  const limited = await startTestCloud({}, { env: { EPH_AUTH_LIMIT_SOURCE: '3/1m' } });
  try {
    const wrong = `Basic ${Buffer.from(`${limited.alice.id}:wrong-token`).toString('base64')}`;
    const statuses: number[] = [];
    let last: Answer | null = null;
    for (let i = 0; i < 5; i++) {
      last = await call('POST', '/v1/session', { base: limited.apiUrl, headers: { authorization: wrong } });
      statuses.push(last.status);
    }
    assert.deepEqual(statuses, [401, 401, 401, 429, 429]);
    assert.equal(codeOf(last!), 'RATE_LIMITED');
    assert.match(String(last!.headers['retry-after']), /^\d+$/);
    // The right token from the same throttled source is refused too: the limit is per source.
    const right = await call('POST', '/v1/session', { base: limited.apiUrl, headers: { authorization: `Basic ${Buffer.from(`${limited.alice.id}:${limited.alice.token}`).toString('base64')}` } });
    assert.equal(right.status, 429, right.text);
    assert.equal(sessionsOf(limited.users).size, 0);
  } finally {
    await limited.close();
  }
});

test('over TLS the session cookie is Secure', async () => {
  const ca = await makeTestCa();
  const leaf = await ca.issue(['localhost']);
  const app = Fastify({ https: { key: leaf.key, cert: leaf.cert } });
  app.setErrorHandler(errorHandler);
  sessionRoutes(app, { users: cloud.users });
  try {
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = (app.server.address() as { port: number }).port;
    const { Agent } = await import('undici');
    const r = await request(`https://127.0.0.1:${port}/v1/session`, {
      method: 'POST',
      headers: { authorization: cloud.auth(cloud.alice) },
      dispatcher: new Agent({ connect: { ca: leaf.ca, servername: 'localhost' } }),
    });
    await r.body.text();
    assert.equal(r.statusCode, 201);
    const flags = String(r.headers['set-cookie']).split(';').map((x) => x.trim());
    assert.ok(flags.includes('Secure'), String(r.headers['set-cookie']));
    assert.ok(flags.includes('HttpOnly') && flags.includes('SameSite=Strict'));
  } finally {
    await app.close();
    await ca.close();
  }
});

test('the console files: strict CSP and nosniff, ETag revalidation (304), and a "run npm run build" page when not built', async () => {
  const built = mkdtempSync(join(tmpdir(), `eph-console-${process.pid}-`));
  const missing = join(built, 'not-here');
  writeFileSync(join(built, 'index.html'), '<!doctype html><title>t</title><script defer src="/console/app.js"></script>');
  writeFileSync(join(built, 'app.js'), 'console.log(1)');
  writeFileSync(join(built, 'app.css'), 'body{}');
  const apps = [Fastify(), Fastify()];
  for (const a of apps) a.setErrorHandler(errorHandler);
  consoleRoutes(apps[0]!, { dir: built });
  consoleRoutes(apps[1]!, { dir: missing });
  try {
    const [b, m] = await Promise.all(apps.map(async (a) => {
      await a.listen({ host: '127.0.0.1', port: 0 });
      return `http://127.0.0.1:${(a.server.address() as { port: number }).port}`;
    }));
    for (const [path, type] of [['/', 'text/html; charset=utf-8'], ['/console/app.js', 'text/javascript; charset=utf-8'], ['/console/app.css', 'text/css; charset=utf-8']]) {
      const r = await call('GET', path!, { base: b });
      assert.equal(r.status, 200, `${path}: ${r.text}`);
      assert.equal(r.headers['content-type'], type);
      const csp = String(r.headers['content-security-policy']);
      assert.match(csp, /default-src 'none'/);
      assert.match(csp, /script-src 'self'(;|$)/);
      assert.match(csp, /frame-ancestors 'none'/);
      assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*|https?:/);
      assert.equal(r.headers['x-content-type-options'], 'nosniff');
      assert.equal(r.headers['cache-control'], 'no-cache');
      const etag = String(r.headers.etag);
      const again = await call('GET', path!, { base: b, headers: { 'if-none-match': etag } });
      assert.equal(again.status, 304);
      assert.equal(again.text, '');
    }
    assert.equal((await call('GET', '/console/other.js', { base: b })).status, 404);
    assert.equal((await call('GET', '/console/..%2Fpackage.json', { base: b })).status, 404);
    const notBuilt = await call('GET', '/', { base: m });
    assert.equal(notBuilt.status, 200);
    assert.match(String(notBuilt.headers['content-type']), /^text\/html/);
    assert.match(notBuilt.text, /npm run build/);
    assert.match(String(notBuilt.headers['content-security-policy']), /default-src 'none'/);
    assert.equal((await call('GET', '/console/app.js', { base: m })).status, 404);
  } finally {
    await Promise.all(apps.map((a) => a.close()));
    rmSync(built, { recursive: true, force: true });
  }
});

test('the cloud serves the console at / with its CSP', async () => {
  const r = await call('GET', '/');
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^text\/html/);
  assert.match(String(r.headers['content-security-policy']), /script-src 'self'/);
});
