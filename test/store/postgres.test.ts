import { after, before, describe } from 'node:test';
import pg from 'pg';
import { openPostgresStore } from '../../src/store/postgres/open.ts';
import { runStoreConformance } from './store.conformance.ts';
import { NO_POSTGRES, startPgCluster, type PgCluster } from '../helpers/pg-cluster.ts';

describe('postgres store (real PostgreSQL cluster)', { skip: NO_POSTGRES }, () => {
  let cluster: PgCluster;
  let n = 0;
  before(async () => {
    cluster = await startPgCluster();
  });
  after(() => cluster?.stop());
  // Each store gets a fresh database so the tests stay independent.
  runStoreConformance('postgres', async () => {
    const db = `eph_t${n++}`;
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    await admin.query(`create database ${db}`);
    await admin.end();
    return openPostgresStore(cluster.url.replace(/\/postgres$/, `/${db}`));
  });
});
