import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import type { GateRoute, Instance, RouteChange } from '../../src/core/types.ts';
import { startCloudFixture, type CloudFixture } from './cloud.fixtures.ts';
import { eph } from './run-eph.ts';

// One real cloud for the file; the tests run in order over its routes.
let fx: CloudFixture;
let stable: Instance;
let candidate: Instance;
const cleanups: (() => Promise<void>)[] = [];
before(async () => {
  fx = await startCloudFixture((fn) => cleanups.push(fn));
  stable = await fx.publish('stable');
  candidate = await fx.publish('candidate');
});
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

const hosts = (r: GateRoute) => r.targets.map((t) => t.hostname);

test('gate map health-checks the target (waking it) and the gate then serves the domain', async () => {
  const [www, beta] = await Promise.all([
    eph(['gate', 'map', 'www.example.org', stable.hostname, '--json', '--health-path', '/health'], { env: fx.env, timeoutMs: 60_000 }),
    eph(['gate', 'map', 'beta.example.org', candidate.hostname], { env: fx.env, timeoutMs: 60_000 }),
  ]);
  assert.equal(www.code, 0, www.stderr);
  const route = JSON.parse(www.stdout) as GateRoute;
  assert.equal(route.domain, 'www.example.org');
  assert.deepEqual(hosts(route), [stable.hostname]);
  assert.equal(route.healthPath, '/health');
  assert.equal(beta.code, 0, beta.stderr);
  assert.equal(beta.stdout, `beta.example.org → ${candidate.hostname}\n`);
  const res = await fx.viaGate('www.example.org');
  assert.equal(res.status, 200);
  assert.equal(res.body, 'hello from node-app\n');
});

test('gate promote points www at beta, rollback points it back', async () => {
  const promoted = await eph(['gate', 'promote', 'beta.example.org', 'www.example.org', '--json'], { env: fx.env, timeoutMs: 60_000 });
  assert.equal(promoted.code, 0, promoted.stderr);
  assert.deepEqual(hosts(JSON.parse(promoted.stdout) as GateRoute), [candidate.hostname]);
  assert.deepEqual(hosts(await fx.cloud.routes.get(fx.user.id, 'www.example.org')), [candidate.hostname]);
  const back = await eph(['gate', 'rollback', 'www.example.org'], { env: fx.env, timeoutMs: 60_000 });
  assert.equal(back.code, 0, back.stderr);
  assert.equal(back.stdout, `www.example.org → ${stable.hostname}\n`);
});

test('gate split sends weights; gate ls shows them', async () => {
  const split = await eph(['gate', 'split', 'www.example.org', `${stable.hostname}=90`, `${candidate.hostname}=10`, '--json'], {
    env: fx.env,
    timeoutMs: 60_000,
  });
  assert.equal(split.code, 0, split.stderr);
  assert.deepEqual((JSON.parse(split.stdout) as GateRoute).targets, [
    { hostname: stable.hostname, weight: 90 },
    { hostname: candidate.hostname, weight: 10 },
  ]);
  const ls = await eph(['gate', 'ls'], { env: fx.env });
  assert.equal(ls.code, 0, ls.stderr);
  const lines = ls.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^DOMAIN\s+TARGETS\s+HEALTH\s+HTTPS\s+UPDATED$/);
  assert.ok(lines.some((l) => l.startsWith('www.example.org') && l.includes(`${stable.hostname}=90 ${candidate.hostname}=10`)), ls.stdout);
  assert.ok(lines.some((l) => l.startsWith('beta.example.org') && l.includes(candidate.hostname)), ls.stdout);
});

test('gate history lists every change, newest first', async () => {
  const r = await eph(['gate', 'history', 'www.example.org', '--json'], { env: fx.env });
  assert.equal(r.code, 0, r.stderr);
  const { history } = JSON.parse(r.stdout) as { history: RouteChange[] };
  assert.deepEqual(
    history.map((c) => c.action),
    ['split', 'rollback', 'promote', 'map'],
  );
  assert.equal(history[0]!.by, 'alice');
  const human = await eph(['gate', 'history', 'www.example.org'], { env: fx.env });
  assert.match(human.stdout.split('\n')[0]!, /^WHEN\s+BY\s+ACTION\s+FROM\s+TO$/);
});

test("gate unmap removes the route; a claim on another user's domain fails with the API's reason", async () => {
  const { user: bob, token } = await fx.cloud.users.add('bob', 'free');
  const bobs = await fx.cloud.instances.publish(bob, Readable.from([fx.appZipBytes]), 'bob-app');
  const bobEnv = { ...fx.env, EPH_USER: bob.id, EPH_TOKEN: token };
  const claim = await eph(['gate', 'map', 'beta.example.org', bobs.hostname, '--skip-health'], { env: bobEnv });
  assert.equal(claim.code, 1);
  assert.match(claim.stderr, /^eph: [^\n]+\n$/);
  assert.deepEqual(hosts(await fx.cloud.routes.get(fx.user.id, 'beta.example.org')), [candidate.hostname], 'unchanged');

  const unmap = await eph(['gate', 'unmap', 'beta.example.org', '--json'], { env: fx.env });
  assert.equal(unmap.code, 0, unmap.stderr);
  assert.deepEqual(JSON.parse(unmap.stdout), { unmapped: 'beta.example.org' });
  const gone = await eph(['gate', 'show', 'beta.example.org'], { env: fx.env });
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /^eph: [^\n]*not found[^\n]*\n$/);
});
