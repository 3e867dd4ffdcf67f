import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { DOMAIN, H1, H2, rawExchange, request, startApp, startGate, type App, type TestGate } from './gate.fixtures.ts';

let a: App;
let b: App;
let g: TestGate;

before(async () => {
  a = await startApp();
  b = await startApp((req, res) => res.end(`b ${req.url}`));
  g = await startGate({}, [H1, H2]);
  g.backend.running.set(H1, a.upstream);
  g.backend.running.set(H2, b.upstream);
  g.table.set(`www.example.test`, [{ hostname: H2, weight: 1 }]);
});

after(async () => {
  await g.gate.close(1000);
  await a.close();
  await b.close();
});

test('routes each request by its Host to the instance behind it', async () => {
  const r1 = await request(g.port, { host: H1, path: '/one' });
  assert.equal(r1.status, 200);
  assert.equal(r1.body, 'ok GET /one 0');
  const r2 = await request(g.port, { host: H2, path: '/two' });
  assert.equal(r2.body, 'b /two');
});

test('routes an alias or gate domain to its instance', async () => {
  const r = await request(g.port, { host: 'www.example.test', path: '/alias' });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'b /alias');
});

test('normalizes Host: case, trailing dot and port do not matter', async () => {
  for (const host of [H1.toUpperCase(), `${H1}.`, `${H1}:8080`, `${H1.toUpperCase()}.:80`]) {
    const r = await request(g.port, { host, path: '/n' });
    assert.equal(r.status, 200, host);
    assert.equal(r.body, 'ok GET /n 0', host);
  }
});

test('an absolute-form target wins over the Host header (RFC 9112 §3.2.2) and reaches the app in origin-form', async () => {
  const text = await rawExchange(g.port, `GET http://${H2}/abs?q=1 HTTP/1.1\r\nHost: ${H1}\r\nConnection: close\r\n\r\n`);
  assert.match(text, /^HTTP\/1\.1 200 /);
  assert.match(text, /b \/abs\?q=1$/);
});

test('an unknown host gets a 404 page and the connection stays usable', async () => {
  const text = await rawExchange(
    g.port,
    `GET / HTTP/1.1\r\nHost: nowhere.${DOMAIN}\r\n\r\nGET /after HTTP/1.1\r\nHost: ${H1}\r\nConnection: close\r\n\r\n`,
  );
  assert.match(text, /^HTTP\/1\.1 404 [^\r]*\r\n/);
  assert.match(text, /Content-Type: text\/html/);
  assert.match(text, new RegExp(`no application at nowhere\\.${DOMAIN.replace('.', '\\.')}`));
  assert.match(text, /HTTP\/1\.1 200 [\s\S]*ok GET \/after 0$/);
});

test('touches the instance on every request', async () => {
  const before = g.backend.touches.get(H1) ?? 0;
  await request(g.port, { host: H1 });
  await request(g.port, { host: H1 });
  assert.equal(g.backend.touches.get(H1), before + 2);
});

test('sets X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host itself; the visitor\'s are replaced, not appended to', async () => {
  a.seen.length = 0;
  await request(g.port, {
    host: `${H1}:8080`,
    path: '/xf',
    headers: { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example' },
  });
  const h = a.seen[0]!.headers;
  assert.equal(h['x-forwarded-for'], '127.0.0.1');
  assert.equal(h['x-forwarded-proto'], 'http');
  assert.equal(h['x-forwarded-host'], `${H1}:8080`);
  assert.equal(h.host, `${H1}:8080`);
});
