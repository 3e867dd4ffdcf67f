import { chmodSync, closeSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { SqlStore } from '../sql-store.ts';
import type { Tables } from '../schema.ts';

/** The embedded default: one SQLite file, WAL, fsync on every commit so that an answered write survives a crash. */
export async function openSqliteStore(file: string): Promise<SqlStore> {
  if (file !== ':memory:') restrictToOwner(file);
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  const store = new SqlStore(new Kysely<Tables>({ dialect: new SqliteDialect({ database: db }) }), 'sqlite');
  await store.migrate();
  return store;
}

/**
 * Makes the database file (every tenant's appliance passwords and PSK keys)
 * 0600 before SQLite opens it: SQLite gives the -wal and -shm files it
 * creates the mode of the database file. Files left 0644 by an earlier
 * version are closed to others too.
 */
function restrictToOwner(file: string): void {
  closeSync(openSync(file, 'a', 0o600));
  for (const f of [file, `${file}-wal`, `${file}-shm`]) {
    try {
      chmodSync(f, 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
}
