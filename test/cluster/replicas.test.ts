import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { procfileApp, startTestCloud, until, type TestCloud } from '../helpers/cloud.ts';
import { NO_POSTGRES, startPgCluster, type PgCluster } from '../helpers/pg-cluster.ts';

/**
 * Cluster mode (issue 14 item 1): two whole clouds (replicas) in this test
 * process, each with its own data directory, namespace prefix and subnet,
 * sharing one real PostgreSQL 15 store. What one replica changes the other
 * serves; the running quota holds across both under a race; a replica that
 * dies leaves leases that expire, and the other keeps serving.
 */
const SKIP = NO_POSTGRES ? `${NO_POSTGRES} (Debian package postgresql-15)` : false;
const LEASE_TTL_MS = 3000;
const LIMIT = 3;

describe('two eph replicas over one PostgreSQL store', { skip: SKIP }, () => {
  let pgc: PgCluster;
  let url: string;
  let a: TestCloud;
  let b: TestCloud;
  let app: Buffer;
  const extra: TestCloud[] = [];
  // The replicas share the images directory (EPH_IMAGES), as they would share a network file system.
  const images = mkdtempSync(join(tmpdir(), 'eph-cluster-images-'));
  chmodSync(images, 0o755);

  const replica = (): Promise<TestCloud> =>
    startTestCloud(
      { store: url, plans: `free=1,standard=10,trio=${LIMIT}`, idleTimeout: '10s', warmIdleTimeout: '0' },
      { leaseTtlMs: LEASE_TTL_MS, reapIntervalMs: 500, env: { EPH_IMAGES: images } },
    );

  before(async () => {
    pgc = await startPgCluster();
    const db = `eph_cluster_${process.pid}`;
    const admin = new pg.Client({ connectionString: pgc.url });
    await admin.connect();
    await admin.query(`create database ${db}`);
    await admin.end();
    url = pgc.url.replace(/\/postgres$/, `/${db}`);
    a = await replica();
    b = await replica();
    // Answers which instance served the request: the test can tell old and new targets apart.
    app = await procfileApp("import http from 'node:http';\nhttp.createServer((q, s) => s.end(process.env.EPH_HOSTNAME)).listen(8080);\n");
  });

  after(async () => {
    for (const c of [a, b, ...extra]) await c?.close().catch(() => undefined);
    await pgc?.stop();
    rmSync(images, { recursive: true, force: true });
  });

  /** The body the gate of `cloud` answers for `host`, or null for any failure status. */
  const served = async (cloud: TestCloud, host: string): Promise<string | null> => {
    try {
      const r = await cloud.visit(host);
      return r.status === 200 ? r.body : null;
    } catch {
      return null;
    }
  };

  /** How many of `hosts` run on either replica (their own processes, not forwarded ones). */
  const runningOf = (hosts: readonly string[]): number => {
    const set = new Set(hosts);
    return [...a.instances.listRunning(), ...b.instances.listRunning()].filter((r) => set.has(r.hostname)).length;
  };

  test('publish on one replica, served by the other (instance hostname and alias)', async () => {
    const h = await b.publish(app, { user: a.alice });
    assert.equal(await until(`${h} served by replica A`, () => served(a, h), 30_000), h);
    // Started once across replicas: A holds the lease, B forwards to A's instance.
    assert.equal((await until('the lease', () => a.store.getLease(h), 30_000)).replicaId, a.leases!.replicaId);
    assert.equal(await until(`${h} served by replica B`, () => served(b, h), 30_000), h);
    assert.equal(b.instances.listRunning().length, 0, 'B started no copy of its own');

    const alias = `app-${process.pid}.example.org`;
    const set = await a.api('PUT', `${a.compatBase()}/${h}/alias`, { body: alias });
    assert.equal(set.status, 200, set.text);
    assert.equal(await until(`alias ${alias} on replica B`, () => served(b, alias), 30_000), h);
    const cleared = await a.api('PUT', `${a.compatBase()}/${h}/alias`, { body: null });
    assert.equal(cleared.status, 200, cleared.text);
    await until(`alias ${alias} gone from replica B`, () => b.table.get(alias) === undefined, 30_000);
    assert.equal((await b.visit(alias)).status, 404);
  });

  test('a remap on one replica is served by the other (LISTEN/NOTIFY); the delay is measured', async () => {
    const h1 = await a.publish(app);
    const h2 = await a.publish(app);
    const domain = `www-${process.pid}.example.org`;
    const map = async (h: string): Promise<void> => {
      const r = await a.api('PUT', `/v1/gate/routes/${domain}`, { body: { hostname: h } });
      assert.equal(r.status, 200, r.text);
    };
    await map(h1);
    assert.equal(await until(`${domain} → ${h1} on B`, () => served(b, domain), 30_000), h1);
    const delays: number[] = [];
    for (let n = 0; n < 10; n++) {
      const target = n % 2 === 0 ? h2 : h1;
      await map(target);
      const mapped = performance.now();
      await until(`${domain} → ${target} in B's routing table`, () => b.table.get(domain)?.targets[0]?.hostname === target, 30_000, 1);
      delays.push(performance.now() - mapped);
      assert.equal(await until(`${domain} → ${target} served by B`, async () => ((await served(b, domain)) === target ? target : null), 30_000), target);
    }
    delays.sort((x, y) => x - y);
    // Measured, not asserted (a loaded CI machine decides timings): docs/cluster.md reports it.
    console.log(`# remap on A → B's routing table: median ${delays[5]!.toFixed(1)} ms, max ${delays[9]!.toFixed(1)} ms over 10 remaps`);
  });

  test('quota race: 100 concurrent starts of one user split over both replicas never pass the plan limit', async () => {
    const racer = await a.addUser('racer', 'trio');
    const hosts: string[] = [];
    for (let i = 0; i < 100; i += 10) {
      hosts.push(...(await Promise.all(Array.from({ length: 10 }, (_, k) => ((i + k) % 2 === 0 ? a : b).publish(app, { user: racer })))));
    }
    let maxSeen = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const counted = (await a.store.listLeases(racer.id)).filter((l) => l.counted && l.expiresAt > Date.now()).length;
        const running = runningOf(hosts);
        maxSeen = Math.max(maxSeen, counted);
        assert.ok(counted <= LIMIT, `${counted} live leases for a plan of ${LIMIT}`);
        assert.ok(running <= LIMIT, `${running} instances running for a plan of ${LIMIT}`);
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    const answers = await Promise.all(hosts.map((h, i) => (i % 2 === 0 ? b : a).api('POST', `/v1/instances/${h}/start`, { user: racer })));
    sampling = false;
    await sampler;
    const ok = answers.filter((r) => r.status === 200).length;
    const refused = answers.filter((r) => r.status === 409 && /QUOTA_EXCEEDED/.test(r.text)).length;
    assert.equal(ok + refused, 100, answers.filter((r) => r.status !== 200 && r.status !== 409).map((r) => r.text).join('\n'));
    assert.equal(ok, LIMIT, 'exactly the plan limit started: none lost, none over');
    const leases = (await a.store.listLeases(racer.id)).filter((l) => l.counted);
    assert.equal(leases.length, LIMIT);
    assert.equal(runningOf(hosts), LIMIT);
    assert.ok(maxSeen <= LIMIT);

    // A stop through either replica's API stops it wherever it runs, and frees the quota for both.
    for (const [i, l] of leases.entries()) {
      const via = i % 2 === 0 ? a : b;
      const r = await via.api('POST', `/v1/instances/${l.hostname}/stop`, { user: racer });
      assert.equal(r.status, 200, r.text);
    }
    assert.deepEqual(await a.store.listLeases(racer.id), []);
    assert.equal(runningOf(hosts), 0);
  });

  test('idle reaping counts access seen by any replica', async () => {
    const h = await a.publish(app);
    assert.equal(await until(`${h} on A`, () => served(a, h), 30_000), h);
    // Visited through B only, for well over the idle timeout (10 s): A's reaper must see B's access.
    const until22s = Date.now() + 22_000;
    while (Date.now() < until22s) {
      assert.equal(await served(b, h), h);
      assert.ok(a.instances.listRunning().some((r) => r.hostname === h), `${h} was reaped on A while B served it`);
      await new Promise((r) => setTimeout(r, 300));
    }
    // No more visits: A stops it after the idle timeout and its lease goes.
    await until(`${h} reaped on A`, async () => !a.instances.listRunning().some((r) => r.hostname === h) && (await a.store.getLease(h)) === null, 60_000);
  });

  test('a replica that dies under load: the other keeps serving, the dead one\'s leases expire and its instances start on the survivor', async () => {
    const victim = await replica();
    extra.push(victim);
    const onVictim = await victim.publish(app);
    const onB = await b.publish(app);
    assert.equal(await until('victim serves its instance', () => served(victim, onVictim), 30_000), onVictim);
    assert.equal(await until('B serves the victim\'s instance', () => served(b, onVictim), 30_000), onVictim);
    assert.equal(await until('B serves its own', () => served(b, onB), 30_000), onB);
    const victimId = victim.leases!.replicaId;
    assert.equal((await b.store.getLease(onVictim))?.replicaId, victimId);

    let loading = true;
    const failuresOnB: string[] = [];
    let servedOnB = 0;
    const load = (async () => {
      while (loading) {
        const r = await served(b, onB);
        if (r === onB) servedOnB++;
        else failuresOnB.push(String(r));
      }
    })();
    await until('load running', () => servedOnB > 20, 30_000);
    await victim.crash();
    rmSync(victim.dataDir, { recursive: true, force: true });

    // The dead replica's lease expires; the next request through B starts the instance on B.
    assert.equal(await until(`${onVictim} served by B after the crash`, () => served(b, onVictim), 60_000), onVictim);
    const lease = await b.store.getLease(onVictim);
    assert.equal(lease?.replicaId, b.leases!.replicaId, 'B holds it now');
    await until('no live lease of the dead replica', async () => (await b.store.listLeases()).every((l) => l.replicaId !== victimId || l.expiresAt <= Date.now()), 30_000);
    const before = servedOnB;
    await until('B still serving', () => servedOnB > before + 20, 30_000);
    loading = false;
    await load;
    assert.deepEqual(failuresOnB, [], 'every request to the survivor\'s own instance was served');
  });
});
