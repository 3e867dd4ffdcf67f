import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RouteService } from '../../src/gate/route-service.ts';
import { MemoryRouteStore } from '../../src/store/route-store.ts';
import { RoutingTable } from '../../src/gate/routing-table.ts';
import { answering, startUpstream, TestInstances, type Upstream } from './route-service.fixtures.ts';

const HA = 'eph-0000000a.eph.test';
const HB = 'eph-0000000b.eph.test';
const HBOB = 'eph-000000b0.eph.test';

/** The stand-in instances plus aliases, as the instance service answers aliasHolder. */
class AliasedInstances extends TestInstances {
  readonly aliases = new Map<string, { userId: string; hostname: string }>();
  async aliasHolder(domain: string) {
    return this.aliases.get(domain) ?? null;
  }
}

let up: Upstream;
before(async () => {
  up = await startUpstream(answering('A'));
});
after(() => up?.close());

function world() {
  const store = new MemoryRouteStore();
  const table = new RoutingTable();
  const instances = new AliasedInstances();
  instances.add(HA, 'alice', up.address);
  instances.add(HB, 'alice', up.address);
  instances.add(HBOB, 'bob', up.address);
  instances.aliases.set('app.example.test', { userId: 'alice', hostname: HA });
  instances.aliases.set('bobs.example.test', { userId: 'bob', hostname: HBOB });
  const service = new RouteService({ store, table, backend: instances, instances, reservedDomain: 'eph.test' });
  return { store, table, service };
}

test('a gate domain that is an alias of the same user: 409 naming the instance; nothing changes', async () => {
  const { service, store, table } = world();
  await assert.rejects(service.map('alice', 'App.Example.Test', HB, { by: 'alice' }), {
    code: 'CONFLICT',
    status: 409,
    message: `app.example.test is an alias of ${HA}; clear it first`,
  });
  await assert.rejects(service.split('alice', 'app.example.test', [{ hostname: HA, weight: 50 }, { hostname: HB, weight: 50 }], 'alice'), { code: 'CONFLICT' });
  assert.deepEqual(await store.listRoutes(), []);
  assert.equal(table.get('app.example.test'), undefined);
});

test("a gate domain that is an alias of another user's instance: 409 without naming it", async () => {
  const { service } = world();
  await assert.rejects(service.map('alice', 'bobs.example.test', HA, { by: 'alice' }), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'CONFLICT');
    assert.match(e.message, /alias of another user's instance/);
    assert.doesNotMatch(e.message, new RegExp(HBOB));
    return true;
  });
});

test('promoting onto an alias is refused too; a free domain maps', async () => {
  const { service } = world();
  await service.map('alice', 'beta.example.test', HB, { by: 'alice' });
  await assert.rejects(service.promote('alice', 'beta.example.test', 'app.example.test', 'alice'), { code: 'CONFLICT', message: /clear it first/ });
  const r = await service.map('alice', 'www.example.test', HA, { by: 'alice' });
  assert.deepEqual(r.targets, [{ hostname: HA, weight: 100 }]);
});
