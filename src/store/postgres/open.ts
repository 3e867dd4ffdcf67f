import pg from 'pg';
import { Kysely, PostgresDialect } from 'kysely';
import { SqlStore } from '../sql-store.ts';
import type { Tables } from '../schema.ts';

// int8 columns hold epoch milliseconds, well inside Number's exact range.
pg.types.setTypeParser(pg.types.builtins.INT8, (v: string) => Number(v));

/** Cluster mode: several cloud nodes share one PostgreSQL database. */
export async function openPostgresStore(url: string): Promise<SqlStore> {
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  // An idle client whose server went away (restart, failover) emits 'error': the pool drops it
  // and the next query reconnects, so it must not crash the process.
  pool.on('error', () => {});
  const store = new SqlStore(new Kysely<Tables>({ dialect: new PostgresDialect({ pool }) }), 'postgres');
  await store.migrate();
  return store;
}
