import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'undici';
import { detectCgroups } from '../../src/runtime/process/cgroups.ts';
import { startTestCloud, procfileApp, until, type TestCloud, type TestUser } from '../helpers/cloud.ts';
import { driverIsolation } from '../helpers/driver-isolation.ts';
import { eph } from '../cli/run-eph.ts';

/**
 * Two sleep tiers, through the real gate and API: an instance idle past the
 * warm idle timeout is frozen (state `frozen` in /v1 and `eph ls`,
 * `isRunning` false in the compat API), the next request thaws it with its
 * memory intact over the gate's pooled connection; idle past the idle
 * timeout it is stopped (thawed first: the app handles its SIGTERM).
 * Frozen instances are asleep for the running quota, a thaw is a start for
 * it; past the warm-memory budget the least recently used frozen instance is
 * stopped.
 */

// Decided before any test: the cloud freezes only with cgroups (root) and a freezer controller.
const support = detectCgroups(`w${process.pid.toString(36)}`.slice(0, 6));
const skip =
  support.mode === 'off'
    ? `cgroups unavailable (warm sleep needs root and the cgroup freezer): ${support.reason}`
    : support.mode === 'v1' && !support.mounts.freezer
      ? 'no cgroup v1 freezer hierarchy mounted (the freezer controller)'
      : false;

/**
 * Counts in memory, tells the gate connection's port, holds `mib` MiB
 * touched, holds streams open until /end-streams, says when it gets SIGTERM.
 */
const app = (mib = 0): string => `
import http from 'node:http';
const held = Buffer.alloc(${mib} * 2 ** 20, 1);
const streams = new Set();
let counter = 0;
const server = http.createServer((req, res) => {
  if (req.url === '/inc') return res.end(String(++counter));
  if (req.url === '/port') return res.end(String(req.socket.remotePort));
  if (req.url === '/held') return res.end(String(held.length));
  if (req.url === '/stream') { res.writeHead(200); res.write('open\\n'); streams.add(res); return; }
  if (req.url === '/end-streams') { for (const r of streams) r.end(); streams.clear(); }
  res.end('ok');
});
// Longer than the test: the gate's pooled connection is closed by neither side while the app is frozen.
server.keepAliveTimeout = 10 * 60_000;
server.listen(Number(process.env.PORT));
process.on('SIGTERM', () => { console.log('got SIGTERM'); process.exit(0); });
`;

let cloud: TestCloud;
let zip: Buffer;

before(async () => {
  if (skip) return;
  cloud = await startTestCloud(
    { warmIdleTimeout: '1s', idleTimeout: '30m', warmMemory: '440MiB' },
    { reapIntervalMs: 100, upstreamIdleMs: 10 * 60_000, driverOptions: driverIsolation('w') },
  );
  zip = await procfileApp(app());
});
after(() => cloud?.close());

async function v1State(c: TestCloud, h: string, user?: TestUser): Promise<string> {
  const r = await c.api('GET', `/v1/instances/${h}`, user ? { user } : {});
  assert.equal(r.status, 200, r.text);
  return (r.json as { state: string }).state;
}

async function compatRunning(c: TestCloud, h: string, user?: TestUser): Promise<boolean> {
  const r = await c.api('GET', `${c.compatBase(user)}/${h}`, user ? { user } : {});
  assert.equal(r.status, 200, r.text);
  const body = r.json as Record<string, unknown>;
  assert.deepEqual(Object.keys(body).sort(), ['accessTime', 'alias', 'createdTime', 'hostname', 'imageName', 'isRunning']);
  return body.isRunning as boolean;
}

/**
 * Holds a stream open through the gate: an instance with an open connection
 * is never frozen, so what is checked meanwhile cannot race the reaper (the
 * warm idle timeout here is 1 s). Answers a function that ends it.
 */
async function keepAwake(c: TestCloud, h: string): Promise<() => Promise<void>> {
  const r = await request(`${c.gateUrl}/stream`, { headers: { host: h } });
  assert.equal(r.statusCode, 200);
  const reader = r.body[Symbol.asyncIterator]();
  assert.equal(String((await reader.next()).value), 'open\n');
  return async () => {
    assert.equal((await c.visit(h, '/end-streams')).body, 'ok');
    while (!(await reader.next()).done);
  };
}

/** Waits for `pattern` in the instance's log; with a stop that did not thaw first, the frozen app never writes it. */
const untilLogged = (c: TestCloud, h: string, pattern: RegExp): Promise<boolean> =>
  until(`${pattern} in the log of ${h}`, () => pattern.test(readLog(c, h)), 60_000, 50);

function readLog(c: TestCloud, h: string): string {
  try {
    return readFileSync(c.instances.logFile(h), 'utf8');
  } catch {
    return '';
  }
}

const untilState = (c: TestCloud, h: string, state: string, user?: TestUser): Promise<boolean> =>
  until(`${h} to be ${state}`, async () => (await v1State(c, h, user)) === state, 60_000, 50);

test('an idle instance is frozen: /v1, eph ls and the compat API say so; the next request thaws it with its memory', { skip, timeout: 120_000 }, async () => {
  const h = await cloud.publish(zip);
  assert.equal((await cloud.visit(h, '/inc')).body, '1');
  assert.equal((await cloud.visit(h, '/inc')).body, '2');
  let release = await keepAwake(cloud, h);
  assert.equal(await v1State(cloud, h), 'running');
  assert.equal(await compatRunning(cloud, h), true);
  await release();
  await untilState(cloud, h, 'frozen');
  assert.equal(await compatRunning(cloud, h), false, 'isRunning is false for a frozen instance');
  const env = { EPH_URL: cloud.apiUrl, EPH_USER: cloud.alice.id, EPH_TOKEN: cloud.alice.token };
  const ls = await eph(['ls'], { env });
  assert.equal(ls.code, 0, ls.stderr);
  assert.match(ls.stdout, new RegExp(`${h.replace(/\./g, '\\.')}\\s+frozen\\s`));
  const shown = await eph(['show', h, '--json'], { env });
  assert.equal(shown.code, 0, shown.stderr);
  assert.equal((JSON.parse(shown.stdout) as { state: string }).state, 'frozen');

  const r = await cloud.visit(h, '/inc');
  assert.equal(r.status, 200);
  assert.equal(r.body, '3', 'the counter in the app memory survived the freeze');
  release = await keepAwake(cloud, h);
  assert.equal(await v1State(cloud, h), 'running');
  assert.equal(await compatRunning(cloud, h), true);
  await release();
  // One process for the whole story: the thaw started nothing.
  const launches = readFileSync(cloud.instances.logFile(h), 'utf8').split('\n').filter((l) => / starting (in namespace|on 127\.0\.0\.1)/.test(l));
  assert.equal(launches.length, 1);
  await cloud.instances.stop(h);
});

test("the gate's pooled keep-alive connection to the instance is held across the freeze and carries the request after the thaw", { skip, timeout: 120_000 }, async () => {
  const h = await cloud.publish(zip);
  await cloud.visit(h, '/');
  const before = (await cloud.visit(h, '/port')).body;
  // The pooled connection is reused while running (the baseline of what is checked after the thaw).
  assert.equal((await cloud.visit(h, '/port')).body, before);
  await untilState(cloud, h, 'frozen');
  const after = await cloud.visit(h, '/port');
  assert.equal(after.status, 200);
  assert.equal(after.body, before, 'the app saw the same gate connection (same source port) after the thaw');
  await cloud.instances.stop(h);
});

test('a thaw obeys the running quota like a start: refused while another instance of the user runs, served once it stops', { skip, timeout: 120_000 }, async () => {
  const bob = await cloud.addUser('bob', 'free');
  const a = await cloud.publish(zip, { user: bob });
  const b = await cloud.publish(zip, { user: bob });
  assert.equal((await cloud.visit(a, '/inc')).body, '1');
  await untilState(cloud, a, 'frozen', bob);
  // The frozen instance is asleep for the quota: another one may start (held awake by an open stream).
  const release = await keepAwake(cloud, b);
  assert.equal(await v1State(cloud, b, bob), 'running');
  const refused = await cloud.visit(a, '/inc');
  assert.equal(refused.status, 503, refused.body);
  assert.ok(refused.headers['retry-after'], 'Retry-After is set');
  assert.equal(await v1State(cloud, a, bob), 'frozen', 'the refused instance stays frozen');
  await release();
  await cloud.instances.stop(b);
  const served = await cloud.visit(a, '/inc');
  assert.equal(served.status, 200);
  assert.equal(served.body, '2', 'thawed with its memory once the slot was free');
  await cloud.instances.stop(a);
});

test('past --warm-memory the least recently used frozen instance is stopped; the other stays frozen', { skip, timeout: 120_000 }, async () => {
  // Each holds 256 MiB (plus the runtime's own): one frozen fits the 440 MiB budget, two do not.
  const big = await procfileApp(app(256));
  const older = await cloud.publish(big);
  const newer = await cloud.publish(big);
  assert.equal((await cloud.visit(older, '/held')).body, String(256 * 2 ** 20));
  await untilState(cloud, older, 'frozen');
  assert.equal((await cloud.visit(newer, '/inc')).body, '1');
  await untilState(cloud, newer, 'frozen');
  await untilState(cloud, older, 'asleep');
  assert.equal(await v1State(cloud, newer), 'frozen', 'the most recently used frozen instance is kept');
  // The state says asleep as soon as the stop begins: the app's own line comes once it got its signal.
  await untilLogged(cloud, older, /got SIGTERM/);
  // The kept one still has its memory; the stopped one starts afresh.
  assert.equal((await cloud.visit(newer, '/inc')).body, '2');
  assert.equal((await cloud.visit(older, '/inc')).body, '1');
  await cloud.instances.stop(newer);
  await cloud.instances.stop(older);
});

test('idle past the idle timeout, a frozen instance is stopped (thawed first: it handles SIGTERM); the next request starts it', { skip, timeout: 120_000 }, async () => {
  const short = await startTestCloud({ warmIdleTimeout: '1s', idleTimeout: '4s' }, { reapIntervalMs: 100, driverOptions: driverIsolation('w') });
  try {
    const h = await short.publish(zip);
    assert.equal((await short.visit(h, '/inc')).body, '1');
    await untilState(short, h, 'frozen');
    await untilState(short, h, 'asleep');
    assert.equal(await compatRunning(short, h), false);
    await untilLogged(short, h, /got SIGTERM/);
    const r = await short.visit(h, '/inc');
    assert.equal(r.status, 200);
    assert.equal(r.body, '1', 'a stopped instance starts afresh');
  } finally {
    await short.close();
  }
});

test('an open stream keeps an instance awake past the warm idle timeout; it is frozen once the stream ends', { skip, timeout: 120_000 }, async () => {
  const h = await cloud.publish(zip);
  const release = await keepAwake(cloud, h);
  // Not a synchronisation: three warm idle timeouts, during which an idle instance would have been frozen.
  await new Promise((res) => setTimeout(res, 3000));
  assert.equal(await v1State(cloud, h), 'running', 'an open connection keeps it awake');
  await release();
  await untilState(cloud, h, 'frozen');
  assert.equal((await cloud.visit(h, '/')).body, 'ok');
  await cloud.instances.stop(h);
});
