import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { EphError } from '../core/errors.ts';
import type { ApplianceRecord } from '../core/types.ts';
import type { ApplianceDriver } from './appliance.ts';
import { findPgBin } from './binaries.ts';
import type { RunAs } from './run-as.ts';
import { assertTraversable, makePrivateDir, resolveRunAs } from './run-as.ts';
import { baseEnv, commandStream, runCommand } from './run-command.ts';
import { ServerProcess, stopByPidFile } from './server-process.ts';

export interface PostgresDriverOptions {
  /** Told when the server of the appliance in `dir` dies on its own. */
  onCrash?: (dir: string, output: string) => void;
  /** Directory of initdb/postgres/pg_dump/psql; found when absent (see findPgBin). */
  pgBin?: string;
  /** Account to run as when the cloud is root; default `postgres`. */
  runAs?: string;
}

/**
 * Managed PostgreSQL: one cluster per appliance in `DIR/pgdata`, owned by an
 * unprivileged account, listening on 127.0.0.1 only, its Unix socket in the
 * private `DIR/run`. The user gets a generated role (password stored as
 * SCRAM-SHA-256) owning a database named after the appliance; the cluster's
 * superuser is reachable only through that private socket (peer auth).
 */
export class PostgresDriver implements ApplianceDriver {
  readonly kind = 'postgres' as const;
  readonly defaultLocalPort = 5432;
  readonly backupFormat = { contentType: 'application/sql', extension: 'sql' };
  readonly #opts: PostgresDriverOptions;
  readonly #running = new Map<string, ServerProcess>();
  #who: RunAs | undefined;

  constructor(opts: PostgresDriverOptions = {}) {
    this.#opts = opts;
  }

  #bin(name: string): string {
    return join(this.#opts.pgBin ?? findPgBin(), name);
  }

  get #account(): RunAs {
    this.#who ??= resolveRunAs(this.#opts.runAs ? [this.#opts.runAs] : ['postgres']);
    return this.#who;
  }

  async create(rec: ApplianceRecord, dir: string): Promise<Record<string, string>> {
    const initdb = this.#bin('initdb');
    const who = this.#account;
    await assertTraversable(dir, who);
    await makePrivateDir(dir, who);
    await makePrivateDir(join(dir, 'run'), who);
    await runCommand(
      initdb,
      ['-D', join(dir, 'pgdata'), '-E', 'UTF8', '--no-locale', '--auth-local=peer', '--auth-host=scram-sha-256'],
      { who, cwd: dir },
    );
    await this.start(rec, dir);
    const settings = {
      role: `u_${randomBytes(5).toString('hex')}`,
      password: randomBytes(18).toString('base64url'),
      database: rec.name,
    };
    // Through stdin, never argv: the password must not show in `ps`.
    const sql = [
      `CREATE ROLE ${ident(settings.role)} LOGIN PASSWORD ${literal(settings.password)};`,
      `CREATE DATABASE ${ident(settings.database)} OWNER ${ident(settings.role)};`,
      `REVOKE ALL ON DATABASE ${ident(settings.database)} FROM PUBLIC;`,
      '',
    ].join('\n');
    await this.#superPsql(rec, dir, 'postgres', sql);
    return settings;
  }

  async start(rec: ApplianceRecord, dir: string): Promise<void> {
    const key = dir;
    if (this.#running.get(key)?.alive) return;
    const proc = await ServerProcess.start({
      command: this.#bin('postgres'),
      args: [
        '-D', join(dir, 'pgdata'),
        '-p', String(rec.port),
        '-h', '127.0.0.1',
        '-k', join(dir, 'run'),
        '-c', 'unix_socket_permissions=0700',
        '-c', 'logging_collector=off',
      ],
      cwd: dir,
      who: this.#account,
      pidFile: join(dir, 'server.pid'),
      onCrash: (output: string) => {
        this.#running.delete(dir);
        this.#opts.onCrash?.(dir, output);
      },
      readyLine: /database system is ready to accept connections/,
      stopSignal: 'SIGINT',
    });
    this.#running.set(key, proc);
  }

  async stop(_rec: ApplianceRecord, dir: string): Promise<void> {
    const proc = this.#running.get(dir);
    this.#running.delete(dir);
    if (proc) await proc.stop();
    else await stopByPidFile(join(dir, 'server.pid'), this.#bin('postgres'), 'SIGINT');
  }

  backup(rec: ApplianceRecord, dir: string): Readable {
    // --clean --if-exists: restoring into a database that has the tables
    // already replaces them instead of failing. --no-owner: objects belong
    // to whoever restores (the appliance's role), whatever role dumped them.
    return commandStream(
      this.#bin('pg_dump'),
      ['-h', join(dir, 'run'), '-p', String(rec.port), '-d', settingOf(rec, 'database'), '--clean', '--if-exists', '--no-owner', '--no-privileges'],
      { who: this.#account, cwd: dir },
    );
  }

  async restore(rec: ApplianceRecord, dir: string, input: Readable): Promise<void> {
    // As the appliance's own role over TCP, never as the superuser: a dump is
    // user input, and a superuser session would let it run programs on the host.
    await runCommand(
      this.#bin('psql'),
      ['-h', '127.0.0.1', '-p', String(rec.port), '-U', settingOf(rec, 'role'), '-d', settingOf(rec, 'database'), '-X', '-q', '-v', 'ON_ERROR_STOP=1', '--single-transaction'],
      { who: this.#account, cwd: dir, input, env: baseEnv(dir, { PGPASSWORD: settingOf(rec, 'password'), PGCONNECT_TIMEOUT: '10' }) },
    ).catch((e: unknown) => {
      throw e instanceof EphError && e.code === 'INTERNAL' ? new EphError('INVALID_VALUE', `restore: ${e.message}`) : e;
    });
  }

  url(rec: ApplianceRecord, localPort: number): string {
    const role = encodeURIComponent(settingOf(rec, 'role'));
    const password = encodeURIComponent(settingOf(rec, 'password'));
    return `postgres://${role}:${password}@127.0.0.1:${localPort}/${encodeURIComponent(settingOf(rec, 'database'))}`;
  }

  #superPsql(rec: ApplianceRecord, dir: string, database: string, sql: string): Promise<string> {
    return runCommand(
      this.#bin('psql'),
      ['-h', join(dir, 'run'), '-p', String(rec.port), '-d', database, '-X', '-q', '-v', 'ON_ERROR_STOP=1'],
      { who: this.#account, cwd: dir, input: sql },
    );
  }
}

function settingOf(rec: ApplianceRecord, key: string): string {
  const v = rec.settings[key];
  if (v === undefined) throw new EphError('INTERNAL', `appliance ${rec.name}: setting '${key}' is missing`);
  return v;
}

function ident(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}

function literal(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}
