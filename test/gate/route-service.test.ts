import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EphError } from '../../src/core/errors.ts';
import type { GateRoute } from '../../src/core/types.ts';
import { HttpHealthCheck } from '../../src/gate/health-check.ts';
import { RouteService } from '../../src/gate/route-service.ts';
import { MemoryRouteStore } from '../../src/store/route-store.ts';
import { RoutingTable } from '../../src/gate/routing-table.ts';
import { answering, broken, startUpstream, TestInstances, type Upstream } from './route-service.fixtures.ts';

const DOMAIN = 'eph.test';
const HEALTH_TIMEOUT = 700;
const host = (x: string): string => `eph-${x.padStart(8, '0')}.${DOMAIN}`;
const [HA, HB, HC, HBROKEN, HHANG, HPATH, HOTHER] = ['a', 'b', 'c', 'bad', 'ee', 'f', 'd0'].map(host) as [
  string, string, string, string, string, string, string,
];
const ALICE = 'alice-id';
const BOB = 'bob-id';

const ups: Record<string, Upstream> = {};

before(async () => {
  ups.a = await startUpstream(answering('A'));
  ups.b = await startUpstream(answering('B'));
  ups.c = await startUpstream(answering('C'));
  ups.broken = await startUpstream(broken);
  ups.hang = await startUpstream(); // accepts, never answers
  ups.path = await startUpstream((req, res) => {
    res.statusCode = req.url === '/health' ? 200 : 503;
    res.end();
  });
});

after(async () => {
  await Promise.all(Object.values(ups).map((u) => u.close()));
});

function world() {
  const store = new MemoryRouteStore();
  const table = new RoutingTable();
  const instances = new TestInstances();
  instances.add(HA, ALICE, ups.a!.address);
  instances.add(HB, ALICE, ups.b!.address);
  instances.add(HC, ALICE, ups.c!.address);
  instances.add(HBROKEN, ALICE, ups.broken!.address);
  instances.add(HHANG, ALICE, ups.hang!.address);
  instances.add(HPATH, ALICE, ups.path!.address);
  instances.add(HOTHER, BOB, ups.c!.address);
  let now = 1_700_000_000_000;
  const service = new RouteService({
    store,
    table,
    backend: instances,
    instances,
    reservedDomain: DOMAIN,
    healthTimeoutMs: HEALTH_TIMEOUT,
    healthCheck: new HttpHealthCheck({ retryDelayMs: 50, maxRetryDelayMs: 200 }),
    clock: { now: () => (now += 1000) },
  });
  /** Everything observable, to prove that a refused change changed nothing. */
  const snapshot = async () => ({
    routes: await store.listRoutes(),
    history: await Promise.all((await store.listRoutes()).map((r) => store.history(r.domain))),
    table: [...table.hosts()].sort().map((h) => [h, table.get(h)]),
    version: table.version,
  });
  return { store, table, instances, service, snapshot };
}

async function rejectsWith(p: Promise<unknown>, code: string, status: number, re?: RegExp): Promise<EphError> {
  let err: unknown;
  await p.then(
    () => assert.fail(`expected ${code}, got success`),
    (e: unknown) => (err = e),
  );
  assert.ok(err instanceof EphError, `expected an EphError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  assert.equal(err.status, status);
  if (re) assert.match(err.message, re);
  return err;
}

const targetsOf = (table: RoutingTable, d: string) => table.get(d)?.targets.map((t) => t.hostname);

describe('map', () => {
  test('creates the route, records it and updates the table after a real health check', async () => {
    const w = world();
    const r = await w.service.map(ALICE, 'WWW.Example.org.', HA, { by: 'alice' });
    assert.equal(r.domain, 'www.example.org');
    assert.deepEqual(r.targets, [{ hostname: HA, weight: 100 }]);
    assert.equal(r.healthPath, '/');
    assert.deepEqual(await w.store.getRoute('www.example.org'), r);
    assert.deepEqual(targetsOf(w.table, 'www.example.org'), [HA]);
    assert.ok(ups.a!.seen.includes('www.example.org /'), `health GET with the domain as Host; saw ${ups.a!.seen.join(', ')}`);
    assert.deepEqual(w.instances.wakes, [HA]);
    const h = await w.service.history(ALICE, 'www.example.org');
    assert.deepEqual(h, [{ domain: 'www.example.org', at: r.updatedAt, by: 'alice', action: 'map', from: [], to: r.targets }]);
  });

  test('a domain held by another user is a 409 and changes nothing', async () => {
    const w = world();
    await w.service.map(BOB, 'www.example.org', HOTHER, { by: 'bob' });
    const before = await w.snapshot();
    await rejectsWith(w.service.map(ALICE, 'www.example.org', HA, { by: 'alice' }), 'CONFLICT', 409, /another user/);
    await rejectsWith(w.service.split(ALICE, 'www.example.org', [{ hostname: HA, weight: 1 }], 'alice'), 'CONFLICT', 409);
    await w.service.map(ALICE, 'beta.example.org', HA, { by: 'alice' });
    await rejectsWith(w.service.promote(ALICE, 'beta.example.org', 'www.example.org', 'alice'), 'CONFLICT', 409);
    const afterSnap = await w.snapshot();
    assert.deepEqual(afterSnap.routes.filter((r) => r.domain === 'www.example.org'), before.routes);
    assert.deepEqual(await w.store.history('www.example.org'), before.history[0]);
    assert.deepEqual(targetsOf(w.table, 'www.example.org'), [HOTHER]);
  });

  test("another user's or an unknown instance is a 404 and changes nothing", async () => {
    const w = world();
    await rejectsWith(w.service.map(ALICE, 'www.example.org', HOTHER, { by: 'alice' }), 'NOT_FOUND', 404, /not found/);
    await rejectsWith(w.service.map(ALICE, 'www.example.org', host('404'), { by: 'alice' }), 'NOT_FOUND', 404);
    assert.deepEqual(await w.snapshot(), { routes: [], history: [], table: [], version: 0 });
    assert.deepEqual(w.instances.wakes, [], 'a foreign instance is never woken');
  });

  test('invalid and reserved domains are refused with INVALID_HOSTNAME', async () => {
    const w = world();
    for (const bad of ['', 'exa mple.org', '-x.org', 'a..b', '[::1]', 'x_y.org']) {
      await rejectsWith(w.service.map(ALICE, bad, HA, { by: 'alice' }), 'INVALID_HOSTNAME', 400);
    }
    // The cloud's domain and every name under it belong to the platform (issue 8): 409, as a name held by another owner.
    await rejectsWith(w.service.map(ALICE, HB, HA, { by: 'alice' }), 'CONFLICT', 409, /instance hostnames/);
    await rejectsWith(w.service.map(ALICE, `eph-anything.${DOMAIN}`, HA, { by: 'alice' }), 'CONFLICT', 409);
    await rejectsWith(w.service.map(ALICE, DOMAIN, HA, { by: 'alice' }), 'CONFLICT', 409, /own domain/);
    await rejectsWith(w.service.map(ALICE, `shop.${DOMAIN}`, HA, { by: 'alice' }), 'CONFLICT', 409, /belong to the platform/);
    for (const local of ['localhost', 'app.localhost', '127.0.0.1', '[::1]', '::1', '10.1']) {
      await rejectsWith(w.service.map(ALICE, local, HA, { by: 'alice' }), 'INVALID_HOSTNAME', 400);
    }
    await rejectsWith(w.service.map(ALICE, 'www.example.org', 'not a host', { by: 'alice' }), 'INVALID_HOSTNAME', 400);
    await rejectsWith(w.service.map(ALICE, 'www.example.org', HA, { by: 'alice', healthPath: 'health' }), 'INVALID_VALUE', 400);
    await rejectsWith(w.service.map(ALICE, 'www.example.org', HA, { by: 'alice', healthPath: '/a b' }), 'INVALID_VALUE', 400);
    assert.deepEqual(await w.snapshot(), { routes: [], history: [], table: [], version: 0 });
  });

  test('many domains may point at one instance', async () => {
    const w = world();
    await w.service.map(ALICE, 'www.example.org', HA, { by: 'alice' });
    await w.service.map(ALICE, 'example.org', HA, { by: 'alice' });
    assert.deepEqual(targetsOf(w.table, 'www.example.org'), [HA]);
    assert.deepEqual(targetsOf(w.table, 'example.org'), [HA]);
    assert.deepEqual((await w.service.list(ALICE)).map((r) => r.domain), ['example.org', 'www.example.org']);
    assert.deepEqual(await w.service.list(BOB), []);
  });
});

describe('health-gated switches', () => {
  test('a target answering 500 is refused with the reason and nothing changes', async () => {
    const w = world();
    await rejectsWith(w.service.map(ALICE, 'www.example.org', HBROKEN, { by: 'alice' }), 'HEALTH_CHECK_FAILED', 409, /answered 500/);
    assert.deepEqual(await w.snapshot(), { routes: [], history: [], table: [], version: 0 });

    await w.service.map(ALICE, 'www.example.org', HA, { by: 'alice' });
    const before = await w.snapshot();
    await rejectsWith(w.service.map(ALICE, 'www.example.org', HBROKEN, { by: 'alice' }), 'HEALTH_CHECK_FAILED', 409, /unchanged/);
    await rejectsWith(w.service.split(ALICE, 'www.example.org', [{ hostname: HA, weight: 90 }, { hostname: HBROKEN, weight: 10 }], 'alice'), 'HEALTH_CHECK_FAILED', 409);
    assert.deepEqual(await w.snapshot(), before);
    assert.ok(ups.broken!.seen.length >= 2, 'the broken target was asked more than once before giving up');
  });

  test('a target that never answers is refused once the deadline passes', async () => {
    const w = world();
    await w.service.map(ALICE, 'www.example.org', HA, { by: 'alice' });
    const before = await w.snapshot();
    const t0 = Date.now();
    await rejectsWith(w.service.map(ALICE, 'www.example.org', HHANG, { by: 'alice' }), 'HEALTH_CHECK_FAILED', 409, /no answer/);
    const took = Date.now() - t0;
    assert.ok(took >= HEALTH_TIMEOUT - 20 && took < HEALTH_TIMEOUT + 1500, `refused after ${took} ms`);
    assert.deepEqual(await w.snapshot(), before);
  });

  test('a target that never wakes is refused at the deadline; a failed start keeps its code', async () => {
    const w = world();
    w.instances.failWake(HB, 'hang');
    const t0 = Date.now();
    await rejectsWith(w.service.map(ALICE, 'www.example.org', HB, { by: 'alice' }), 'HEALTH_CHECK_FAILED', 409, /did not wake/);
    assert.ok(Date.now() - t0 < HEALTH_TIMEOUT + 1500);
    w.instances.failWake(HC, new EphError('START_FAILED', 'exit status 3'));
    await rejectsWith(w.service.map(ALICE, 'www.example.org', HC, { by: 'alice' }), 'START_FAILED', 502, /exit status 3/);
    assert.deepEqual(await w.snapshot(), { routes: [], history: [], table: [], version: 0 });
  });

  test('the health path is per route', async () => {
    const w = world();
    await rejectsWith(w.service.map(ALICE, 'www.example.org', HPATH, { by: 'alice' }), 'HEALTH_CHECK_FAILED', 409, /GET \/ answered 503/);
    const r = await w.service.map(ALICE, 'www.example.org', HPATH, { by: 'alice', healthPath: '/health' });
    assert.equal(r.healthPath, '/health');
    // Later switches keep using the route's path.
    await w.service.map(ALICE, 'beta.example.org', HA, { by: 'alice' });
    await w.service.promote(ALICE, 'beta.example.org', 'www.example.org', 'alice');
    assert.ok(ups.a!.seen.includes('www.example.org /health'), ups.a!.seen.join(', '));
    assert.equal((await w.service.get(ALICE, 'www.example.org')).healthPath, '/health');
  });

  test('skipHealth switches without checking', async () => {
    const w = world();
    const r = await w.service.map(ALICE, 'www.example.org', HBROKEN, { by: 'alice', skipHealth: true });
    assert.deepEqual(r.targets.map((t) => t.hostname), [HBROKEN]);
    assert.deepEqual(w.instances.wakes, []);
  });
});

describe('promote and rollback', () => {
  async function promoted() {
    const w = world();
    await w.service.map(ALICE, 'www.example.org', HA, { by: 'alice' });
    await w.service.map(ALICE, 'beta.example.org', HB, { by: 'alice' });
    const r = await w.service.promote(ALICE, 'beta.example.org', 'www.example.org', 'carol');
    return { ...w, r };
  }

  test("promote points the target domain at the source's instance and records from/to", async () => {
    const w = await promoted();
    assert.deepEqual(w.r.targets, [{ hostname: HB, weight: 100 }]);
    assert.deepEqual(targetsOf(w.table, 'www.example.org'), [HB]);
    assert.deepEqual(targetsOf(w.table, 'beta.example.org'), [HB]);
    const [last] = await w.service.history(ALICE, 'www.example.org');
    assert.deepEqual(last, {
      domain: 'www.example.org',
      at: w.r.updatedAt,
      by: 'carol',
      action: 'promote',
      from: [{ hostname: HA, weight: 100 }],
      to: [{ hostname: HB, weight: 100 }],
    });
  });

  test('promote copies a split, and may create the target domain', async () => {
    const w = world();
    await w.service.split(ALICE, 'beta.example.org', [{ hostname: HA, weight: 90 }, { hostname: HB, weight: 10 }], 'alice');
    const r = await w.service.promote(ALICE, 'beta.example.org', 'www.example.org', 'alice');
    assert.deepEqual(r.targets, [{ hostname: HA, weight: 90 }, { hostname: HB, weight: 10 }]);
    assert.deepEqual(w.table.get('www.example.org')?.cumulative, [90, 100]);
  });

  test('promote refuses an unknown source, itself, and an unhealthy source target', async () => {
    const w = world();
    await rejectsWith(w.service.promote(ALICE, 'beta.example.org', 'www.example.org', 'alice'), 'NOT_FOUND', 404);
    await w.service.map(BOB, 'bob.example.org', HOTHER, { by: 'bob' });
    await rejectsWith(w.service.promote(ALICE, 'bob.example.org', 'www.example.org', 'alice'), 'NOT_FOUND', 404);
    await w.service.map(ALICE, 'www.example.org', HA, { by: 'alice' });
    await rejectsWith(w.service.promote(ALICE, 'www.example.org', 'WWW.example.org', 'alice'), 'BAD_REQUEST', 400);
    await w.service.map(ALICE, 'beta.example.org', HBROKEN, { by: 'alice', skipHealth: true });
    const before = await w.snapshot();
    await rejectsWith(w.service.promote(ALICE, 'beta.example.org', 'www.example.org', 'alice'), 'HEALTH_CHECK_FAILED', 409);
    assert.deepEqual(await w.snapshot(), before);
  });

  test('rollback points the domain back to its previous targets', async () => {
    const w = await promoted();
    const r = await w.service.rollback(ALICE, 'www.example.org', 'dave');
    assert.deepEqual(r.targets, [{ hostname: HA, weight: 100 }]);
    assert.deepEqual(targetsOf(w.table, 'www.example.org'), [HA]);
    const [last] = await w.service.history(ALICE, 'www.example.org');
    assert.deepEqual([last!.action, last!.by, last!.from, last!.to], ['rollback', 'dave', [{ hostname: HB, weight: 100 }], [{ hostname: HA, weight: 100 }]]);
  });

  test('rollback with no earlier state is a 409 and changes nothing', async () => {
    const w = world();
    await rejectsWith(w.service.rollback(ALICE, 'www.example.org', 'alice'), 'NOT_FOUND', 404);
    await w.service.map(ALICE, 'www.example.org', HA, { by: 'alice' });
    const before = await w.snapshot();
    await rejectsWith(w.service.rollback(ALICE, 'www.example.org', 'alice'), 'NO_EARLIER_ROUTE', 409, /no earlier state/);
    // Re-mapping to the same target is not a change to undo.
    await w.service.map(ALICE, 'www.example.org', HA, { by: 'alice' });
    await rejectsWith(w.service.rollback(ALICE, 'www.example.org', 'alice'), 'NO_EARLIER_ROUTE', 409);
    assert.deepEqual(await w.snapshot(), before);
  });

  test('repeated rollbacks walk back like an undo stack, then stop at the creation', async () => {
    const w = world();
    const d = 'www.example.org';
    await w.service.map(ALICE, d, HA, { by: 'alice' });
    await w.service.map(ALICE, d, HB, { by: 'alice' });
    await w.service.map(ALICE, d, HC, { by: 'alice' });
    assert.deepEqual((await w.service.rollback(ALICE, d, 'alice')).targets.map((t) => t.hostname), [HB]);
    assert.deepEqual((await w.service.rollback(ALICE, d, 'alice')).targets.map((t) => t.hostname), [HA]);
    await rejectsWith(w.service.rollback(ALICE, d, 'alice'), 'NO_EARLIER_ROUTE', 409);
    // A new change after rollbacks is undone first.
    await w.service.split(ALICE, d, [{ hostname: HA, weight: 50 }, { hostname: HC, weight: 50 }], 'alice');
    assert.deepEqual((await w.service.rollback(ALICE, d, 'alice')).targets.map((t) => t.hostname), [HA]);
    await rejectsWith(w.service.rollback(ALICE, d, 'alice'), 'NO_EARLIER_ROUTE', 409);
    assert.deepEqual(targetsOf(w.table, d), [HA]);
  });

  test('rollback is health-gated, and refuses a target that no longer exists', async () => {
    const w = world();
    const d = 'www.example.org';
    await w.service.map(ALICE, d, HBROKEN, { by: 'alice', skipHealth: true });
    await w.service.map(ALICE, d, HA, { by: 'alice' });
    let before = await w.snapshot();
    await rejectsWith(w.service.rollback(ALICE, d, 'alice'), 'HEALTH_CHECK_FAILED', 409);
    assert.deepEqual(await w.snapshot(), before);

    await w.service.map(ALICE, d, HB, { by: 'alice' });
    w.instances.remove(HA);
    before = await w.snapshot();
    await rejectsWith(w.service.rollback(ALICE, d, 'alice'), 'NOT_FOUND', 404, /no longer exists/);
    assert.deepEqual(await w.snapshot(), before);
  });

  test("another user's domain cannot be rolled back, unmapped or read", async () => {
    const w = await promoted();
    await rejectsWith(w.service.rollback(BOB, 'www.example.org', 'bob'), 'NOT_FOUND', 404);
    await rejectsWith(w.service.unmap(BOB, 'www.example.org', 'bob'), 'NOT_FOUND', 404);
    await rejectsWith(w.service.get(BOB, 'www.example.org'), 'NOT_FOUND', 404);
    await rejectsWith(w.service.history(BOB, 'www.example.org'), 'NOT_FOUND', 404);
    assert.deepEqual(targetsOf(w.table, 'www.example.org'), [HB]);
  });
});

describe('split', () => {
  test('invalid weights and targets are refused and change nothing', async () => {
    const w = world();
    await w.service.map(ALICE, 'www.example.org', HA, { by: 'alice' });
    const before = await w.snapshot();
    const d = 'www.example.org';
    const bad: [unknown, RegExp][] = [
      [[], /at least one target/],
      [[{ hostname: HA, weight: 0 }, { hostname: HB, weight: 0 }], /above 0/],
      [[{ hostname: HA, weight: 50.5 }, { hostname: HB, weight: 50 }], /integer from 0 to 100/],
      [[{ hostname: HA, weight: 101 }], /integer from 0 to 100/],
      [[{ hostname: HA, weight: -1 }, { hostname: HB, weight: 10 }], /integer from 0 to 100/],
      [[{ hostname: HA, weight: '50' }, { hostname: HB, weight: 50 }], /integer from 0 to 100/],
      [[{ hostname: HA, weight: 50 }, { hostname: HA.toUpperCase(), weight: 50 }], /twice/],
    ];
    for (const [targets, re] of bad) {
      await rejectsWith(w.service.split(ALICE, d, targets as never, 'alice'), 'INVALID_VALUE', 400, re);
    }
    await rejectsWith(w.service.split(ALICE, d, [{ hostname: HA, weight: 90 }, { hostname: HOTHER, weight: 10 }], 'alice'), 'NOT_FOUND', 404);
    assert.deepEqual(await w.snapshot(), before);
  });

  test('a split updates the table with weights and health-checks only new targets', async () => {
    const w = world();
    const d = 'www.example.org';
    await w.service.map(ALICE, d, HA, { by: 'alice' });
    const wakesBefore = w.instances.wakes.length;
    const r = await w.service.split(ALICE, d, [{ hostname: HA, weight: 90 }, { hostname: HB, weight: 10 }, { hostname: HBROKEN, weight: 0 }], 'alice');
    assert.deepEqual(w.instances.wakes.slice(wakesBefore), [HB], 'only the new live target is woken and checked');
    assert.deepEqual(r.targets.map((t) => t.weight), [90, 10, 0]);
    const hr = w.table.get(d)!;
    assert.deepEqual(hr.targets.map((t) => t.hostname), [HA, HB], 'a weight 0 target gets no traffic');
    assert.deepEqual(hr.cumulative, [90, 100]);
    assert.equal(w.table.pick(hr, undefined, 0.95), HB);
    assert.equal(w.table.pick(hr, undefined, 0.5), HA);
    assert.equal(w.table.pick(hr, HB, 0.1), HB, 'sticky visitor stays on its side');
    assert.equal((await w.service.history(ALICE, d))[0]!.action, 'split');
  });
});

describe('history, unmap and load', () => {
  test('history is newest first and starts at the route\'s latest creation', async () => {
    const w = world();
    const d = 'www.example.org';
    await w.service.map(ALICE, d, HA, { by: 'a1' });
    await w.service.map(ALICE, d, HB, { by: 'a2' });
    await w.service.rollback(ALICE, d, 'a3');
    let h = await w.service.history(ALICE, d);
    assert.deepEqual(h.map((c) => `${c.action}:${c.by}`), ['rollback:a3', 'map:a2', 'map:a1']);
    assert.ok(h[0]!.at > h[1]!.at && h[1]!.at > h[2]!.at);
    assert.deepEqual((await w.service.history(ALICE, d, 2)).length, 2);

    await w.service.unmap(ALICE, d, 'a4');
    assert.equal(w.table.get(d), undefined);
    await rejectsWith(w.service.history(ALICE, d), 'NOT_FOUND', 404);
    // The domain changes hands: the new owner sees none of the old owner's history.
    await w.service.map(BOB, d, HOTHER, { by: 'b1' });
    h = await w.service.history(BOB, d);
    assert.deepEqual(h.map((c) => `${c.action}:${c.by}`), ['map:b1']);
    await rejectsWith(w.service.rollback(BOB, d, 'b2'), 'NO_EARLIER_ROUTE', 409);
    assert.deepEqual((await w.store.history(d)).length, 5, 'the store keeps everything');
  });

  test('load fills a fresh routing table from the store', async () => {
    const w = world();
    await w.service.map(ALICE, 'www.example.org', HA, { by: 'alice' });
    await w.service.split(ALICE, 'beta.example.org', [{ hostname: HA, weight: 1 }, { hostname: HB, weight: 3 }], 'alice');
    await w.service.map(BOB, 'bob.example.org', HOTHER, { by: 'bob', httpsRedirect: true });
    const table = new RoutingTable();
    const restarted = new RouteService({ store: w.store, table, backend: w.instances, instances: w.instances, reservedDomain: DOMAIN });
    assert.equal(await restarted.load(), 3);
    for (const h of ['www.example.org', 'beta.example.org', 'bob.example.org']) assert.deepEqual(table.get(h), w.table.get(h));
    assert.equal(table.get('bob.example.org')?.httpsRedirect, true);
  });

  test('concurrent changes to one domain are applied one at a time', async () => {
    const w = world();
    const d = 'www.example.org';
    await w.service.map(ALICE, d, HA, { by: 'alice' });
    const order = [HB, HC, HA, HB, HC, HA, HB, HC];
    await Promise.all(order.map((h, i) => w.service.map(ALICE, d, h, { by: `c${i}` })));
    const h = (await w.store.history(d)).reverse();
    assert.equal(h.length, 1 + order.length);
    for (let i = 1; i < h.length; i++) assert.deepEqual(h[i]!.from, h[i - 1]!.to, `change ${i} starts where change ${i - 1} ended`);
    const r: GateRoute = await w.service.get(ALICE, d);
    assert.deepEqual(r.targets, h[h.length - 1]!.to);
    assert.deepEqual(targetsOf(w.table, d), [r.targets[0]!.hostname]);
  });
});
