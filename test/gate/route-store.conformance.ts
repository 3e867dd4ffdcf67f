/**
 * The suite every RouteStore must pass (memory, SQLite, PostgreSQL). Each
 * test gets a fresh, empty store from `makeStore` and closes it afterwards.
 *
 * @example
 * runRouteStoreConformance('sqlite', async () => openSqliteRouteStore(tmpFile()));
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import type { GateRoute, GateTarget, RouteChange } from '../../src/core/types.ts';
import type { RouteStore } from '../../src/store/route-store.ts';

export type ClosableRouteStore = RouteStore & { close(): Promise<void> };

// Beyond 2^31 and 2^32 on purpose: timestamps must survive as exact numbers (not strings, not truncated).
const T0 = 1_760_000_000_123;

function route(domain: string, userId: string, targets: GateTarget[], extra: Partial<GateRoute> = {}): GateRoute {
  return { domain, userId, targets, healthPath: '/', httpsRedirect: false, updatedAt: T0, ...extra };
}

function change(domain: string, at: number, action: string, from: GateTarget[], to: GateTarget[], by = 'alice'): RouteChange {
  return { domain, at, by, action, from, to };
}

const A = (weight = 100): GateTarget => ({ hostname: 'eph-0000000a.eph.localhost', weight });
const B = (weight = 100): GateTarget => ({ hostname: 'eph-0000000b.eph.localhost', weight });
const C = (weight = 100): GateTarget => ({ hostname: 'eph-0000000c.eph.localhost', weight });

export function runRouteStoreConformance(name: string, makeStore: () => Promise<ClosableRouteStore>): void {
  async function fresh(t: TestContext): Promise<ClosableRouteStore> {
    const store = await makeStore();
    t.after(() => store.close());
    return store;
  }

  describe(`RouteStore conformance: ${name}`, () => {
    test('an unknown domain has no route and no history', async (t) => {
      const s = await fresh(t);
      assert.equal(await s.getRoute('www.example.org'), null);
      assert.deepEqual(await s.history('www.example.org'), []);
      assert.deepEqual(await s.listRoutes(), []);
      assert.deepEqual(await s.listRoutes('u1'), []);
    });

    test('saveRoute writes the route and its change; both read back exactly', async (t) => {
      const s = await fresh(t);
      const r = route('www.example.org', 'u1', [A(90), B(10)], { healthPath: '/health?deep=1', httpsRedirect: true, updatedAt: T0 + 5 });
      const c = change('www.example.org', T0 + 5, 'split', [], [A(90), B(10)], 'alice ö');
      await s.saveRoute('www.example.org', r, c);
      assert.deepEqual(await s.getRoute('www.example.org'), r);
      assert.deepEqual(await s.history('www.example.org'), [c]);
      const got = await s.getRoute('www.example.org');
      assert.equal(typeof got!.updatedAt, 'number');
      assert.equal(typeof (await s.history('www.example.org'))[0]!.at, 'number');
    });

    test('targets keep their order, and weight 0 targets are kept', async (t) => {
      const s = await fresh(t);
      const targets = [C(0), A(30), B(70)];
      await s.saveRoute('www.example.org', route('www.example.org', 'u1', targets), change('www.example.org', T0, 'split', [], targets));
      assert.deepEqual((await s.getRoute('www.example.org'))!.targets, targets);
      assert.deepEqual((await s.history('www.example.org'))[0]!.to, targets);
    });

    test('listRoutes orders by domain and filters by user', async (t) => {
      const s = await fresh(t);
      for (const [d, u] of [['www.b.test', 'u1'], ['a.test', 'u2'], ['beta.b.test', 'u1'], ['z.test', 'u2']] as const) {
        await s.saveRoute(d, route(d, u, [A()]), change(d, T0, 'map', [], [A()]));
      }
      assert.deepEqual((await s.listRoutes()).map((r) => r.domain), ['a.test', 'beta.b.test', 'www.b.test', 'z.test']);
      assert.deepEqual((await s.listRoutes('u1')).map((r) => r.domain), ['beta.b.test', 'www.b.test']);
      assert.deepEqual((await s.listRoutes('u2')).map((r) => r.domain), ['a.test', 'z.test']);
      assert.deepEqual(await s.listRoutes('nobody'), []);
    });

    test('a second save replaces the route and appends to the history, newest first', async (t) => {
      const s = await fresh(t);
      const d = 'www.example.org';
      await s.saveRoute(d, route(d, 'u1', [A()]), change(d, T0, 'map', [], [A()]));
      const r2 = route(d, 'u1', [B()], { healthPath: '/ok', updatedAt: T0 + 1000 });
      await s.saveRoute(d, r2, change(d, T0 + 1000, 'promote', [A()], [B()], 'bob'));
      assert.deepEqual(await s.getRoute(d), r2);
      const h = await s.history(d);
      assert.deepEqual(h.map((c) => [c.action, c.by, c.at]), [['promote', 'bob', T0 + 1000], ['map', 'alice', T0]]);
      assert.equal((await s.listRoutes()).length, 1);
    });

    test('saving null deletes the route and keeps the history', async (t) => {
      const s = await fresh(t);
      const d = 'www.example.org';
      await s.saveRoute(d, route(d, 'u1', [A()]), change(d, T0, 'map', [], [A()]));
      await s.saveRoute(d, null, change(d, T0 + 1, 'unmap', [A()], []));
      assert.equal(await s.getRoute(d), null);
      assert.deepEqual(await s.listRoutes(), []);
      assert.deepEqual((await s.history(d)).map((c) => c.action), ['unmap', 'map']);
      assert.deepEqual((await s.history(d))[0]!.to, []);
    });

    test('history is ordered by insertion, not by time, and limit keeps the newest', async (t) => {
      const s = await fresh(t);
      const d = 'www.example.org';
      // Equal and decreasing timestamps: only insertion order can give the answer.
      const ats = [T0, T0, T0 - 50, T0 + 7, T0 - 100];
      for (let i = 0; i < ats.length; i++) {
        await s.saveRoute(d, route(d, 'u1', [A(i + 1)]), change(d, ats[i]!, `step${i}`, [A(i)], [A(i + 1)]));
      }
      assert.deepEqual((await s.history(d)).map((c) => c.action), ['step4', 'step3', 'step2', 'step1', 'step0']);
      assert.deepEqual((await s.history(d, 2)).map((c) => c.action), ['step4', 'step3']);
      assert.deepEqual((await s.history(d, 1)).map((c) => c.at), [T0 - 100]);
      assert.equal((await s.history(d, 100)).length, 5);
    });

    test('histories of different domains do not mix', async (t) => {
      const s = await fresh(t);
      await s.saveRoute('a.test', route('a.test', 'u1', [A()]), change('a.test', T0, 'map', [], [A()]));
      await s.saveRoute('b.test', route('b.test', 'u2', [B()]), change('b.test', T0, 'map', [], [B()]));
      await s.saveRoute('a.test', null, change('a.test', T0 + 1, 'unmap', [A()], []));
      assert.deepEqual((await s.history('a.test')).map((c) => c.action), ['unmap', 'map']);
      assert.deepEqual(await s.history('b.test'), [change('b.test', T0, 'map', [], [B()])]);
      assert.deepEqual(await s.getRoute('b.test'), route('b.test', 'u2', [B()]));
    });

    test('returned values are copies: mutating them changes nothing stored', async (t) => {
      const s = await fresh(t);
      const d = 'www.example.org';
      const r = route(d, 'u1', [A()]);
      const c = change(d, T0, 'map', [], [A()]);
      await s.saveRoute(d, r, c);
      r.targets[0]!.weight = 1; // the caller's objects after the save
      c.to.push(B());
      const got = (await s.getRoute(d))!;
      got.targets.push(C());
      got.healthPath = '/changed';
      (await s.listRoutes())[0]!.targets.length = 0;
      (await s.history(d))[0]!.to.length = 0;
      assert.deepEqual(await s.getRoute(d), route(d, 'u1', [A()]));
      assert.deepEqual(await s.history(d), [change(d, T0, 'map', [], [A()])]);
    });

    test('concurrent saves are all kept', async (t) => {
      const s = await fresh(t);
      const domains = Array.from({ length: 20 }, (_, i) => `d${i}.example.org`);
      await Promise.all(domains.map((d) => s.saveRoute(d, route(d, 'u1', [A()]), change(d, T0, 'map', [], [A()]))));
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          s.saveRoute('d0.example.org', route('d0.example.org', 'u1', [B(i + 1)]), change('d0.example.org', T0 + i, `c${i}`, [A()], [B(i + 1)])),
        ),
      );
      assert.equal((await s.listRoutes('u1')).length, 20);
      const h = await s.history('d0.example.org');
      assert.equal(h.length, 21);
      assert.equal(h[h.length - 1]!.action, 'map');
      assert.equal(new Set(h.map((c) => c.action)).size, 21);
    });
  });
}
