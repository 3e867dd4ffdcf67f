import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { buildZip } from '../helpers/archives.ts';
import { startTestCloud, type TestCloud, type TestUser } from '../helpers/cloud.ts';

/**
 * Plans limit concurrently running instances: an explicit start over the
 * limit is a 409 naming plan and limit, a visitor's wake over it is a 503
 * page with Retry-After, and publishing is never limited.
 */
let cloud: TestCloud;
let zip: Buffer;
let bob: TestUser;
let first: string;
let second: string;

before(async () => {
  cloud = await startTestCloud({ idleTimeout: '30m' });
  zip = await buildZip('examples/node-app');
  bob = await cloud.addUser('bob', 'free');
  first = await cloud.publish(zip, { user: bob });
  second = await cloud.publish(zip, { user: bob });
});
after(() => cloud?.close());

const running = async (h: string): Promise<boolean> => {
  const r = await cloud.api('GET', `${cloud.compatBase(bob)}/${h}/isRunning`, { user: bob });
  assert.equal(r.status, 200, r.text);
  return r.json as boolean;
};

type ErrorBody = { error: { code: string; message: string } };

test('plan free: the first explicit start succeeds, the second is 409 naming the plan and the limit (compat PUT isRunning)', async () => {
  const on = await cloud.api('PUT', `${cloud.compatBase(bob)}/${first}/isRunning`, { user: bob, body: true });
  assert.equal(on.status, 200, on.text);
  assert.equal(on.json, true);
  assert.equal(await running(first), true);

  const over = await cloud.api('PUT', `${cloud.compatBase(bob)}/${second}/isRunning`, { user: bob, body: true });
  assert.equal(over.status, 409, over.text);
  const err = (over.json as ErrorBody).error;
  assert.equal(err.code, 'QUOTA_EXCEEDED');
  assert.match(err.message, /plan 'free'/);
  assert.match(err.message, /\b1 running instance\b/);
  assert.equal(await running(second), false);
  assert.equal(await running(first), true, 'the running one is untouched');
});

test('plan free: /v1 start of a second instance is 409 QUOTA_EXCEEDED with the same message', async () => {
  const over = await cloud.api('POST', `/v1/instances/${second}/start`, { user: bob });
  assert.equal(over.status, 409, over.text);
  const err = (over.json as ErrorBody).error;
  assert.equal(err.code, 'QUOTA_EXCEEDED');
  assert.match(err.message, /plan 'free' allows 1 running instance/);
  const shown = await cloud.api('GET', `/v1/instances/${second}`, { user: bob });
  assert.equal((shown.json as { isRunning: boolean }).isRunning, false);
});

test("a visitor's wake over the limit gets a 503 page with Retry-After and nothing starts", async () => {
  const r = await cloud.visit(second, '/', { headers: { accept: 'text/html' } });
  assert.equal(r.status, 503);
  const retryAfter = Number(r.headers['retry-after']);
  assert.ok(Number.isInteger(retryAfter) && retryAfter > 0, `Retry-After: ${String(r.headers['retry-after'])}`);
  assert.match(String(r.headers['content-type']), /text\/html/);
  assert.match(r.body, new RegExp(`${second.replace(/\./g, '\\.')} cannot start now`));
  assert.match(r.body, /plan &#39;free&#39; allows 1 running instance/);
  assert.equal(await running(second), false);
  assert.equal(cloud.driver.isRunning(second), false);
});

test('the running instance is still served while the other is refused', async () => {
  const r = await cloud.visit(first);
  assert.equal(r.status, 200);
  assert.equal(r.body, 'hello from node-app\n');
});

test('publishing is not limited by the running quota; new instances start asleep', async () => {
  const more = await Promise.all([cloud.publish(zip, { user: bob }), cloud.publish(zip, { user: bob })]);
  for (const h of more) assert.equal(await running(h), false);
  const list = await cloud.api('GET', cloud.compatBase(bob), { user: bob });
  const hosts = (list.json as { ephemerics: { hostname: string }[] }).ephemerics.map((e) => e.hostname);
  for (const h of [first, second, ...more]) assert.ok(hosts.includes(h), `${h} is listed`);
});

test('after stopping the running one, a visitor wakes the other within the limit', async () => {
  const off = await cloud.api('PUT', `${cloud.compatBase(bob)}/${first}/isRunning`, { user: bob, body: false });
  assert.equal(off.status, 200, off.text);
  const r = await cloud.visit(second);
  assert.equal(r.status, 200);
  assert.equal(await running(second), true);
  assert.equal(await running(first), false);
});

test('the limit is per user: a standard user starts several while bob is at his limit', async () => {
  const a = await cloud.publish(zip);
  const b = await cloud.publish(zip);
  for (const h of [a, b]) {
    const r = await cloud.api('POST', `/v1/instances/${h}/start`);
    assert.equal(r.status, 200, r.text);
    assert.equal((r.json as { isRunning: boolean }).isRunning, true);
  }
});

test('concurrent wakes of two instances of a free user: exactly one starts, the other gets 503', async () => {
  const carol = await cloud.addUser('carol', 'free');
  const [x, y] = [await cloud.publish(zip, { user: carol }), await cloud.publish(zip, { user: carol })];
  const answers = await Promise.all([cloud.visit(x), cloud.visit(y)]);
  assert.deepEqual(answers.map((a) => a.status).sort(), [200, 503]);
  const runningNow = [x, y].filter((h) => cloud.driver.isRunning(h));
  assert.equal(runningNow.length, 1);
});
