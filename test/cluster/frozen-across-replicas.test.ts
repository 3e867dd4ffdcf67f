import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { procfileApp, startTestCloud, until, type TestCloud } from '../helpers/cloud.ts';
import { NO_POSTGRES, startPgCluster, type PgCluster } from '../helpers/pg-cluster.ts';
import { netnsUnavailableReason } from '../../src/runtime/process/process-driver.ts';

/**
 * Warm sleep in cluster mode: an instance frozen on replica A keeps its
 * lease (asleep for the quota: the user's other instance may start), and a
 * visitor arriving through replica B gets it thawed on A (B asks A over
 * NOTIFY) instead of a second copy on B.
 */
const SKIP = NO_POSTGRES ? `${NO_POSTGRES} (Debian package postgresql-15)` : (netnsUnavailableReason() ?? false);

describe('a frozen instance across replicas', { skip: SKIP }, () => {
  let pgc: PgCluster;
  let a: TestCloud;
  let b: TestCloud;
  const images = mkdtempSync(join(tmpdir(), 'eph-cluster-frozen-'));
  chmodSync(images, 0o755);

  before(async () => {
    pgc = await startPgCluster();
    const db = `eph_frozen_${process.pid}`;
    const admin = new pg.Client({ connectionString: pgc.url });
    await admin.connect();
    await admin.query(`create database ${db}`);
    await admin.end();
    const url = pgc.url.replace(/\/postgres$/, `/${db}`);
    const replica = (): Promise<TestCloud> =>
      startTestCloud({ store: url, idleTimeout: '30m', warmIdleTimeout: '5s' }, { leaseTtlMs: 5000, reapIntervalMs: 250, env: { EPH_IMAGES: images } });
    a = await replica();
    b = await replica();
  });

  after(async () => {
    for (const c of [a, b]) await c?.close().catch(() => undefined);
    await pgc?.stop();
    rmSync(images, { recursive: true, force: true });
  });

  test('frozen on A: asleep for the quota, thawed on A for a visitor of B', async () => {
    const app = await procfileApp("import http from 'node:http';\nhttp.createServer((q, s) => s.end(process.env.EPH_HOSTNAME)).listen(8080);\n");
    const solo = await a.addUser('solo', 'free');
    const h = await a.publish(app, { user: solo });
    const other = await b.publish(app, { user: solo });
    assert.equal((await a.visit(h)).body, h);
    await until(`${h} frozen on A`, () => a.instances.listFrozen().some((f) => f.hostname === h), 30_000);
    const lease = await a.store.getLease(h);
    assert.equal(lease?.replicaId, a.leases!.replicaId, 'A keeps the lease while frozen');
    assert.equal(lease?.counted, false, 'a frozen instance is asleep for the quota');

    // Through B: A thaws it (no copy on B), and the free plan's one running slot is its again. The thaw
    // counts as an access on A: the checks below have the 5 s warm idle timeout before A freezes it again.
    const r = await until(`${h} through B`, async () => {
      const v = await b.visit(h);
      return v.status === 200 ? v : null;
    }, 30_000);
    assert.equal(r.body, h);
    assert.equal(b.instances.listRunning().length, 0, 'no copy on B');
    const counted = await a.store.getLease(h);
    assert.equal(counted?.replicaId, a.leases!.replicaId);
    assert.equal(counted?.counted, true, 'thawed: counted again');
    // At the free plan's limit now: the other instance cannot start on either replica.
    const refused = await b.api('POST', `/v1/instances/${other}/start`, { user: solo });
    assert.equal(refused.status, 409, refused.text);
    assert.match(refused.text, /QUOTA_EXCEEDED/);
  });
});
