import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { PassThrough } from 'node:stream';
import { EphError } from '../core/errors.ts';
import type { ApplianceRecord } from '../core/types.ts';
import { writeAccountFile } from './account-files.ts';
import type { ApplianceDriver } from './appliance.ts';
import { findMongod, findMongosh, onPath } from './binaries.ts';
import type { RunAs } from './run-as.ts';
import { assertTraversable, makePrivateDir, resolveRunAs } from './run-as.ts';
import { baseEnv, commandStream, runCommand } from './run-command.ts';
import { ServerProcess, stopByPidFile } from './server-process.ts';

export interface MongoDriverOptions {
  /** Told when the server of the appliance in `dir` dies on its own. */
  onCrash?: (dir: string, output: string) => void;
  /** mongod; found from EPH_MONGOD or PATH when absent. */
  mongod?: string;
  mongosh?: string;
  runAs?: string;
}

/**
 * Managed MongoDB, when a `mongod` binary exists (it cannot be installed on
 * every machine): one mongod per appliance with `--auth`, bound to
 * 127.0.0.1, a generated user owning a database named after the appliance
 * (created through the localhost exception with mongosh). Backups are
 * `mongodump --archive` streams (needs the MongoDB database tools).
 */
export class MongoDriver implements ApplianceDriver {
  readonly kind = 'mongo' as const;
  readonly defaultLocalPort = 27017;
  readonly backupFormat = { contentType: 'application/octet-stream', extension: 'archive' };
  readonly #opts: MongoDriverOptions;
  readonly #running = new Map<string, ServerProcess>();
  #who: RunAs | undefined;

  constructor(opts: MongoDriverOptions = {}) {
    this.#opts = opts;
  }

  /** Throws DEPENDENCY_MISSING naming the binary when mongod cannot be found. */
  mongod(): string {
    return this.#opts.mongod ?? findMongod();
  }

  get #account(): RunAs {
    this.#who ??= resolveRunAs(this.#opts.runAs ? [this.#opts.runAs] : ['mongodb', 'mongod']);
    return this.#who;
  }

  async create(rec: ApplianceRecord, dir: string): Promise<Record<string, string>> {
    this.mongod();
    const mongosh = this.#opts.mongosh ?? findMongosh();
    const who = this.#account;
    await assertTraversable(dir, who);
    await makePrivateDir(dir, who);
    await makePrivateDir(join(dir, 'db'), who);
    await this.start(rec, dir);
    const settings = { user: `u_${randomBytes(5).toString('hex')}`, password: randomBytes(18).toString('base64url'), database: rec.name };
    // The password goes through the environment, not argv (visible in `ps`).
    const script =
      'db.getSiblingDB(process.env.EPH_DB).createUser({ user: process.env.EPH_USER, pwd: process.env.EPH_PASSWORD, ' +
      'roles: [{ role: "dbOwner", db: process.env.EPH_DB }] })';
    await runCommand(mongosh, ['--quiet', '--host', '127.0.0.1', '--port', String(rec.port), '--eval', script], {
      who,
      cwd: dir,
      env: baseEnv(dir, { EPH_DB: settings.database, EPH_USER: settings.user, EPH_PASSWORD: settings.password }),
    });
    return settings;
  }

  async start(rec: ApplianceRecord, dir: string): Promise<void> {
    if (this.#running.get(dir)?.alive) return;
    const proc = await ServerProcess.start({
      command: this.mongod(),
      args: ['--dbpath', join(dir, 'db'), '--port', String(rec.port), '--bind_ip', '127.0.0.1', '--auth', '--nounixsocket'],
      cwd: dir,
      who: this.#account,
      pidFile: join(dir, 'server.pid'),
      onCrash: (output: string) => {
        this.#running.delete(dir);
        this.#opts.onCrash?.(dir, output);
      },
      readyLine: /[Ww]aiting for connections/,
      readyTimeoutMs: 60_000,
      stopSignal: 'SIGTERM',
    });
    this.#running.set(dir, proc);
  }

  async stop(_rec: ApplianceRecord, dir: string): Promise<void> {
    const proc = this.#running.get(dir);
    this.#running.delete(dir);
    if (proc) await proc.stop();
    else await stopByPidFile(join(dir, 'server.pid'), this.mongod(), 'SIGTERM');
  }

  backup(rec: ApplianceRecord, dir: string): Readable {
    const out = new PassThrough();
    this.#toolConfig(rec, dir)
      .then((conf) => {
        const dump = commandStream(this.#tool('mongodump'), ['--config', conf, ...this.#login(rec), '--db', rec.settings.database ?? rec.name, '--archive'], {
          who: this.#account,
          cwd: dir,
        });
        dump.on('error', (e) => out.destroy(e));
        dump.on('close', () => void rm(conf, { force: true }));
        dump.pipe(out);
      })
      .catch((e: unknown) => out.destroy(e as Error));
    return out;
  }

  async restore(rec: ApplianceRecord, dir: string, input: Readable): Promise<void> {
    const conf = await this.#toolConfig(rec, dir);
    try {
      await runCommand(this.#tool('mongorestore'), ['--config', conf, ...this.#login(rec), '--archive', '--drop'], {
        who: this.#account,
        cwd: dir,
        input,
      });
    } finally {
      await rm(conf, { force: true });
    }
  }

  url(rec: ApplianceRecord, localPort: number): string {
    const s = rec.settings;
    return `mongodb://${encodeURIComponent(s.user ?? '')}:${encodeURIComponent(s.password ?? '')}@127.0.0.1:${localPort}/${encodeURIComponent(s.database ?? rec.name)}`;
  }

  #login(rec: ApplianceRecord): string[] {
    const db = rec.settings.database ?? rec.name;
    return ['--host', '127.0.0.1', '--port', String(rec.port), '--username', rec.settings.user ?? '', '--authenticationDatabase', db];
  }

  #tool(name: string): string {
    const p = onPath(name);
    if (!p) throw new EphError('DEPENDENCY_MISSING', `${name} not found: install the MongoDB database tools`);
    return p;
  }

  /** mongodump/mongorestore read the password from a private config file rather than argv. */
  async #toolConfig(rec: ApplianceRecord, dir: string): Promise<string> {
    const file = join(dir, `tools-${randomBytes(4).toString('hex')}.yaml`);
    const s = rec.settings;
    // In the mongodb account's directory: created without following a link, owned by it, 0600.
    await writeAccountFile(file, `password: ${JSON.stringify(s.password ?? '')}\n`, this.#account, 0o600);
    return file;
  }
}
