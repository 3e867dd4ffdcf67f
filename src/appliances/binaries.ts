import { accessSync, constants, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { EphError } from '../core/errors.ts';

/** Where the programs appliances need are; each found on its own when absent. */
export interface ApplianceBinaries {
  /** Directory holding initdb, postgres, pg_dump and psql. */
  pgBin?: string;
  redisServer?: string;
  mongod?: string;
  mongosh?: string;
}

/** The executable `name` on PATH, or null. */
export function onPath(name: string, env: NodeJS.ProcessEnv = process.env): string | null {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir !== '' && isExecutable(join(dir, name))) return join(dir, name);
  }
  return null;
}

export function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * PostgreSQL's server programs: `EPH_PG_BIN`, else the newest Debian
 * versioned directory (`/usr/lib/postgresql/<v>/bin`: Debian puts only client
 * wrappers on PATH, never initdb), else PATH.
 */
export function findPgBin(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env.EPH_PG_BIN;
  if (explicit) {
    if (isExecutable(join(explicit, 'initdb'))) return explicit;
    throw new EphError('DEPENDENCY_MISSING', `initdb not found in EPH_PG_BIN (${explicit})`);
  }
  const root = '/usr/lib/postgresql';
  let versions: string[] = [];
  try {
    versions = readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  } catch {
    // No Debian layout; PATH below.
  }
  for (const v of versions) if (isExecutable(join(root, v, 'bin', 'initdb'))) return join(root, v, 'bin');
  const initdb = onPath('initdb', env);
  if (initdb) return initdb.slice(0, -'/initdb'.length);
  throw new EphError('DEPENDENCY_MISSING', 'initdb not found: install PostgreSQL server binaries or set EPH_PG_BIN');
}

export function findRedisServer(env: NodeJS.ProcessEnv = process.env): string {
  const p = env.EPH_REDIS_SERVER ?? onPath('redis-server', env);
  if (p && isExecutable(p)) return p;
  throw new EphError('DEPENDENCY_MISSING', 'redis-server not found: install Redis or set EPH_REDIS_SERVER');
}

export function findMongod(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env.EPH_MONGOD;
  if (explicit) {
    if (isExecutable(explicit)) return explicit;
    throw new EphError('DEPENDENCY_MISSING', `mongod not found at ${explicit} (EPH_MONGOD): install MongoDB or fix EPH_MONGOD`);
  }
  const p = onPath('mongod', env);
  if (p) return p;
  throw new EphError('DEPENDENCY_MISSING', 'mongod not found: install MongoDB or set EPH_MONGOD');
}

export function findMongosh(env: NodeJS.ProcessEnv = process.env): string {
  const p = env.EPH_MONGOSH ?? onPath('mongosh', env) ?? onPath('mongo', env);
  if (p && isExecutable(p)) return p;
  throw new EphError('DEPENDENCY_MISSING', 'mongosh not found: install the MongoDB shell or set EPH_MONGOSH');
}
