import { mkdir, rm } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import type { Clock } from '../core/clock.ts';
import { isoWithOffset } from '../core/clock.ts';
import { EphError, isEphError } from '../core/errors.ts';
import type { ApplianceKind, ApplianceRecord, ApplianceStatus, User } from '../core/types.ts';
import type { Store } from '../store/store.ts';
import { formatPskFile, generatePsk, parsePskFile } from '../tunnel/psk-file.ts';
import { startPskEndpoint } from '../tunnel/psk-server.ts';
import type { PskEndpoint } from '../tunnel/psk-server.ts';
import { clientStunnelConf } from '../tunnel/stunnel-conf.ts';
import type { ApplianceDriver } from './appliance.ts';
import type { ApplianceBinaries } from './binaries.ts';
import { findMongod, findPgBin, findRedisServer } from './binaries.ts';
import { freeLoopbackPort, portIsFree } from './free-port.ts';
import { MongoDriver } from './mongo.ts';
import { PostgresDriver } from './postgres.ts';
import { RedisDriver } from './redis.ts';
import { StaticDriver } from './static.ts';
import { StaticFiles } from './static-files.ts';
import type { StaticSite } from './static-site.ts';
import { KeyedLock } from '../core/keyed-lock.ts';

export const APPLIANCE_KINDS: readonly ApplianceKind[] = ['postgres', 'redis', 'static', 'mongo'];
const NAME = /^[a-z][a-z0-9-]{0,30}$/;

/** Where the service reports what happens without a caller to tell (start at load, refused handshakes). */
export interface ApplianceLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface ApplianceServiceOptions {
  store: Store;
  /** `DATA/appliances`: one directory per appliance below it. */
  dataDir: string;
  /** Host name clients use to reach the TLS-PSK endpoints (in `public` and stunnel.conf). */
  publicHost: string;
  clock: Clock;
  binaries?: ApplianceBinaries;
  /** Address the TLS-PSK endpoints listen on; default 127.0.0.1 (`0.0.0.0` to serve other machines). */
  publicBind?: string;
  /** Unprivileged account for every database server when the cloud runs as root (default: postgres, redis, mongodb). */
  runAs?: string;
  log?: ApplianceLog;
  /**
   * Identities of instances' attachments (src/services/attachments.ts),
   * accepted besides the appliance's own and kept apart from them: uploading
   * a psk.txt does not revoke an attachment.
   */
  attachedIdentities?: (userId: string, name: string) => ReadonlyMap<string, string> | undefined;
  /** Told after an appliance is deleted, so that its attachments go with it. */
  onRemoved?: (userId: string, name: string) => Promise<void>;
}

/** What attaching an appliance to an instance needs to know of it. */
export interface AttachTarget {
  kind: ApplianceKind;
  /** Port of its TLS-PSK endpoint. */
  publicPort: number;
  /** The port its clients expect on their side (5432 for PostgreSQL). */
  defaultLocalPort: number;
  /** The client URL through a tunnel accepting on `localPort`. */
  url(localPort: number): string;
}

/** An appliance as the API and the CLI show it. */
export interface ApplianceView {
  name: string;
  kind: ApplianceKind;
  status: ApplianceStatus;
  /** host:port of its TLS-PSK endpoint. */
  public: string;
  /** Client URL through a tunnel on the kind's default local port. */
  url: string;
  createdAt: string;
  lastError: string | null;
}

interface Runtime {
  psk: Map<string, string>;
  endpoint: PskEndpoint | null;
}

/**
 * Managed appliances (PostgreSQL, Redis, static files, MongoDB) of every
 * user: creates them in `dataDir/<user>/<name>`, runs each service on a
 * loopback port and, in front of it, a TLS-PSK endpoint that stunnel clients
 * and `eph tunnel` reach. State lives in the store; `load()` restarts what
 * was running before the cloud stopped.
 *
 * @example
 * const appliances = new ApplianceService({ store, dataDir: join(data, 'appliances'), publicHost: 'db.example.org', clock: systemClock });
 * await appliances.load();
 * const rec = await appliances.create(user, 'postgres', 'mydb');
 * console.log(appliances.view(rec).url, formatPskFile(rec.psk));
 */
export class ApplianceService {
  readonly #o: ApplianceServiceOptions;
  readonly #drivers: Record<ApplianceKind, ApplianceDriver>;
  readonly #static: StaticDriver;
  readonly #runtime = new Map<string, Runtime>();
  readonly #locks = new KeyedLock();
  readonly #sites = new Map<string, StaticSite>();
  /** Static site name → owner, for the gate's host lookups. */
  readonly #staticOwners = new Map<string, string>();

  constructor(opts: ApplianceServiceOptions) {
    this.#o = opts;
    const b = opts.binaries ?? {};
    const common = { ...(opts.runAs ? { runAs: opts.runAs } : {}), onCrash: (dir: string, output: string) => void this.#crashed(dir, output) };
    this.#static = new StaticDriver();
    this.#drivers = {
      postgres: new PostgresDriver({ ...(b.pgBin ? { pgBin: b.pgBin } : {}), ...common }),
      redis: new RedisDriver({ ...(b.redisServer ? { redisServer: b.redisServer } : {}), ...common }),
      static: this.#static,
      mongo: new MongoDriver({ ...(b.mongod ? { mongod: b.mongod } : {}), ...(b.mongosh ? { mongosh: b.mongosh } : {}), ...common }),
    };
  }

  /** Creates and starts an appliance; its record carries the first PSK identity (`formatPskFile(rec.psk)` is the user's psk.txt). */
  async create(user: User, kind: string, name: string): Promise<ApplianceRecord> {
    if (!APPLIANCE_KINDS.includes(kind as ApplianceKind)) {
      throw new EphError('INVALID_VALUE', `appliance kind: expected one of ${APPLIANCE_KINDS.join(', ')}, got '${kind}'`);
    }
    if (!NAME.test(name)) {
      throw new EphError('INVALID_VALUE', `appliance name: expected a lowercase letter then up to 30 of a-z, 0-9 and '-', got '${name}'`);
    }
    const k = kind as ApplianceKind;
    this.#preflight(k);
    const run = (): Promise<ApplianceRecord> => this.#locks.run(keyOf(user.id, name), () => this.#create(user, k, name));
    // Static sites are served at <name>.static.<domain>: the name is global.
    return k === 'static' ? this.#locks.run(`static/${name}`, run) : run();
  }

  async #create(user: User, kind: ApplianceKind, name: string): Promise<ApplianceRecord> {
    const { store } = this.#o;
    if (await store.getAppliance(user.id, name)) throw new EphError('CONFLICT', `appliance '${name}' exists already`);
    if (kind === 'static' && (await this.#staticOwner(name)) !== null) {
      throw new EphError('CONFLICT', `static site name '${name}' is taken`);
    }
    const first = generatePsk(`${name}-client`);
    const colon = first.indexOf(':');
    const rec: ApplianceRecord = {
      userId: user.id,
      name,
      kind,
      status: 'creating',
      port: await freeLoopbackPort(await this.#takenPorts()),
      publicPort: 0,
      settings: {},
      psk: { [first.slice(0, colon)]: first.slice(colon + 1) },
      lastError: null,
      createdAt: this.#o.clock.now(),
    };
    // Recorded first: a crash during creation leaves a 'creating' row that load() cleans up.
    await store.putAppliance(rec);
    const dir = this.#dir(rec);
    const driver = this.#drivers[kind];
    const rt = this.#rt(rec);
    try {
      // Searchable by the unprivileged account a database server runs as.
      await mkdir(join(this.#o.dataDir, user.id), { recursive: true, mode: 0o711 });
      rec.settings = await driver.create(rec, dir);
      await driver.start(rec, dir);
      rt.endpoint = await this.#openEndpoint(rec, 0);
      rec.publicPort = rt.endpoint.address.port;
      rec.status = 'running';
      await store.putAppliance(rec);
    } catch (e) {
      await rt.endpoint?.close();
      await driver.stop(rec, dir).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
      await store.deleteAppliance(rec.userId, name);
      this.#runtime.delete(keyOf(rec.userId, name));
      throw isEphError(e) ? e : new EphError('START_FAILED', `appliance '${name}': ${(e as Error).message}`, { cause: e });
    }
    if (kind === 'static') this.#staticOwners.set(name, rec.userId);
    return rec;
  }

  async list(user: User): Promise<ApplianceRecord[]> {
    return this.#o.store.listAppliances(user.id);
  }

  /** The user's appliance; another user's is NOT_FOUND, as if it did not exist. */
  async get(user: User, name: string): Promise<ApplianceRecord> {
    const rec = await this.#o.store.getAppliance(user.id, name);
    if (!rec) throw new EphError('NOT_FOUND', `appliance '${name}' not found`);
    return rec;
  }

  async start(user: User, name: string): Promise<ApplianceRecord> {
    return this.#locks.run(keyOf(user.id, name), async () => this.#start(await this.get(user, name)));
  }

  async #start(rec: ApplianceRecord): Promise<ApplianceRecord> {
    const rt = this.#rt(rec);
    if (rec.status === 'running' && rt.endpoint) return rec;
    const driver = this.#drivers[rec.kind];
    try {
      // The loopback port may have been taken while the appliance was stopped;
      // only the public port must stay (it is in the users' stunnel.conf).
      if (!(await portIsFree('127.0.0.1', rec.port))) rec.port = await freeLoopbackPort(await this.#takenPorts());
      await driver.start(rec, this.#dir(rec));
      rt.endpoint ??= await this.#openEndpoint(rec, rec.publicPort);
      rec.status = 'running';
      rec.lastError = null;
    } catch (e) {
      await driver.stop(rec, this.#dir(rec)).catch(() => undefined);
      rec.status = 'failed';
      rec.lastError = (e as Error).message;
      await this.#o.store.putAppliance(rec);
      throw isEphError(e) ? e : new EphError('START_FAILED', `appliance '${rec.name}': ${(e as Error).message}`, { cause: e });
    }
    await this.#o.store.putAppliance(rec);
    return rec;
  }

  async stop(user: User, name: string): Promise<ApplianceRecord> {
    return this.#locks.run(keyOf(user.id, name), async () => {
      const rec = await this.get(user, name);
      await this.#halt(rec);
      rec.status = 'stopped';
      await this.#o.store.putAppliance(rec);
      return rec;
    });
  }

  /** Stops the appliance and deletes it with all its data. */
  async remove(user: User, name: string): Promise<void> {
    await this.#locks.run(keyOf(user.id, name), async () => {
      const rec = await this.get(user, name);
      await this.#halt(rec).catch((e: unknown) => this.#o.log?.warn({ err: e, appliance: name }, 'stopping before removal failed'));
      await rm(this.#dir(rec), { recursive: true, force: true });
      await this.#o.store.deleteAppliance(rec.userId, rec.name);
      this.#runtime.delete(keyOf(rec.userId, rec.name));
      this.#sites.delete(keyOf(rec.userId, rec.name));
      if (rec.kind === 'static') this.#staticOwners.delete(rec.name);
    });
    await this.#o.onRemoved?.(user.id, name);
  }

  /** The appliance's data as a stream: SQL (pg_dump), an RDB file, a .tar.gz of the files. */
  async backup(user: User, name: string): Promise<{ stream: Readable; filename: string; contentType: string }> {
    const rec = await this.get(user, name);
    this.#mustRun(rec, 'backup');
    const driver = this.#drivers[rec.kind];
    return {
      stream: driver.backup(rec, this.#dir(rec)),
      filename: `${rec.name}.${driver.backupFormat.extension}`,
      contentType: driver.backupFormat.contentType,
    };
  }

  /** Replaces the appliance's data with a stream that {@link backup} produced. */
  async restore(user: User, name: string, input: Readable): Promise<ApplianceRecord> {
    return this.#locks.run(keyOf(user.id, name), async () => {
      const rec = await this.get(user, name);
      this.#mustRun(rec, 'restore');
      await this.#drivers[rec.kind].restore(rec, this.#dir(rec), input);
      return rec;
    });
  }

  /**
   * Replaces the appliance's PSK identities with a psk.txt. Connections of
   * identities that are gone (or whose key changed) are cut, and the next
   * handshake with them is refused.
   * @throws EphError INVALID_VALUE naming the malformed line.
   * @returns the identities now accepted.
   */
  async setPsk(user: User, name: string, pskText: string): Promise<string[]> {
    const parsed = parsePskFile(pskText);
    return this.#locks.run(keyOf(user.id, name), async () => {
      const rec = await this.get(user, name);
      const before = rec.psk;
      rec.psk = Object.fromEntries(parsed);
      await this.#o.store.putAppliance(rec);
      const rt = this.#rt(rec);
      rt.psk = new Map(parsed);
      for (const [identity, key] of Object.entries(before)) {
        if (parsed.get(identity) !== key) rt.endpoint?.disconnect(identity);
      }
      return [...parsed.keys()];
    });
  }

  /** Identities only: keys never leave the cloud after creation. */
  async pskIdentities(user: User, name: string): Promise<string[]> {
    return Object.keys((await this.get(user, name)).psk);
  }

  /** The client stunnel.conf of the appliance, in the documented shape. */
  async stunnelConf(user: User, name: string): Promise<string> {
    const rec = await this.get(user, name);
    return clientStunnelConf({
      service: rec.name,
      accept: `127.0.0.1:${this.#drivers[rec.kind].defaultLocalPort}`,
      connect: `${this.#o.publicHost}:${rec.publicPort}`,
    });
  }

  /**
   * The user's appliance as an attachment sees it.
   * @throws EphError NOT_FOUND (another user's too), CONFLICT while it is being created.
   */
  async attachTarget(user: User, name: string): Promise<AttachTarget> {
    const rec = await this.get(user, name);
    if (rec.status === 'creating' || rec.publicPort === 0) throw new EphError('CONFLICT', `appliance '${name}' is still being created`);
    const driver = this.#drivers[rec.kind];
    return { kind: rec.kind, publicPort: rec.publicPort, defaultLocalPort: driver.defaultLocalPort, url: (port) => driver.url(rec, port) };
  }

  /** Cuts the live connections of one identity (a detached attachment); answers how many. */
  disconnect(userId: string, name: string, identity: string): number {
    return this.#runtime.get(keyOf(userId, name))?.endpoint?.disconnect(identity) ?? 0;
  }

  /** The psk.txt of a record (shown once, in the answer to create). */
  pskFile(rec: ApplianceRecord): string {
    return formatPskFile(rec.psk);
  }

  view(rec: ApplianceRecord): ApplianceView {
    return {
      name: rec.name,
      kind: rec.kind,
      status: rec.status,
      public: `${this.#o.publicHost}:${rec.publicPort}`,
      url: this.#url(rec),
      createdAt: isoWithOffset(rec.createdAt),
      lastError: rec.lastError,
    };
  }

  #url(rec: ApplianceRecord): string {
    // While it is being created the settings (role, password) do not exist yet.
    if (rec.status === 'creating') return '';
    const driver = this.#drivers[rec.kind];
    return driver.url(rec, driver.defaultLocalPort);
  }

  /** The files of the user's static appliance, for the API's upload/list/delete. */
  async staticFiles(user: User, name: string): Promise<StaticFiles> {
    const rec = await this.get(user, name);
    if (rec.kind !== 'static') throw new EphError('INVALID_VALUE', `appliance '${name}' is a ${rec.kind} appliance, not static files`);
    return this.staticSite(rec).files;
  }

  /** The HTTP site of a static appliance (answers 503 while it is stopped). */
  staticSite(rec: ApplianceRecord): StaticSite {
    const key = keyOf(rec.userId, rec.name);
    let site = this.#sites.get(key);
    if (!site) {
      site = this.#static.site(this.#dir(rec), () => this.#runtime.get(key)?.endpoint != null);
      this.#sites.set(key, site);
    }
    return site;
  }

  /**
   * The site served at `<name>.static.<domain>`, or null: what the gate
   * calls for such a host (`site.handle(req, res)`).
   */
  async staticSiteByName(name: string): Promise<StaticSite | null> {
    const owner = await this.#staticOwner(name);
    if (owner === null) return null;
    const rec = await this.#o.store.getAppliance(owner, name);
    return rec && rec.kind === 'static' ? this.staticSite(rec) : null;
  }

  /**
   * At cloud start: finishes what a crash interrupted (half-created
   * appliances are removed) and starts the appliances that were running,
   * on the same public ports. One that fails is marked failed with the reason.
   */
  async load(): Promise<void> {
    for (const rec of await this.#o.store.listAppliances()) {
      if (rec.kind === 'static') this.#staticOwners.set(rec.name, rec.userId);
      if (rec.status === 'creating') {
        await this.#drivers[rec.kind].stop(rec, this.#dir(rec)).catch(() => undefined);
        await rm(this.#dir(rec), { recursive: true, force: true });
        await this.#o.store.deleteAppliance(rec.userId, rec.name);
        continue;
      }
      if (rec.status !== 'running') continue;
      await this.#locks.run(keyOf(rec.userId, rec.name), async () => {
        try {
          await this.#start(rec);
          this.#o.log?.info({ appliance: rec.name, kind: rec.kind, user: rec.userId }, 'appliance started');
        } catch (e) {
          this.#o.log?.warn({ appliance: rec.name, user: rec.userId, err: (e as Error).message }, 'appliance failed to start');
        }
      });
    }
  }

  /** At cloud shutdown: stops every service and endpoint, leaving the recorded status so that load() restarts them. */
  async close(): Promise<void> {
    const all = await this.#o.store.listAppliances();
    await Promise.all(
      all.map((rec) =>
        this.#locks.run(keyOf(rec.userId, rec.name), () =>
          this.#halt(rec).catch((e: unknown) => this.#o.log?.warn({ appliance: rec.name, err: (e as Error).message }, 'stopping failed')),
        ),
      ),
    );
  }

  /** A database server died on its own: the appliance is failed (with its last words) until started again. */
  async #crashed(dir: string, output: string): Promise<void> {
    const [userId, name] = relative(this.#o.dataDir, dir).split(sep);
    if (!userId || !name) return;
    await this.#locks.run(keyOf(userId, name), async () => {
      const rec = await this.#o.store.getAppliance(userId, name);
      if (!rec || rec.status !== 'running') return;
      await this.#halt(rec).catch(() => undefined);
      rec.status = 'failed';
      rec.lastError = `the ${rec.kind} server exited unexpectedly: ${output}`;
      await this.#o.store.putAppliance(rec);
      this.#o.log?.warn({ appliance: name, user: userId, output }, 'appliance server exited unexpectedly');
    }).catch((e: unknown) => this.#o.log?.warn({ appliance: name, err: (e as Error).message }, 'recording a crash failed'));
  }

  async #halt(rec: ApplianceRecord): Promise<void> {
    const rt = this.#runtime.get(keyOf(rec.userId, rec.name));
    if (rt?.endpoint) {
      const ep = rt.endpoint;
      rt.endpoint = null;
      await ep.close();
    }
    await this.#drivers[rec.kind].stop(rec, this.#dir(rec));
  }

  #openEndpoint(rec: ApplianceRecord, port: number): Promise<PskEndpoint> {
    const rt = this.#rt(rec);
    const log = this.#o.log;
    return startPskEndpoint({
      listen: { host: this.#o.publicBind ?? '127.0.0.1', port },
      target: { host: '127.0.0.1', port: rec.port },
      identities: () => {
        const attached = this.#o.attachedIdentities?.(rec.userId, rec.name);
        // The appliance's own identities win a (most unlikely) clash of names.
        return attached === undefined || attached.size === 0 ? rt.psk : new Map([...attached, ...rt.psk]);
      },
      ...(log
        ? {
            onRefused: (reason: string, remoteAddress: string | undefined) =>
              log.info({ appliance: rec.name, user: rec.userId, remoteAddress, reason }, 'tunnel handshake refused'),
          }
        : {}),
    }).catch((e: unknown) => {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'EADDRINUSE') {
        throw new EphError('START_FAILED', `appliance '${rec.name}': its public port ${port} is in use by another program`);
      }
      throw e;
    });
  }

  #mustRun(rec: ApplianceRecord, what: string): void {
    if (rec.kind !== 'static' && rec.status !== 'running') {
      throw new EphError('CONFLICT', `appliance '${rec.name}' is ${rec.status}: start it before ${what}`);
    }
  }

  #preflight(kind: ApplianceKind): void {
    const b = this.#o.binaries ?? {};
    if (kind === 'postgres' && !b.pgBin) findPgBin();
    if (kind === 'redis' && !b.redisServer) findRedisServer();
    if (kind === 'mongo') findMongod(b.mongod ? { ...process.env, EPH_MONGOD: b.mongod } : process.env);
  }

  async #staticOwner(name: string): Promise<string | null> {
    const cached = this.#staticOwners.get(name);
    if (cached !== undefined) return cached;
    const found = (await this.#o.store.listAppliances()).find((a) => a.kind === 'static' && a.name === name);
    if (found) this.#staticOwners.set(name, found.userId);
    return found?.userId ?? null;
  }

  async #takenPorts(): Promise<Set<number>> {
    const taken = new Set<number>();
    for (const a of await this.#o.store.listAppliances()) taken.add(a.port).add(a.publicPort);
    return taken;
  }

  #rt(rec: ApplianceRecord): Runtime {
    const key = keyOf(rec.userId, rec.name);
    let rt = this.#runtime.get(key);
    if (!rt) {
      rt = { psk: new Map(Object.entries(rec.psk)), endpoint: null };
      this.#runtime.set(key, rt);
    }
    return rt;
  }

  #dir(rec: ApplianceRecord): string {
    return join(this.#o.dataDir, rec.userId, rec.name);
  }

}

/**
 * The static appliance a visitor's Host names (`<name>.static.<domain>`, any
 * port, any case), or null: the gate calls this, then
 * `(await appliances.staticSiteByName(name))?.handle(req, res)`.
 */
export function staticSiteName(host: string, domain: string): string | null {
  const h = host.toLowerCase().replace(/:\d+$/, '').replace(/\.$/, '');
  const suffix = `.static.${domain.toLowerCase()}`;
  if (!h.endsWith(suffix)) return null;
  const name = h.slice(0, -suffix.length);
  return NAME.test(name) ? name : null;
}

function keyOf(userId: string, name: string): string {
  return `${userId}/${name}`;
}
