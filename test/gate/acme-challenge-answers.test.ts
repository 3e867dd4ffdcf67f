/**
 * The gate's HTTP-01 hook on a real gate over loopback: any host, before
 * routing and before an HTTPS redirect, from memory or (another replica's
 * order) from the store; malformed or unknown tokens are 404 and never reach
 * the app; keep-alive survives an answer; without the hook the path is
 * routed like any other.
 */
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { after, before, test } from 'node:test';
import type { AcmeChallengeAnswers } from '../../src/gate/acme-challenge.ts';
import { H1, rawExchange, request, startApp, startGate, type App, type TestGate } from './gate.fixtures.ts';

let app: App;
let g: TestGate;
let plain: TestGate;
const lookups: string[] = [];
const answers: AcmeChallengeAnswers = {
  answer: (token) => (token === 'memTok' ? 'memTok.thumb' : null),
  lookup: async (token) => {
    lookups.push(token);
    // An order another replica started: the answer is in the store only, a moment away.
    await new Promise((r) => setImmediate(r));
    return token === 'storeTok' ? 'storeTok.thumb' : null;
  },
};

before(async () => {
  app = await startApp();
  g = await startGate({ acmeChallenge: answers });
  g.backend.running.set(H1, app.upstream);
  g.table.set('www.example.test', [{ hostname: H1, weight: 1 }], true);
  plain = await startGate();
  plain.backend.running.set(H1, app.upstream);
});
after(async () => {
  await g.gate.close(1000);
  await plain.gate.close(1000);
  await app.close();
});

const path = (t: string) => `/.well-known/acme-challenge/${t}`;

test('a token known in memory is answered for any host, routed or not, and a route\'s HTTPS redirect does not apply', async () => {
  for (const host of ['www.example.test', 'unknown.example.test', H1]) {
    const r = await request(g.port, { host, path: path('memTok') });
    assert.equal(r.status, 200, host);
    assert.equal(r.body, 'memTok.thumb');
    assert.match(String(r.headers['content-type']), /^text\/plain/);
  }
  assert.equal(app.seen.length, 0, 'the app saw nothing');
});

test('a token only in the store (another replica) is looked up; unknown and malformed tokens are 404', async () => {
  const r = await request(g.port, { host: 'www.example.test', path: path('storeTok') });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'storeTok.thumb');
  assert.ok(lookups.includes('storeTok'));
  const unknown = await request(g.port, { host: 'www.example.test', path: path('nope') });
  assert.equal(unknown.status, 404);
  const before = lookups.length;
  for (const bad of ['a/b', 'a.b', '', '%2e%2e', 'x'.repeat(300)]) {
    const res = await request(g.port, { host: H1, path: path(bad) });
    assert.equal(res.status, 404, bad);
  }
  assert.equal(lookups.length, before, 'malformed tokens never reach the store');
  assert.equal(app.seen.length, 0);
});

test('HEAD gets the head only; keep-alive carries on to the app afterwards', async () => {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const head = await request(g.port, { host: H1, method: 'HEAD', path: path('memTok'), agent });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String('memTok.thumb'.length));
    assert.equal(head.body, '');
    const stored = await request(g.port, { host: H1, path: path('storeTok'), agent });
    assert.equal(stored.body, 'storeTok.thumb');
    const next = await request(g.port, { host: H1, path: '/after', agent });
    assert.equal(next.status, 200);
    assert.equal(next.body, 'ok GET /after 0');
  } finally {
    agent.destroy();
  }
});

test('two pipelined challenge requests on one connection are both answered, in order', async () => {
  const text = await rawExchange(
    g.port,
    `GET ${path('storeTok')} HTTP/1.1\r\nHost: a.example.test\r\n\r\nGET ${path('memTok')} HTTP/1.1\r\nHost: a.example.test\r\nConnection: close\r\n\r\n`,
    10_000,
  );
  const bodies = text.split('\r\n\r\n').slice(1).map((b) => b.split('HTTP/1.1')[0]);
  assert.deepEqual(bodies, ['storeTok.thumb', 'memTok.thumb']);
});

test('without the hook (automatic HTTPS off) the path is an ordinary one: routed to the app', async () => {
  const r = await request(plain.port, { host: H1, path: path('memTok') });
  assert.equal(r.status, 200);
  assert.equal(r.body, `ok GET ${path('memTok')} 0`);
});
