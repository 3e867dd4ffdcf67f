import { createHash, randomBytes } from 'node:crypto';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { EphError } from '../core/errors.ts';
import type { ApplianceRecord } from '../core/types.ts';
import type { ApplianceDriver } from './appliance.ts';
import { findRedisServer } from './binaries.ts';
import { createAccountFile, mustOpenAccountFile, writeAccountFile } from './account-files.ts';
import { redisCommand } from './resp.ts';
import type { RedisLogin } from './resp.ts';
import type { RunAs } from './run-as.ts';
import { assertTraversable, makePrivateDir, resolveRunAs } from './run-as.ts';
import { ServerProcess, stopByPidFile } from './server-process.ts';

export interface RedisDriverOptions {
  /** Told when the server of the appliance in `dir` dies on its own. */
  onCrash?: (dir: string, output: string) => void;
  redisServer?: string;
  /** Account to run as when the cloud is root; default `redis`. */
  runAs?: string;
  /** Largest RDB file a restore accepts; default 1 GiB. */
  maxRestoreBytes?: number;
}

/** The ACL user the cloud itself logs in as (SAVE for backups, CONFIG SET after a restore). */
export const REDIS_PLATFORM_USER = 'eph-platform';

/**
 * What the tenant's `default` user may run: everything but the @admin
 * commands (CONFIG, DEBUG, MODULE, REPLICAOF/SLAVEOF, SHUTDOWN, ACL SETUSER,
 * MONITOR, CLIENT KILL…) and MIGRATE (which connects to any host and port
 * the tenant names). SAVE, BGSAVE and LASTSAVE stay: they only write the
 * snapshot the platform's own `dir`/`dbfilename` name.
 */
export const REDIS_TENANT_RULES = '~* &* +@all -@admin -migrate +save +bgsave +lastsave';

/**
 * Managed Redis: one redis-server per appliance, bound to 127.0.0.1, with a
 * generated password, append-only file on (fsync every second) plus RDB
 * snapshots, run as an unprivileged account. The tenant logs in as Redis's
 * `default` user, whose ACL refuses the administrative commands: it cannot
 * move the server to another port or address (CONFIG SET port/bind), make it
 * write elsewhere, load modules or replicate from another host. The cloud
 * uses a second ACL user with a password made anew at each start and kept
 * in memory only.
 */
export class RedisDriver implements ApplianceDriver {
  readonly kind = 'redis' as const;
  readonly defaultLocalPort = 6379;
  readonly backupFormat = { contentType: 'application/octet-stream', extension: 'rdb' };
  readonly #opts: RedisDriverOptions;
  readonly #running = new Map<string, ServerProcess>();
  /** Appliance directory → password of the platform's ACL user for the server running there. */
  readonly #platformPasswords = new Map<string, string>();
  #who: RunAs | undefined;

  constructor(opts: RedisDriverOptions = {}) {
    this.#opts = opts;
  }

  get #account(): RunAs {
    this.#who ??= resolveRunAs(this.#opts.runAs ? [this.#opts.runAs] : ['redis']);
    return this.#who;
  }

  #server(): string {
    return this.#opts.redisServer ?? findRedisServer();
  }

  async create(rec: ApplianceRecord, dir: string): Promise<Record<string, string>> {
    this.#server();
    await assertTraversable(dir, this.#account);
    await makePrivateDir(dir, this.#account);
    const settings = { password: randomBytes(24).toString('base64url') };
    await this.start({ ...rec, settings }, dir);
    return settings;
  }

  start(rec: ApplianceRecord, dir: string): Promise<void> {
    return this.#start(rec, dir, true);
  }

  async #start(rec: ApplianceRecord, dir: string, appendOnly: boolean): Promise<void> {
    if (this.#running.get(dir)?.alive) return;
    // Written at each start: the port may have moved, and the password stays
    // out of the command line (visible in `ps`).
    const platformPassword = randomBytes(24).toString('base64url');
    const who = this.#account;
    // The directory is the redis account's: a link it left as redis.conf is replaced, never written through.
    await writeAccountFile(join(dir, 'redis.conf'), redisConf(rec, dir, appendOnly, platformPassword), who, 0o600);
    this.#platformPasswords.set(dir, platformPassword);
    const conf = join(dir, 'redis.conf');
    const proc = await ServerProcess.start({
      command: this.#server(),
      args: [conf],
      cwd: dir,
      who,
      pidFile: join(dir, 'server.pid'),
      onCrash: (output: string) => {
        this.#running.delete(dir);
        this.#opts.onCrash?.(dir, output);
      },
      readyLine: /Ready to accept connections/,
      stopSignal: 'SIGTERM',
    });
    this.#running.set(dir, proc);
  }

  async stop(_rec: ApplianceRecord, dir: string): Promise<void> {
    const proc = this.#running.get(dir);
    this.#running.delete(dir);
    this.#platformPasswords.delete(dir);
    if (proc) await proc.stop();
    else await stopByPidFile(join(dir, 'server.pid'), this.#server(), 'SIGTERM');
  }

  #platform(rec: ApplianceRecord, dir: string): RedisLogin {
    const password = this.#platformPasswords.get(dir);
    if (!password) throw new EphError('CONFLICT', `appliance '${rec.name}' is not running`);
    return { user: REDIS_PLATFORM_USER, password };
  }

  backup(rec: ApplianceRecord, dir: string): Readable {
    const login = this.#platform(rec, dir);
    return Readable.from(
      (async function* () {
        // SAVE writes a temporary file and renames it: the file we open is a
        // whole snapshot even if another save follows. Opened without
        // following a link the redis account may have put there.
        await redisCommand(rec.port, login, ['SAVE']);
        const file = (await mustOpenAccountFile(join(dir, 'dump.rdb'), 'backup')).createReadStream();
        try {
          yield* file;
        } finally {
          // Also when the reader went away half-way: the descriptor is closed.
          file.destroy();
        }
      })(),
      { objectMode: false },
    );
  }

  async restore(rec: ApplianceRecord, dir: string, input: Readable): Promise<void> {
    const who = this.#account;
    const incoming = join(dir, 'restore.rdb.part');
    // Made anew, owned by redis from the start: whatever the redis account left under that name is not followed.
    await rm(incoming, { force: true });
    const fh = await createAccountFile(incoming, who, 0o600);
    try {
      // flush: synced to disk before the stream closes the descriptor.
      await pipeline(input, rdbCheck(this.#opts.maxRestoreBytes ?? 1 << 30), fh.createWriteStream({ flush: true }));
    } catch (e) {
      await rm(incoming, { force: true });
      throw e;
    } finally {
      await fh.close();
    }
    await this.stop(rec, dir);
    // With the append-only file on, Redis loads only that file and ignores
    // the RDB; so load the RDB with AOF off, then turn AOF on, which
    // rewrites the AOF from the loaded data.
    await rm(join(dir, 'appendonlydir'), { recursive: true, force: true });
    await rename(incoming, join(dir, 'dump.rdb'));
    await this.#start(rec, dir, false);
    const login = this.#platform(rec, dir);
    await redisCommand(rec.port, login, ['CONFIG', 'SET', 'appendonly', 'yes']);
    await waitAofRewritten(rec.port, login);
  }

  url(rec: ApplianceRecord, localPort: number): string {
    // `default` is Redis 6+'s user: redis-cli -u refuses an empty user name with the password.
    return `redis://default:${encodeURIComponent(passwordOf(rec))}@127.0.0.1:${localPort}/0`;
  }
}

function redisConf(rec: ApplianceRecord, dir: string, appendOnly: boolean, platformPassword: string): string {
  // Passwords as SHA-256 (`#…`): the file holds no secret a reader could log in with.
  const sha = (p: string): string => createHash('sha256').update(p).digest('hex');
  return [
    `port ${rec.port}`,
    'bind 127.0.0.1',
    'protected-mode yes',
    `user default reset on #${sha(passwordOf(rec))} ${REDIS_TENANT_RULES}`,
    `user ${REDIS_PLATFORM_USER} reset on #${sha(platformPassword)} ~* &* +@all`,
    // Redis 7's defaults, written out so that an upgrade cannot turn them on:
    // CONFIG SET of dir/dbfilename, DEBUG and MODULE refused even to admins.
    'enable-protected-configs no',
    'enable-debug-command no',
    'enable-module-command no',
    `dir "${dir}"`,
    'dbfilename dump.rdb',
    `appendonly ${appendOnly ? 'yes' : 'no'}`,
    'appendfsync everysec',
    'save 3600 1 300 100 60 10000',
    'daemonize no',
    'logfile ""',
    'unixsocket ""',
    '',
  ].join('\n');
}

function passwordOf(rec: ApplianceRecord): string {
  const p = rec.settings.password;
  if (!p) throw new EphError('INTERNAL', `appliance ${rec.name}: redis password is missing`);
  return p;
}

/** Refuses anything that is not an RDB file (they start with "REDIS") or is too large. */
function rdbCheck(limit: number): Transform {
  let seen = 0;
  let head = Buffer.alloc(0);
  return new Transform({
    transform(chunk: Buffer, _enc, done): void {
      seen += chunk.length;
      if (seen > limit) return done(new EphError('ARCHIVE_TOO_LARGE', `restore: the RDB file is over ${limit} bytes`));
      if (head.length < 5) {
        head = Buffer.concat([head, chunk]).subarray(0, 5);
        if (head.length === 5 && head.toString('latin1') !== 'REDIS') {
          return done(new EphError('INVALID_VALUE', 'restore: expected a Redis RDB file (as made by backup)'));
        }
      }
      done(null, chunk);
    },
    flush(done): void {
      done(head.length < 5 ? new EphError('INVALID_VALUE', 'restore: expected a Redis RDB file (as made by backup)') : null);
    },
  });
}

async function waitAofRewritten(port: number, login: RedisLogin): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const info = String(await redisCommand(port, login, ['INFO', 'persistence']));
    const field = (k: string): string | undefined => new RegExp(`^${k}:(\\S+)`, 'm').exec(info)?.[1];
    if (field('aof_rewrite_in_progress') === '0' && field('aof_rewrite_scheduled') === '0') {
      if (field('aof_last_bgrewrite_status') !== 'ok') throw new EphError('INTERNAL', 'redis could not rewrite its append-only file');
      return;
    }
    if (Date.now() > deadline) throw new EphError('INTERNAL', 'redis did not finish rewriting its append-only file in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}
