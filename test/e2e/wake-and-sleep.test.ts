import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { buildZip } from '../helpers/archives.ts';
import { startTestCloud, until, type TestCloud } from '../helpers/cloud.ts';

/**
 * Instances start asleep, wake on the first visitor request (one shared start
 * however many requests wait), are stopped by the idle reaper after the idle
 * timeout, and wake again on the next request.
 */
let cloud: TestCloud;
let zip: Buffer;

before(async () => {
  cloud = await startTestCloud({ idleTimeout: '2s' }, { reapIntervalMs: 200 });
  zip = await buildZip('examples/node-app');
});
after(() => cloud?.close());

const show = async (h: string) => {
  const r = await cloud.api('GET', `${cloud.compatBase()}/${h}`);
  assert.equal(r.status, 200, r.text);
  return r.json as { isRunning: boolean; accessTime: string };
};

/**
 * Process launches of an instance, counted from the line the process driver
 * writes to the instance log at each launch (below every layer that shares wakes).
 */
const launches = (h: string): number => {
  let text = '';
  try {
    text = readFileSync(cloud.instances.logFile(h), 'utf8');
  } catch {
    return 0;
  }
  return text.split('\n').filter((l) => /^\[eph\] \S+ starting (in namespace|on 127\.0\.0\.1)/.test(l)).length;
};

test('an instance is published asleep; the first gate request wakes it and is served', async () => {
  const h = await cloud.publish(zip);
  assert.equal((await show(h)).isRunning, false);
  assert.equal(launches(h), 0, 'publishing starts nothing');
  const r = await cloud.visit(h, '/');
  assert.equal(r.status, 200);
  assert.equal(r.body, 'hello from node-app\n');
  assert.equal((await show(h)).isRunning, true);
  assert.equal(launches(h), 1);
  await cloud.instances.stop(h);
});

test('20 concurrent requests during a wake share one start and all get 200', async () => {
  const h = await cloud.publish(zip);
  assert.equal((await show(h)).isRunning, false);
  const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => cloud.visit(h, `/req-${i}`)));
  assert.deepEqual(
    answers.map((a) => a.status),
    Array(20).fill(200),
  );
  for (const a of answers) assert.equal(a.body, 'hello from node-app\n');
  assert.equal(launches(h), 1, 'one process launch');
  await cloud.instances.stop(h);
});

test('access time advances with requests', async () => {
  const h = await cloud.publish(zip);
  const published = Date.parse((await show(h)).accessTime);
  await cloud.visit(h);
  const woken = Date.parse((await show(h)).accessTime);
  assert.ok(woken > published, `after the wake: ${woken} > ${published}`);
  // Requests to a running instance move it too (a millisecond clock must tick first).
  await until('the clock to tick', () => Date.now() > woken + 5, 1000, 5);
  await cloud.visit(h, '/again');
  const later = Date.parse((await show(h)).accessTime);
  assert.ok(later > woken, `after another request: ${later} > ${woken}`);
  await cloud.instances.stop(h);
});

test('with --idle-timeout 2s the reaper stops an idle instance; the next request wakes it again', async () => {
  const h = await cloud.publish(zip);
  assert.equal((await cloud.visit(h)).status, 200);
  const lastRequest = Date.now();
  assert.equal((await show(h)).isRunning, true);
  await until('the idle reaper to stop it', async () => !(await show(h)).isRunning, 8000, 100);
  const idleFor = Date.now() - lastRequest;
  assert.ok(idleFor >= 1900, `stopped after ${idleFor} ms idle, before the 2 s timeout`);
  assert.equal(cloud.instances.upstream(h), null);
  await until('the stopped process to be gone', () => !cloud.driver.isRunning(h), 5000);

  const again = await cloud.visit(h, '/back');
  assert.equal(again.status, 200);
  assert.equal(again.body, 'hello from node-app\n');
  assert.equal((await show(h)).isRunning, true);
  assert.equal(launches(h), 2);
  await cloud.instances.stop(h);
});

test('requests keep a busy instance awake past the idle timeout', async () => {
  const h = await cloud.publish(zip);
  const until3s = Date.now() + 3000;
  while (Date.now() < until3s) {
    const r = await cloud.visit(h, '/busy');
    assert.equal(r.status, 200);
    await new Promise((r) => setTimeout(r, 300));
  }
  assert.equal(launches(h), 1, 'never stopped and restarted while in use');
  await cloud.instances.stop(h);
});
