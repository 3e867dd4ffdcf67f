import { join } from 'node:path';
import type { Store } from './store.ts';
import { openSqliteStore } from './sqlite/open.ts';
import { openPostgresStore } from './postgres/open.ts';

/** `sqlite` → DATA/eph.sqlite; a postgres:// URL → that database. */
export function openStore(spec: string, dataDir: string): Promise<Store> {
  return spec === 'sqlite' ? openSqliteStore(join(dataDir, 'eph.sqlite')) : openPostgresStore(spec);
}
