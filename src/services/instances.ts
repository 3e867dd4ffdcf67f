import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { EphError, notFound } from '../core/errors.ts';
import { newInstanceLabel, normalizeHost } from '../core/ids.ts';
import type { Clock } from '../core/clock.ts';
import type { HostPort } from '../core/config.ts';
import type { AppKind, Instance, Plan, User } from '../core/types.ts';
import type { Store } from '../store/store.ts';
import type { Driver, LaunchTunnel } from '../runtime/driver.ts';
import { tryConnect, waitReady } from '../runtime/ready.ts';
import type { GateBackend } from '../gate/backend.ts';
import type { RoutingTable } from '../gate/routing-table.ts';
import type { UserService } from './users.ts';
import { PublishQuota, publishedImageName } from './publish-quota.ts';
import { NameRegistry, type NameKind } from './names.ts';
import type { LeaseKeeper } from './leases.ts';
import type { InstanceEvent } from './route-notify.ts';
import { parseHostPort } from '../core/config.ts';

/** What the service needs of the image store (src/images). */
export interface Images {
  intake(
    body: Readable,
    opts?: { onProgress?: (bytes: number) => void; quota?: { bytes: number; refuse: () => EphError } },
  ): Promise<{ digest: string; size: number; kind: AppKind; entry: string; reused: boolean }>;
  dir(digest: string): string;
  remove(digest: string): Promise<void>;
}

export interface InstanceServiceOptions {
  store: Store;
  images: Images;
  driver: Driver;
  table: RoutingTable;
  users: UserService;
  clock: Clock;
  domain: string;
  pharoVm: string;
  wakeTimeoutMs: number;
  logDir: string;
  maxLogBytes: number;
  /** Extra environment for every app (tests use it to point the stand-in VM). */
  appEnv?: Record<string, string>;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
  /** Told when an instance starts running or stops (requested, idle or crashed). */
  onRunningChange?: (hostname: string, running: boolean) => void;
  /** Told when an instance is frozen (warm sleep) or thawed; its process and the gate's connections to it stay. */
  onFrozenChange?: (hostname: string, frozen: boolean) => void;
  /**
   * Most bytes of memory all frozen instances may hold together (their
   * cgroups' usage, read when each is frozen); past it the least recently
   * used frozen instance is stopped. Default: no bound.
   */
  warmMemoryBytes?: number;
  /** The one owner-checking writer of `table` (production passes the cloud's); default: one over `table` and the store. */
  names?: NameRegistry;
  /** Read at every start: the instance's config vars (environment) and its attached appliances' tunnels. */
  launchSetup?: (hostname: string) => Promise<{ env: Record<string, string>; tunnels: LaunchTunnel[] }>;
  /** Told after an instance is deleted (its config vars and attachments went with it). */
  onRemoved?: (hostname: string, userId: string) => void;
  /**
   * Instance leases in the store (src/services/leases.ts): the running quota
   * across replicas and the lock that starts a wake once. Absent: the quota
   * is this process's alone (unit tests).
   */
  leases?: LeaseKeeper;
  /** Cluster mode: asks the replica holding an instance to stop or wake it (src/services/route-notify.ts). */
  tellHolder?: (hostname: string, event: InstanceEvent) => void;
}

interface Live {
  userId: string;
  upstream: HostPort | null;
  starting: Promise<HostPort> | null;
  /** The process exited before it listened (set at once by the exit report; the log tail is read later). */
  exited: boolean;
  abort: AbortController | null;
  /**
   * Warm sleep: `freezing` from the moment the reaper decides (upstream() then
   * answers null, so a request arriving now waits for the thaw), `frozen` once
   * the driver has frozen it; null while it runs.
   */
  warm: 'freezing' | 'frozen' | null;
  /** The freeze in flight (resolves false when the driver could not freeze). */
  freezing: Promise<boolean> | null;
  /** The thaw in flight: it counts as a running instance for the quota. */
  thawing: Promise<HostPort> | null;
  /** Memory the frozen instance holds (read when it was frozen; 0 when unknown). */
  frozenBytes: number;
  /** The driver could not freeze it: the reaper does not try again until it restarts. */
  unfreezable: boolean;
}

/**
 * Instance lifecycle: publish, start/stop within the plan's quota, waking on
 * demand for the gate (one shared start per instance), crash handling,
 * aliases, deletion. Policy lives here; drivers only start and stop.
 */
export class InstanceService implements GateBackend {
  readonly #o: InstanceServiceOptions;
  readonly #live = new Map<string, Live>();
  /** Latest access per instance, in memory: touch() stays O(1) on the gate's path; the store gets it every 2 s. */
  readonly #accessAt = new Map<string, number>();
  /** Instances whose access time changed since the last flush to the store. */
  readonly #unflushed = new Set<string>();
  /**
   * Single node: instances that became running or frozen since the last
   * flush. The store gets their state with the access times, off the wake's
   * path (a SQLite commit is a synchronous fsync of milliseconds that would
   * hold the gate's event loop); the live map is the truth meanwhile
   * (#overlay), and load() resets these states after a crash anyway. With
   * leases (cluster mode) other replicas read the state, so it is written at once.
   */
  readonly #stateUnflushed = new Set<string>();
  #flushTimer: NodeJS.Timeout | null = null;
  /** Per-user plan limits checked at publish (instances, stored bytes). */
  readonly #quota: PublishQuota;

  readonly #names: NameRegistry;

  constructor(o: InstanceServiceOptions) {
    this.#o = o;
    this.#quota = new PublishQuota(o.store);
    this.#names = o.names ?? new NameRegistry({ table: o.table, cloudDomain: o.domain, store: o.store });
    o.driver.onExit((hostname, info) => this.#onExit(hostname, info.code, info.signal, info.requested, info.reason));
  }

  /** Repairs what a crash left (instances marked running with no process) and fills the routing table. */
  async load(): Promise<void> {
    await this.#o.driver.recover();
    await this.#o.leases?.recover();
    for (const i of await this.#o.store.listInstances()) {
      // Another live replica's instance keeps its state: only this replica's own leftovers are repaired.
      if ((i.state === 'running' || i.state === 'starting' || i.state === 'frozen') && !(await this.#o.leases?.heldElsewhere(i.hostname))) {
        await this.#o.store.updateInstance(i.hostname, { state: 'asleep', upstream: null });
      }
      this.#names.bindLoaded(i.hostname, { kind: 'instance', userId: i.userId }, [{ hostname: i.hostname, weight: 1 }]);
      if (i.alias) this.#names.bindLoaded(i.alias, { kind: 'alias', userId: i.userId }, [{ hostname: i.hostname, weight: 1 }]);
    }
    this.#flushTimer = setInterval(() => void this.flushAccess(), 2000);
    this.#flushTimer.unref();
    if (this.#o.leases) {
      this.#pruneTimer = setInterval(() => void this.#pruneRemote(), Math.max(50, Math.floor(this.#o.leases.ttlMs / 3)));
      this.#pruneTimer.unref();
    }
  }

  async close(): Promise<void> {
    if (this.#flushTimer) clearInterval(this.#flushTimer);
    if (this.#pruneTimer) clearInterval(this.#pruneTimer);
    await this.flushAccess();
    await this.#o.driver.close();
    for (const [hostname] of this.#live) await this.#o.store.updateInstance(hostname, { state: 'asleep', upstream: null });
    this.#live.clear();
    this.#remote.clear();
    await this.#o.leases?.close();
  }

  async flushAccess(): Promise<void> {
    await this.#pushAccess();
    await this.#pullAccess();
  }

  async #pushAccess(): Promise<void> {
    if (this.#stateUnflushed.size > 0) {
      const states = [...this.#stateUnflushed];
      this.#stateUnflushed.clear();
      for (const hostname of states) {
        // The state as it is now, not when it was marked: a stop or a crash since has written its own.
        const live = this.#live.get(hostname);
        if (!live?.upstream) continue;
        if (live.thawing || live.warm === 'freezing') {
          // Changing now: the next flush writes where it lands.
          this.#stateUnflushed.add(hostname);
          continue;
        }
        const state = live.warm === 'frozen' ? 'frozen' : 'running';
        await this.#o.store.updateInstance(hostname, { state, upstream: `${live.upstream.host}:${live.upstream.port}` }).catch(() => {});
      }
    }
    if (this.#unflushed.size === 0) return;
    const batch = [...this.#unflushed];
    this.#unflushed.clear();
    for (const hostname of batch) {
      const at = this.#accessAt.get(hostname);
      // Raised, never lowered: another replica may have flushed a later access of the same instance.
      if (at !== undefined) await this.#o.store.raiseAccessAt(hostname, at).catch(() => {});
    }
  }

  /** Writes a running or frozen state to the store: at once with leases, else with the next flush (#stateUnflushed). */
  async #storeLiveState(hostname: string, fields: Partial<Instance>): Promise<void> {
    if (this.#o.leases) await this.#o.store.updateInstance(hostname, fields);
    else this.#stateUnflushed.add(hostname);
  }

  /**
   * Cluster mode: the idle reaper counts access seen by any replica. Every
   * flush reads the stored access times of the instances running here and
   * keeps the newest of the store's and this process's.
   */
  async #pullAccess(): Promise<void> {
    if (!this.#o.leases || this.#o.store.backend !== 'postgres' || this.#live.size === 0) return;
    const stored = await this.#o.store.accessTimes([...this.#live.keys()]).catch(() => new Map<string, number>());
    for (const [hostname, at] of stored) if (at > (this.#accessAt.get(hostname) ?? 0)) this.#accessAt.set(hostname, at);
  }

  // ---- queries ---------------------------------------------------------

  /** The user's instance by hostname or alias; 404 for anyone else's (existence is not revealed). */
  async get(user: User, host: string): Promise<Instance> {
    const h = normalizeHost(host) ?? host.toLowerCase();
    const i = await this.#o.store.findInstance(h);
    if (!i || i.userId !== user.id) throw notFound(`instance '${host}'`);
    return this.#overlay(i);
  }

  async list(user: User): Promise<Instance[]> {
    return (await this.#o.store.listInstances(user.id)).map((i) => this.#overlay(i));
  }

  async ownerOf(hostname: string): Promise<string | null> {
    return (await this.#o.store.getInstance(hostname))?.userId ?? null;
  }

  /** The instance whose alias is `domain` (normalised), and its owner; null when none. */
  async aliasHolder(domain: string): Promise<{ userId: string; hostname: string } | null> {
    const i = await this.#o.store.findInstance(domain);
    return i && i.alias === domain ? { userId: i.userId, hostname: i.hostname } : null;
  }

  /** Instances running now (not frozen) with their last access. */
  listRunning(): Array<{ hostname: string; accessAt: number }> {
    const out: Array<{ hostname: string; accessAt: number }> = [];
    for (const [hostname, live] of this.#live) {
      if (live.upstream && live.warm === null) out.push({ hostname, accessAt: this.#accessAt.get(hostname) ?? 0 });
    }
    return out;
  }

  /** Instances with a process, running or frozen, with their last access: what the idle reaper looks at. */
  listLive(): Array<{ hostname: string; accessAt: number; frozen: boolean }> {
    const out: Array<{ hostname: string; accessAt: number; frozen: boolean }> = [];
    for (const [hostname, live] of this.#live) {
      if (live.upstream && !live.thawing) out.push({ hostname, accessAt: this.#accessAt.get(hostname) ?? 0, frozen: live.warm !== null });
    }
    return out;
  }

  /** Frozen instances and the memory each holds (read when it was frozen), least recently used first. */
  listFrozen(): Array<{ hostname: string; accessAt: number; memoryBytes: number }> {
    const out: Array<{ hostname: string; accessAt: number; memoryBytes: number }> = [];
    for (const [hostname, live] of this.#live) {
      if (live.warm === 'frozen' && !live.thawing) out.push({ hostname, accessAt: this.#accessAt.get(hostname) ?? 0, memoryBytes: live.frozenBytes });
    }
    return out.sort((a, b) => a.accessAt - b.accessAt);
  }

  #overlay(i: Instance): Instance {
    const live = this.#live.get(i.hostname);
    // A flush may still be writing: the newest of memory and store wins.
    const accessAt = Math.max(this.#accessAt.get(i.hostname) ?? 0, i.accessAt);
    // Cluster mode: an instance another replica runs is as the store says (that replica writes it).
    if (!live && this.#o.leases && this.#o.store.backend === 'postgres' && i.state !== 'asleep') return { ...i, accessAt };
    if (!live) return { ...i, accessAt, state: i.state === 'failed' ? 'failed' : 'asleep' };
    const state = !live.upstream ? 'starting' : live.warm === 'frozen' && !live.thawing ? 'frozen' : 'running';
    return { ...i, accessAt, state, upstream: live.upstream ? `${live.upstream.host}:${live.upstream.port}` : null };
  }

  logFile(hostname: string): string {
    return join(this.#o.logDir, `${hostname}.log`);
  }

  // ---- publish / delete ------------------------------------------------

  async publish(user: User, body: Readable, name: string | undefined, onProgress?: (bytes: number) => void): Promise<Instance> {
    // Refusals that need no upload come before a byte of it is read.
    const imageName = publishedImageName(name);
    const plan = this.#o.users.plan(user.plan);
    const allowance = await this.#quota.before(user, plan);
    const image = await this.#o.images.intake(body, {
      ...(onProgress ? { onProgress } : {}),
      ...(allowance.bytesLeft !== Infinity ? { quota: { bytes: allowance.bytesLeft, refuse: allowance.overBytes } } : {}),
    });
    return this.#quota.commit(user, plan, image, () => this.#record(user, image, imageName), () => this.#discardImage(image));
  }

  /** Removes an image this publish stored when the publish is refused after all (nothing else uses it). */
  async #discardImage(image: { digest: string; reused: boolean }): Promise<void> {
    if (image.reused || (await this.#o.store.imageRefs(image.digest)) > 0 || (await this.#o.store.getImage(image.digest))) return;
    await this.#o.images.remove(image.digest);
  }

  async #record(user: User, image: { digest: string; size: number; kind: AppKind; entry: string; reused: boolean }, imageName: string): Promise<Instance> {
    const now = this.#o.clock.now();
    await this.#o.store.putImage({ digest: image.digest, size: image.size, kind: image.kind, entry: image.entry, createdAt: now });
    let hostname = '';
    for (let tries = 0; ; tries++) {
      hostname = `${newInstanceLabel()}.${this.#o.domain}`;
      if (!(await this.#o.store.findInstance(hostname))) break;
      if (tries > 10) throw new EphError('INTERNAL', 'could not allocate a free hostname');
    }
    const instance: Instance = {
      hostname,
      userId: user.id,
      imageDigest: image.digest,
      imageName,
      alias: null,
      state: 'asleep',
      createdAt: now,
      accessAt: now,
      lastError: null,
      upstream: null,
    };
    await this.#o.store.insertInstance(instance);
    this.#route(hostname, 'instance', user.id, hostname);
    this.#o.log?.('published', { hostname, user: user.id, digest: image.digest, reused: image.reused });
    return instance;
  }

  async remove(user: User, host: string): Promise<Instance> {
    const i = await this.get(user, host);
    await this.#stopProcess(i.hostname);
    const { imageOrphaned } = await this.#o.store.deleteInstance(i.hostname);
    this.#names.release(i.hostname, { kind: 'instance', userId: i.userId });
    if (i.alias) this.#names.release(i.alias, { kind: 'alias', userId: i.userId });
    this.#accessAt.delete(i.hostname);
    this.#unflushed.delete(i.hostname);
    if (imageOrphaned) {
      await this.#o.store.deleteImage(i.imageDigest);
      await this.#o.images.remove(i.imageDigest);
    }
    await rm(this.logFile(i.hostname), { force: true });
    await rm(`${this.logFile(i.hostname)}.1`, { force: true });
    this.#o.onRemoved?.(i.hostname, i.userId);
    return i;
  }

  // ---- properties ------------------------------------------------------

  async setImageName(user: User, host: string, name: unknown): Promise<string> {
    if (typeof name !== 'string' || name.length === 0 || name.length > 200) {
      throw new EphError('INVALID_VALUE', 'imageName must be a non-empty JSON string of at most 200 characters');
    }
    const i = await this.get(user, host);
    await this.#o.store.updateInstance(i.hostname, { imageName: name });
    return name;
  }

  /**
   * Sets or clears the alias. Another instance of the same user holding it
   * loses it (the original's documented behaviour). The name registry
   * decides who may claim it: a name under the cloud's domain (instance
   * hostnames, static sites) or held by another user (alias, gate domain,
   * certificate) → 409; localhost or an IP literal → 400.
   */
  async setAlias(user: User, host: string, value: unknown): Promise<string | null> {
    if (value !== null && typeof value !== 'string') throw new EphError('INVALID_VALUE', 'alias must be a JSON string or null');
    const i = await this.get(user, host);
    if (value === null || value === '') return this.#writeAlias(user, i, null);
    const alias = this.#names.claimable(value, 'alias');
    if (alias.startsWith('*.')) throw new EphError('INVALID_HOSTNAME', `alias ${alias}: an alias is one name, not a wildcard`);
    return this.#names.exclusive(alias, async () => {
      await this.#names.checkClaim(user.id, alias, 'alias');
      const route = await this.#o.store.getRoute(alias);
      if (route) throw new EphError('CONFLICT', `'${alias}' is a gate domain${route.userId === user.id ? '; unmap it first' : ' of another user'}`);
      // Re-read: the alias may have changed while waiting for the lock.
      return this.#writeAlias(user, await this.get(user, i.hostname), alias);
    });
  }

  async #writeAlias(user: User, i: Instance, alias: string | null): Promise<string | null> {
    const { movedFrom } = await this.#o.store.setAlias(i.hostname, alias);
    if (i.alias && i.alias !== alias) this.#names.release(i.alias, { kind: 'alias', userId: user.id });
    if (alias) this.#route(alias, 'alias', user.id, i.hostname);
    if (movedFrom) this.#o.log?.('alias moved', { alias, from: movedFrom, to: i.hostname });
    return alias;
  }

  async setRunning(user: User, host: string, value: unknown): Promise<boolean> {
    if (typeof value !== 'boolean') throw new EphError('INVALID_VALUE', 'isRunning must be true or false');
    const i = await this.get(user, host);
    if (value) await this.start(i.hostname, 'api');
    else await this.stop(i.hostname);
    return value;
  }

  // ---- lifecycle -------------------------------------------------------

  upstream(hostname: string): HostPort | null {
    const live = this.#live.get(hostname);
    if (live === undefined && this.#remote.size !== 0) return this.#remote.get(hostname)?.upstream ?? null;
    // A frozen (or freezing) instance is woken like an asleep one: the gate calls wake(), which thaws it.
    return live === undefined || live.warm !== null ? null : live.upstream;
  }

  touch(hostname: string): void {
    this.#accessAt.set(hostname, Date.now());
    this.#unflushed.add(hostname);
  }

  /**
   * The gate wakes an instance it believes asleep, or one whose connection
   * was just refused: then the app may have died before its exit reached us
   * (the driver reports it after tearing the sandbox down). Check, and if
   * nothing listens, finish the stop and start afresh, once for all callers.
   */
  wake(hostname: string): Promise<HostPort> {
    const live = this.#live.get(hostname);
    if (live?.upstream && live.warm !== null) return this.#thaw(hostname, live, 'visitor');
    if (live?.upstream) {
      let p = this.#recovering.get(hostname);
      if (!p) {
        p = this.#recover(hostname, live.upstream).finally(() => this.#recovering.delete(hostname));
        this.#recovering.set(hostname, p);
      }
      return p;
    }
    return this.start(hostname, 'visitor');
  }

  readonly #recovering = new Map<string, Promise<HostPort>>();

  async #recover(hostname: string, upstream: HostPort): Promise<HostPort> {
    if (await tryConnect(upstream)) return upstream;
    if (this.#live.get(hostname)?.upstream === upstream) {
      this.#o.log?.('not answering: restarting', { hostname });
      await this.#stopProcess(hostname);
    }
    return this.start(hostname, 'visitor');
  }

  /**
   * Starts the instance unless it runs already; concurrent callers share one
   * start. The quota counts running and starting instances of the owner.
   */
  async start(hostname: string, by: 'api' | 'visitor'): Promise<HostPort> {
    const live = this.#live.get(hostname);
    if (live?.upstream && live.warm !== null) return this.#thaw(hostname, live, by);
    if (live?.upstream) return live.upstream;
    if (live?.starting) return live.starting;
    const i = await this.#o.store.getInstance(hostname);
    if (!i) throw notFound(`instance '${hostname}'`);
    const plan = await this.#planOf(i.userId);
    // Re-check after the awaits: another caller may have begun this start meanwhile. From here to
    // #live.set nothing awaits, so that two starts of one user cannot both pass the quota check.
    const again = this.#live.get(hostname);
    if (again?.upstream) return again.warm !== null ? this.#thaw(hostname, again, by) : again.upstream;
    if (again?.starting) return again.starting;
    this.#checkQuota(i.userId, plan, by);
    const entry: Live = {
      userId: i.userId,
      upstream: null,
      starting: null,
      exited: false,
      abort: new AbortController(),
      warm: null,
      freezing: null,
      thawing: null,
      frozenBytes: 0,
      unfreezable: false,
    };
    this.#live.set(hostname, entry);
    entry.starting = this.#o.leases ? this.#leasedBoot(i, entry, plan, by, this.#o.leases) : this.#boot(i, entry, plan);
    return entry.starting;
  }

  async #planOf(userId: string): Promise<Plan> {
    const user = await this.#o.store.getUser(userId);
    if (!user) throw notFound('user');
    return this.#o.users.plan(user.plan);
  }

  #checkQuota(userId: string, plan: Plan, by: 'api' | 'visitor'): void {
    let running = 0;
    // Frozen instances are asleep for the quota; one being thawed is running again.
    for (const l of this.#live.values()) if (l.userId === userId && (l.warm === null || l.thawing !== null)) running++;
    if (running >= plan.maxRunning) {
      const msg = `plan '${plan.name}' allows ${plan.maxRunning} running instance${plan.maxRunning === 1 ? '' : 's'}; stop one first`;
      throw new EphError('QUOTA_EXCEEDED', msg, by === 'visitor' ? { retryAfter: 30 } : {});
    }
  }

  async #boot(i: Instance, entry: Live, plan: Plan): Promise<HostPort> {
    const started = this.#o.clock.now();
    try {
      // Side by side: a visitor waits for each of these (a wake's path to the spawn).
      const [image, , setup] = await Promise.all([
        this.#o.store.getImage(i.imageDigest),
        mkdir(this.#o.logDir, { recursive: true }),
        this.#o.launchSetup ? this.#o.launchSetup(i.hostname) : Promise.resolve({ env: {}, tunnels: [] }),
      ]);
      if (!image) throw new EphError('START_FAILED', `image ${i.imageDigest.slice(0, 12)} is missing`);
      // Config vars first: the operator's appEnv and the cloud's own names win over a tenant's.
      const upstream = await this.#o.driver.start({
        hostname: i.hostname,
        imageDir: this.#o.images.dir(i.imageDigest),
        kind: image.kind,
        entry: image.entry,
        pharoVm: this.#o.pharoVm,
        env: { ...setup.env, ...this.#o.appEnv, EPH_HOSTNAME: i.hostname },
        ...(setup.tunnels.length > 0 ? { tunnels: setup.tunnels } : {}),
        logFile: this.logFile(i.hostname),
        maxLogBytes: this.#o.maxLogBytes,
        ...(plan.limits ? { limits: plan.limits } : {}),
      });
      // Written while the app boots rather than before the spawn: a SQLite commit is a synchronous fsync.
      await this.#o.store.updateInstance(i.hostname, { state: 'starting', lastError: null });
      await waitReady(upstream, this.#o.wakeTimeoutMs, entry.abort!.signal);
      if (!this.#o.driver.isRunning(i.hostname)) {
        // Something accepted the connection, but not the app, which has exited: the address of a
        // namespace already torn down goes wherever the host routes it (a proxy may answer there).
        // The exit report, due any moment, says why.
        await abortedWithin(entry.abort!.signal, 2000);
        throw entry.abort!.signal.reason ?? new EphError('START_FAILED', 'the app exited before it listened on 8080');
      }
      entry.upstream = upstream;
      entry.starting = null;
      entry.abort = null;
      const now = this.#o.clock.now();
      this.#accessAt.set(i.hostname, now);
      this.#unflushed.add(i.hostname);
      await this.#storeLiveState(i.hostname, { state: 'running', upstream: `${upstream.host}:${upstream.port}`, accessAt: now });
      this.#o.log?.('started', { hostname: i.hostname, ms: now - started });
      this.#o.onRunningChange?.(i.hostname, true);
      return upstream;
    } catch (e) {
      const err = e instanceof EphError ? e : new EphError('START_FAILED', e instanceof Error ? e.message : String(e));
      const tail = entry.exited ? await this.#logTail(i.hostname) : '';
      const reason = tail ? `${err.message}; log: ${tail}` : err.message;
      this.#live.delete(i.hostname);
      await this.#o.driver.stop(i.hostname).catch(() => {});
      await this.#o.store.updateInstance(i.hostname, { state: 'failed', upstream: null, lastError: reason });
      this.#o.log?.('start failed', { hostname: i.hostname, reason });
      throw new EphError(err.code === 'WAKE_TIMEOUT' || err.code === 'QUOTA_EXCEEDED' ? err.code : 'START_FAILED', reason);
    }
  }

  // ---- warm sleep ------------------------------------------------------

  /**
   * Freezes a running instance (warm sleep) when the driver can: its memory
   * stays, its CPU stops, the gate's connections to it stay open. The next
   * request thaws it (wake). Resolves false when it was not frozen (not
   * running, no freezer, or a request came first); then the reaper stops it
   * at the idle timeout as before. Past the warm-memory budget the least
   * recently used frozen instances are stopped.
   */
  async freeze(hostname: string): Promise<boolean> {
    const live = this.#live.get(hostname);
    const driver = this.#o.driver;
    if (!live?.upstream || live.warm !== null || live.thawing || live.unfreezable || !driver.freeze) return false;
    // Synchronously, before any await: from here a request goes through wake() and waits for the thaw.
    live.warm = 'freezing';
    live.freezing = driver.freeze(hostname).catch((e: unknown) => {
      this.#o.log?.('freeze failed', { hostname, reason: e instanceof Error ? e.message : String(e) });
      return false;
    });
    const ok = await live.freezing;
    live.freezing = null;
    if (this.#live.get(hostname) !== live || live.thawing) return false;
    if (!ok) {
      live.warm = null;
      live.unfreezable = true;
      return false;
    }
    live.frozenBytes = (await driver.memoryUsage?.(hostname).catch(() => null)) ?? 0;
    if (this.#live.get(hostname) !== live || live.thawing) return false;
    live.warm = 'frozen';
    await this.#storeLiveState(hostname, { state: 'frozen' }).catch(() => {});
    // Asleep for the quota across replicas too; the lease stays (no other replica starts it meanwhile).
    await this.#o.leases?.frozen(hostname).catch(() => undefined);
    this.#o.log?.('frozen', { hostname, memoryBytes: live.frozenBytes });
    this.#o.onFrozenChange?.(hostname, true);
    await this.#keepWarmBudget();
    return true;
  }

  #budgetRun: Promise<void> = Promise.resolve();

  /** Stops the least recently used frozen instances until the frozen ones fit the warm-memory budget (one pass at a time). */
  #keepWarmBudget(): Promise<void> {
    const budget = this.#o.warmMemoryBytes;
    if (budget === undefined) return Promise.resolve();
    this.#budgetRun = this.#budgetRun.then(async () => {
      const frozen = this.listFrozen();
      let total = frozen.reduce((n, f) => n + f.memoryBytes, 0);
      for (const f of frozen) {
        if (total <= budget) break;
        const live = this.#live.get(f.hostname);
        if (live?.warm !== 'frozen' || live.thawing) continue;
        total -= f.memoryBytes;
        this.#o.log?.('warm memory budget: stopped the least recently used frozen instance', { hostname: f.hostname, memoryBytes: f.memoryBytes, budget });
        await this.stop(f.hostname).catch(() => {});
      }
    });
    return this.#budgetRun;
  }

  /**
   * Thaws a frozen instance for a request (or an API start). A thaw is a
   * start for the quota: a user at their plan's running limit is refused
   * (QUOTA_EXCEEDED: the gate answers 503 with Retry-After), as a cold
   * start would be; the instance stays frozen. Concurrent callers share it.
   */
  async #thaw(hostname: string, live: Live, by: 'api' | 'visitor'): Promise<HostPort> {
    if (live.thawing) return live.thawing;
    const plan = await this.#planOf(live.userId);
    // Re-checked after the await, then marked without awaiting (as start() does for the quota).
    if (this.#live.get(hostname) !== live) return this.start(hostname, by);
    if (live.thawing) return live.thawing;
    if (live.warm === null && live.upstream) return live.upstream;
    this.#checkQuota(live.userId, plan, by);
    const thawing = (this.#o.leases ? this.#leasedThaw(hostname, live, plan, by, this.#o.leases) : this.#resume(hostname, live)).finally(() => {
      live.thawing = null;
    });
    live.thawing = thawing;
    return thawing;
  }

  async #resume(hostname: string, live: Live): Promise<HostPort> {
    if (live.freezing) await live.freezing;
    try {
      await this.#o.driver.thaw?.(hostname);
    } catch (e) {
      // The processes cannot be resumed: end them and start afresh.
      this.#o.log?.('thaw failed: restarting', { hostname, reason: e instanceof Error ? e.message : String(e) });
      live.thawing = null;
      await this.#stopProcess(hostname);
      return this.start(hostname, 'visitor');
    }
    const wasFrozen = live.warm === 'frozen';
    live.warm = null;
    this.touch(hostname);
    if (wasFrozen) {
      // Not awaited: the visitor is waiting, and the overlay shows the live state meanwhile.
      void this.#storeLiveState(hostname, { state: 'running' }).catch(() => {});
      this.#o.onFrozenChange?.(hostname, false);
    }
    return live.upstream!;
  }

  async stop(hostname: string): Promise<void> {
    if (!this.#live.has(hostname) && (await this.#stopElsewhere(hostname))) return;
    await this.#stopProcess(hostname);
    await this.#o.store.updateInstance(hostname, { state: 'asleep', upstream: null });
  }

  async #stopProcess(hostname: string): Promise<void> {
    const live = this.#live.get(hostname);
    if (live) {
      this.#live.delete(hostname);
      live.abort?.abort(new EphError('START_FAILED', 'stopped while starting'));
    }
    await this.#o.driver.stop(hostname);
    await this.#o.leases?.release(hostname).catch(() => undefined);
    if (live) this.#o.onRunningChange?.(hostname, false);
  }

  #onExit(hostname: string, code: number | null, signal: string | null, requested: boolean, reason?: string): void {
    if (requested) return;
    const live = this.#live.get(hostname);
    // The driver's reason (e.g. killed for passing the memory limit) says more than the signal.
    const why = reason ?? (signal ? `the app was killed by ${signal}` : `the app exited with code ${code}`);
    if (live?.starting && live.abort) {
      // Aborted at once: waiting for the app's address would only find whatever answers for it once it is gone.
      live.exited = true;
      live.abort.abort(new EphError('START_FAILED', `${why} before it listened on 8080`));
      return;
    }
    if (!live) return;
    // A crash: the next request restarts it (the gate calls wake), and the log keeps the exit line.
    this.#live.delete(hostname);
    void this.#o.leases?.release(hostname).catch(() => undefined);
    this.#o.onRunningChange?.(hostname, false);
    void this.#o.store.updateInstance(hostname, { state: 'asleep', upstream: null, lastError: `${why} (crashed; restarts on the next request)` });
    this.#o.log?.('crashed', { hostname, code, signal });
  }

  async #logTail(hostname: string): Promise<string> {
    try {
      const file = this.logFile(hostname);
      const size = (await stat(file)).size;
      const text = (await readFile(file)).subarray(Math.max(0, size - 400)).toString('utf8');
      return text.trim().split('\n').slice(-3).join(' | ');
    } catch {
      return '';
    }
  }

  // ---- cluster mode: leases across replicas -----------------------------

  /** Instances another replica runs that this replica's gate forwards to (their address from the store). */
  readonly #remote = new Map<string, { userId: string; upstream: HostPort; replicaId: string }>();
  #pruneTimer: NodeJS.Timeout | null = null;

  /**
   * Forgets forwarded instances whose holder's lease is gone or expired (the
   * holder died: its address may now be anyone's). The gate then wakes them,
   * which starts them here.
   */
  async #pruneRemote(): Promise<void> {
    for (const [hostname, r] of [...this.#remote]) {
      const holder = await this.#o.leases!.heldElsewhere(hostname).catch(() => undefined);
      if (holder === undefined) continue;
      if (holder?.replicaId !== r.replicaId && this.#remote.get(hostname) === r) this.#remote.delete(hostname);
    }
  }

  /**
   * A start under the instance's lease: the quota counted over every
   * replica's leases, and one start across replicas. When another replica
   * holds the lease this one waits for that replica's instance and forwards
   * to it; it starts its own only once that lease has expired.
   */
  async #leasedBoot(i: Instance, entry: Live, plan: Plan, by: 'api' | 'visitor', leases: LeaseKeeper): Promise<HostPort> {
    const drop = (): void => {
      if (this.#live.get(i.hostname) === entry) this.#live.delete(i.hostname);
    };
    for (;;) {
      let r: Awaited<ReturnType<LeaseKeeper['acquire']>>;
      try {
        r = await leases.acquire(i.hostname, i.userId, plan.maxRunning);
      } catch (e) {
        drop();
        throw new EphError('UNAVAILABLE', `the store did not answer for the lease of ${i.hostname}: ${e instanceof Error ? e.message : String(e)}`, { retryAfter: 5 });
      }
      if (r.ok) {
        if (this.#live.get(i.hostname) !== entry) {
          await leases.release(i.hostname).catch(() => undefined);
          throw new EphError('START_FAILED', 'stopped while starting');
        }
        this.#remote.delete(i.hostname);
        try {
          return await this.#boot(i, entry, plan);
        } catch (e) {
          await leases.release(i.hostname).catch(() => undefined);
          throw e;
        }
      }
      if (r.reason === 'quota') {
        drop();
        throw quotaExceeded(plan, by);
      }
      const held = await this.#awaitHolder(i.hostname, entry);
      if (held) {
        drop();
        this.#remote.set(i.hostname, { userId: i.userId, upstream: held.upstream, replicaId: held.replicaId });
        return held.upstream;
      }
    }
  }

  /**
   * Waits for the replica holding `hostname`'s lease to have it running at an
   * address this replica reaches; null when the lease is gone or expired (the
   * caller takes it then). A holder whose instance is frozen or asleep is
   * asked to wake it.
   */
  async #awaitHolder(hostname: string, entry: Live): Promise<{ upstream: HostPort; replicaId: string } | null> {
    const deadline = Date.now() + this.#o.wakeTimeoutMs;
    let asked = false;
    for (;;) {
      if (this.#live.get(hostname) !== entry) throw entry.abort?.signal.reason ?? new EphError('START_FAILED', 'stopped while starting');
      const [holder, inst] = await Promise.all([this.#o.leases!.heldElsewhere(hostname), this.#o.store.getInstance(hostname)]);
      if (!inst) throw notFound(`instance '${hostname}'`);
      if (!holder) return null;
      if (inst.state === 'running' && inst.upstream) {
        const hp = parseHostPort('upstream', inst.upstream);
        if (await tryConnect(hp)) return { upstream: hp, replicaId: holder.replicaId };
      } else if (!asked) {
        asked = true;
        this.#o.tellHolder?.(hostname, 'wake');
      }
      if (Date.now() > deadline) {
        throw new EphError(
          'WAKE_TIMEOUT',
          `${hostname} runs on replica ${holder.replicaId} at ${inst.upstream ?? '(no address yet)'}, which this replica cannot reach; it is served there, or here once that replica's lease expires`,
        );
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** A thaw is a start for the quota across replicas too: the lease is counted again, or the thaw is refused. */
  async #leasedThaw(hostname: string, live: Live, plan: Plan, by: 'api' | 'visitor', leases: LeaseKeeper): Promise<HostPort> {
    const r = await leases.acquire(hostname, live.userId, plan.maxRunning);
    if (r.ok) return this.#resume(hostname, live);
    if (r.reason === 'quota') throw quotaExceeded(plan, by);
    // The lease was lost (this replica was cut off longer than its time to live): end this copy, follow the holder.
    live.thawing = null;
    await this.#stopProcess(hostname);
    return this.start(hostname, by);
  }

  /** Told by another replica: stop (its API was asked) or wake (its gate was) an instance this replica runs. */
  onHolderRequest(hostname: string, event: InstanceEvent): void {
    if (event === 'up' || event === 'down') {
      // The holder's instance changed: forward to the address it stores next time.
      this.#remote.delete(hostname);
      return;
    }
    if (!this.#live.has(hostname)) return;
    const done = event === 'stop' ? this.stop(hostname) : this.wake(hostname);
    done.catch((e: unknown) => this.#o.log?.(`${event} asked by another replica failed`, { hostname, reason: e instanceof Error ? e.message : String(e) }));
  }

  /** A lease this replica held was lost: the instance must not run here any more (another replica may start it). */
  async dropLost(hostname: string): Promise<void> {
    const live = this.#live.get(hostname);
    if (!live) return;
    this.#live.delete(hostname);
    live.abort?.abort(new EphError('START_FAILED', 'lease lost'));
    await this.#o.driver.stop(hostname).catch(() => undefined);
    this.#o.onRunningChange?.(hostname, false);
  }

  /**
   * A stop of an instance another replica runs: that replica is asked and
   * this one waits (30 s at most) for its lease to go. Answers false when no
   * other replica holds it (then the stop is local).
   */
  async #stopElsewhere(hostname: string): Promise<boolean> {
    this.#remote.delete(hostname);
    const leases = this.#o.leases;
    if (!leases || !this.#o.tellHolder || !(await leases.heldElsewhere(hostname))) return false;
    this.#o.tellHolder(hostname, 'stop');
    const deadline = Date.now() + 30_000;
    while (await leases.heldElsewhere(hostname)) {
      if (Date.now() > deadline) throw new EphError('UNAVAILABLE', `${hostname} runs on another replica, which did not stop it within 30 s`, { retryAfter: 5 });
      await new Promise((r) => setTimeout(r, 50));
    }
    return true;
  }

  /** Points a gate host (the instance's own hostname or its alias) at the instance, through the name registry. */
  #route(host: string, kind: NameKind, userId: string, hostname: string): void {
    this.#names.bind(host, { kind, userId }, [{ hostname, weight: 1 }]);
  }
}

/** The refusal of a start past the plan's running limit (the gate answers 503 + Retry-After to a visitor). */
function quotaExceeded(plan: Plan, by: 'api' | 'visitor'): EphError {
  const msg = `plan '${plan.name}' allows ${plan.maxRunning} running instance${plan.maxRunning === 1 ? '' : 's'}; stop one first`;
  return new EphError('QUOTA_EXCEEDED', msg, by === 'visitor' ? { retryAfter: 30 } : {});
}

/** Resolves when `signal` aborts, or after `ms` at the latest. */
function abortedWithin(signal: AbortSignal, ms: number): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}
