import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { SqlStore } from '../sql-store.ts';
import type { Tables } from '../schema.ts';

/** The embedded default: one SQLite file, WAL, fsync on every commit so that an answered write survives a crash. */
export async function openSqliteStore(file: string): Promise<SqlStore> {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  const store = new SqlStore(new Kysely<Tables>({ dialect: new SqliteDialect({ database: db }) }), 'sqlite');
  await store.migrate();
  return store;
}
