import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { GateRoute, RouteChange } from '../../src/core/types.ts';
import { startTestCloud, type TestCloud } from '../helpers/cloud.ts';
import { versionApp } from './gate-apps.ts';

/**
 * The production use case through the whole cloud: real instances (Node
 * Procfile apps answering their version), routes changed through /v1,
 * visitors through the real gate.
 */
let cloud: TestCloud;
let v1: string;
let v2: string;
let broken: string;
let aliceName: string;

before(async () => {
  // A short health deadline: the refused switch below waits it out.
  cloud = await startTestCloud({}, { healthTimeoutMs: 2500 });
  [v1, v2, broken] = await Promise.all([
    versionApp('v1').then((z) => cloud.publish(z, { name: 'v1.zip' })),
    versionApp('v2').then((z) => cloud.publish(z, { name: 'v2.zip' })),
    versionApp('broken', { status: 500 }).then((z) => cloud.publish(z, { name: 'broken.zip' })),
  ]);
  aliceName = (await cloud.store.getUser(cloud.alice.id))!.name;
});
after(() => cloud?.close());

const route = (domain: string) => `/v1/gate/routes/${domain}`;
const body = async (host: string) => {
  const r = await cloud.visit(host);
  assert.equal(r.status, 200, `${host}: ${r.status} ${r.body}`);
  return r.body;
};

test('map www→v1 and beta→v2, promote beta onto www, roll back; the history says who, when, from and to', async () => {
  const t0 = Date.now();
  const www = await cloud.api('PUT', route('www.example.test'), { body: { hostname: v1 } });
  assert.equal(www.status, 200, www.text);
  const beta = await cloud.api('PUT', route('beta.example.test'), { body: { hostname: v2 } });
  assert.equal(beta.status, 200, beta.text);
  assert.equal(await body('www.example.test'), 'v1');
  assert.equal(await body('beta.example.test'), 'v2');

  const promoted = await cloud.api('POST', '/v1/gate/promote', { body: { from: 'beta.example.test', to: 'www.example.test' } });
  assert.equal(promoted.status, 200, promoted.text);
  assert.deepEqual((promoted.json as GateRoute).targets, [{ hostname: v2, weight: 100 }]);
  assert.equal(await body('www.example.test'), 'v2');
  assert.equal(await body('beta.example.test'), 'v2', 'beta keeps serving the candidate');

  const back = await cloud.api('POST', `${route('www.example.test')}/rollback`);
  assert.equal(back.status, 200, back.text);
  assert.equal(await body('www.example.test'), 'v1');

  const h = await cloud.api('GET', `${route('www.example.test')}/history`);
  assert.equal(h.status, 200);
  const history = (h.json as { history: RouteChange[] }).history;
  assert.deepEqual(
    history.map((c) => [c.action, c.by, c.from.map((t) => t.hostname), c.to.map((t) => t.hostname)]),
    [
      ['rollback', aliceName, [v2], [v1]],
      ['promote', aliceName, [v1], [v2]],
      ['map', aliceName, [], [v1]],
    ],
  );
  for (const c of history) assert.ok(c.at >= t0 - 1000 && c.at <= Date.now(), `at ${c.at} is the time of the change`);
  assert.ok(history[0]!.at >= history[1]!.at && history[1]!.at >= history[2]!.at);
});

test('a health-gated map to an instance answering 500 is refused with the reason and changes nothing', async () => {
  const before = await cloud.api('GET', route('www.example.test'));
  const historyBefore = (await cloud.api('GET', `${route('www.example.test')}/history`)).json;
  const r = await cloud.api('PUT', route('www.example.test'), { body: { hostname: broken } });
  assert.equal(r.status, 409, r.text);
  const err = (r.json as { error: { code: string; message: string } }).error;
  assert.equal(err.code, 'HEALTH_CHECK_FAILED');
  assert.match(err.message, new RegExp(`${broken} failed the health check of www\\.example\\.test: GET / .*500.*www\\.example\\.test is unchanged`));
  assert.deepEqual((await cloud.api('GET', route('www.example.test'))).json, before.json);
  assert.deepEqual((await cloud.api('GET', `${route('www.example.test')}/history`)).json, historyBefore);
  assert.equal(await body('www.example.test'), 'v1');
  // The broken instance really was woken and asked: it answers 500 when visited directly.
  assert.equal((await cloud.visit(broken)).status, 500);
});

test('a gate domain that is an alias: 409 (own alias names the instance; another user\'s does not)', async () => {
  const alias = await cloud.api('PATCH', `/v1/instances/${v1}`, { body: { alias: 'app.example.test' } });
  assert.equal(alias.status, 200, alias.text);
  const own = await cloud.api('PUT', route('app.example.test'), { body: { hostname: v2 } });
  assert.equal(own.status, 409);
  assert.equal((own.json as { error: { message: string } }).error.message, `app.example.test is an alias of ${v1}; clear it first`);
  assert.equal(await body('app.example.test'), 'v1', 'the alias still routes');

  const bob = await cloud.addUser('bob');
  const bobs = await cloud.publish(await versionApp('bob'), { user: bob });
  assert.equal((await cloud.api('PATCH', `/v1/instances/${bobs}`, { user: bob, body: { alias: 'bobs.example.test' } })).status, 200);
  const theirs = await cloud.api('PUT', route('bobs.example.test'), { body: { hostname: v2, skipHealth: true } });
  assert.equal(theirs.status, 409);
  assert.doesNotMatch(theirs.text, new RegExp(bobs));
  // And the other way round, as before: an alias that is a gate domain is refused.
  const taken = await cloud.api('PATCH', `/v1/instances/${bobs}`, { user: bob, body: { alias: 'www.example.test' } });
  assert.equal(taken.status, 409);
});

test('canary: a 90/10 split through the real gate, sticky per visitor by cookie', async () => {
  const split = await cloud.api('PUT', route('canary.example.test'), {
    body: { targets: [{ hostname: v1, weight: 90 }, { hostname: v2, weight: 10 }] },
  });
  assert.equal(split.status, 200, split.text);
  const counts: Record<string, number> = { v1: 0, v2: 0 };
  const cookies: Record<string, string> = {};
  const N = 300;
  for (let i = 0; i < N; i++) {
    const r = await cloud.visit('canary.example.test');
    assert.equal(r.status, 200);
    counts[r.body] = (counts[r.body] ?? 0) + 1;
    const set = String(r.headers['set-cookie'] ?? '');
    const m = /eph_route=([^;]+)/.exec(set);
    assert.ok(m, 'a fresh visitor is given the sticky cookie');
    assert.equal(m[1], r.body === 'v1' ? v1 : v2, 'the cookie names the instance that answered');
    cookies[r.body] = m[0];
  }
  // Binomial(300, 0.1): mean 30, sd 5.2; [10, 60] is beyond 3.8 sd on each side.
  assert.ok(counts.v2! >= 10 && counts.v2! <= 60, `v2 got ${counts.v2} of ${N}`);
  assert.equal(counts.v1! + counts.v2!, N);
  for (const v of ['v1', 'v2']) {
    for (let i = 0; i < 30; i++) {
      const r = await cloud.visit('canary.example.test', '/', { headers: { cookie: `theme=dark; ${cookies[v]!}` } });
      assert.equal(r.body, v, `a visitor with ${cookies[v]} stays on ${v}`);
      assert.equal(r.headers['set-cookie'], undefined, 'no new cookie while the pick holds');
    }
  }
});
