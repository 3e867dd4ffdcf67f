import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { systemClock } from '../../src/core/clock.ts';
import { ApplianceService } from '../../src/appliances/appliance-service.ts';
import { findMongod, onPath } from '../../src/appliances/binaries.ts';
import { join } from 'node:path';
import type { Cloud } from './fixtures.ts';
import { listeningAddresses, startCloud, tunnelTo } from './fixtures.ts';

let mongod: string | null = null;
try {
  mongod = findMongod();
} catch {
  mongod = null;
}
const NO_MONGOD = mongod ? false : 'mongod not installed on this machine';
const NO_MONGOSH = NO_MONGOD || (onPath('mongosh') || onPath('mongo') ? false : 'mongosh not installed on this machine');

const cleanups: (() => unknown)[] = [];
const shared = { after: (fn: () => unknown): void => void cleanups.push(fn) };
let cloud: Cloud;

before(async () => {
  cloud = await startCloud(shared);
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

test('create mongo fails with DEPENDENCY_MISSING naming mongod when no mongod is on PATH', { skip: mongod ? 'a mongod is installed here' : false }, async () => {
  await assert.rejects(cloud.appliances.create(cloud.user, 'mongo', 'docs'), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'DEPENDENCY_MISSING');
    assert.equal(e.message, 'mongod not found: install MongoDB or set EPH_MONGOD');
    return true;
  });
  assert.deepEqual(await cloud.appliances.list(cloud.user), []);
});

test('create mongo fails with DEPENDENCY_MISSING naming the configured binary when it does not exist', async () => {
  const service = new ApplianceService({
    store: cloud.store,
    dataDir: join(cloud.dir, 'appliances'),
    publicHost: '127.0.0.1',
    clock: systemClock,
    binaries: { mongod: join(cloud.dir, 'no-such-mongod') },
  });
  await assert.rejects(service.create(cloud.user, 'mongo', 'docs'), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'DEPENDENCY_MISSING');
    assert.match(e.message, /^mongod not found at .*no-such-mongod/);
    return true;
  });
  assert.deepEqual(await service.list(cloud.user), []);
});

test('mongo appliance with a real mongod: create, reach it through the tunnel, stop', { skip: NO_MONGOSH }, async () => {
  const rec = await cloud.appliances.create(cloud.user, 'mongo', 'docs');
  assert.equal(rec.status, 'running');
  assert.match(cloud.appliances.view(rec).url, /^mongodb:\/\/u_[0-9a-f]{10}:[^@]+@127\.0\.0\.1:27017\/docs$/);
  assert.deepEqual(listeningAddresses(rec.port), ['127.0.0.1']);
  const tunnel = await tunnelTo(shared, rec);
  const { spawnSync } = await import('node:child_process');
  const url = new URL(cloud.appliances.view(rec).url);
  url.port = String(tunnel.address.port);
  const out = spawnSync(onPath('mongosh') ?? 'mongo', [url.toString(), '--quiet', '--eval', 'db.items.insertOne({a: 1}); print(db.items.countDocuments())'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(out.stdout.trim().split('\n').pop(), '1', out.stderr);
  await cloud.appliances.stop(cloud.user, 'docs');
  assert.deepEqual(listeningAddresses(rec.port), []);
  await cloud.appliances.remove(cloud.user, 'docs');
});
