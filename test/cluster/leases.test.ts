import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openPostgresStore } from '../../src/store/postgres/open.ts';
import { openSqliteStore } from '../../src/store/sqlite/open.ts';
import type { SqlStore } from '../../src/store/sql-store.ts';
import { NO_POSTGRES, startPgCluster, type PgCluster } from '../helpers/pg-cluster.ts';

/**
 * The lease table (src/store/lease-store.ts) on both back ends: the quota
 * rule, holders, expiry, freezing, renewal, and the access time that is only
 * ever raised. On PostgreSQL, two stores (two pools, as two replicas have)
 * race for one user's leases.
 */
const SKIP_PG = NO_POSTGRES ? `${NO_POSTGRES} (Debian package postgresql-15)` : false;
const T0 = 1_800_000_000_000;

async function withUser(store: SqlStore, id: string): Promise<void> {
  await store.createUser({ id, name: `n-${id}`, plan: 'free', tokenHash: 'x', createdAt: T0 });
  await store.putImage({ digest: 'd'.repeat(64), size: 1, kind: 'procfile', entry: 'web', createdAt: T0 });
}

function rules(kind: string, open: () => Promise<SqlStore>): void {
  test(`${kind}: leases under the limit, held by one replica, taken over once expired`, async () => {
    const s = await open();
    try {
      await withUser(s, 'u1');
      const req = (hostname: string, replicaId: string, now = T0) => ({ hostname, userId: 'u1', replicaId, limit: 2, now, expiresAt: now + 1000 });
      assert.deepEqual(await s.acquireLease(req('h1', 'ra')), { ok: true });
      assert.deepEqual(await s.acquireLease(req('h1', 'ra')), { ok: true }, 'renewing one held already is no second start');
      const held = await s.acquireLease(req('h1', 'rb'));
      assert.equal(held.ok, false);
      assert.equal(!held.ok && held.reason, 'held');
      assert.equal(!held.ok && held.reason === 'held' && held.holder.replicaId, 'ra');
      assert.deepEqual(await s.acquireLease(req('h2', 'rb')), { ok: true });
      const over = await s.acquireLease(req('h3', 'rb'));
      assert.deepEqual(over, { ok: false, reason: 'quota', running: 2 });
      // Frozen: still held, asleep for the quota.
      await s.setLeaseCounted('h2', 'rb', false);
      assert.deepEqual(await s.acquireLease(req('h3', 'rb')), { ok: true });
      assert.deepEqual(await s.acquireLease(req('h2', 'rb')), { ok: false, reason: 'quota', running: 2 }, 'a thaw at the limit is refused');
      // ra dies: after its expiry another replica takes h1.
      assert.deepEqual((await s.renewLeases('rb', ['h2', 'h3', 'h1'], T0 + 5000)).sort(), ['h2', 'h3'], 'only its own leases are renewed');
      assert.deepEqual(await s.acquireLease(req('h1', 'rb', T0 + 1000)), { ok: true });
      assert.equal((await s.getLease('h1'))?.replicaId, 'rb');
      await s.releaseLease('h1', 'ra');
      assert.equal((await s.getLease('h1'))?.replicaId, 'rb', 'a replica releases only its own lease');
      await s.releaseLease('h1', 'rb');
      assert.equal(await s.getLease('h1'), null);
      assert.equal(await s.releaseReplicaLeases('rb'), 2);
      assert.deepEqual(await s.listLeases('u1'), []);
    } finally {
      await s.close();
    }
  });

  test(`${kind}: the stored access time is raised, never lowered`, async () => {
    const s = await open();
    try {
      await withUser(s, 'u2');
      await s.insertInstance({ hostname: 'h9', userId: 'u2', imageDigest: 'd'.repeat(64), imageName: 'x', alias: null, state: 'asleep', createdAt: T0, accessAt: T0, lastError: null, upstream: null });
      await s.raiseAccessAt('h9', T0 + 50);
      await s.raiseAccessAt('h9', T0 + 10);
      assert.deepEqual(await s.accessTimes(['h9', 'nope']), new Map([['h9', T0 + 50]]));
    } finally {
      await s.close();
    }
  });
}

describe('lease store: sqlite', () => {
  const dir = mkdtempSync(join(tmpdir(), 'eph-leases-'));
  let n = 0;
  after(() => rmSync(dir, { recursive: true, force: true }));
  rules('sqlite', () => openSqliteStore(join(dir, `s${n++}.sqlite`)));
});

describe('lease store: postgres', { skip: SKIP_PG }, () => {
  let cluster: PgCluster;
  let n = 0;
  before(async () => {
    cluster = await startPgCluster();
  });
  after(() => cluster?.stop());
  const fresh = async (): Promise<string> => {
    const db = `eph_l${n++}`;
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    await admin.query(`create database ${db}`);
    await admin.end();
    return cluster.url.replace(/\/postgres$/, `/${db}`);
  };
  rules('postgres', async () => openPostgresStore(await fresh()));

  test('postgres: two stores race 200 leases of one user 5 times; the limit is never passed', async () => {
    const url = await fresh();
    const one = await openPostgresStore(url);
    const two = await openPostgresStore(url);
    try {
      await withUser(one, 'racer');
      for (let round = 0; round < 5; round++) {
        const now = T0 + round * 10_000;
        const answers = await Promise.all(
          Array.from({ length: 200 }, (_, i) =>
            (i % 2 === 0 ? one : two).acquireLease({ hostname: `r${round}-${i}`, userId: 'racer', replicaId: i % 2 === 0 ? 'ra' : 'rb', limit: 3, now, expiresAt: now + 5000 }),
          ),
        );
        assert.equal(answers.filter((a) => a.ok).length, 3, `round ${round}`);
        const live = (await one.listLeases('racer')).filter((l) => l.expiresAt > now);
        assert.equal(live.length, 3, `round ${round}: leases stored`);
      }
    } finally {
      await one.close();
      await two.close();
    }
  });
});
