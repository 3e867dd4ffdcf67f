import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock } from '../core/clock.ts';
import type { LeaseOutcome, LeaseRecord, LeaseStore } from '../store/lease-store.ts';

/** Default lease time to live: a dead replica's instances are startable elsewhere after at most this long. */
export const DEFAULT_LEASE_TTL_MS = 15_000;

export interface LeaseKeeperOptions {
  store: LeaseStore;
  replicaId: string;
  ttlMs: number;
  clock: Clock;
  /** Told when a renewal finds a lease gone (expired and taken, or deleted): the instance must not run here any more. */
  onLost?: (hostname: string) => void;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

/**
 * This replica's side of the instance leases (src/store/lease-store.ts):
 * takes them under the quota, renews them every third of their time to live
 * (the heartbeat), releases them on stop. A replica that dies stops renewing;
 * its leases expire and any replica may start those instances again.
 *
 * @example
 * const leases = new LeaseKeeper({ store, replicaId: await loadReplicaId(dataDir), ttlMs: 15_000, clock });
 * await leases.recover();
 * leases.start();
 * const r = await leases.acquire('eph-1a2b3c4d.eph.localhost', user.id, plan.maxRunning);
 */
export class LeaseKeeper {
  readonly replicaId: string;
  readonly ttlMs: number;
  readonly #o: LeaseKeeperOptions;
  /** Hostnames whose lease this replica holds (renewed by the heartbeat). */
  readonly #held = new Set<string>();
  #timer: NodeJS.Timeout | null = null;
  #beating: Promise<void> | null = null;

  constructor(o: LeaseKeeperOptions) {
    this.#o = o;
    this.replicaId = o.replicaId;
    this.ttlMs = o.ttlMs;
  }

  /** Drops what this replica held in an earlier life (its processes went with it). */
  async recover(): Promise<void> {
    // Quietly: start-up prints nothing before the cloud's own summary (tools read its first line).
    await this.#o.store.releaseReplicaLeases(this.replicaId);
  }

  start(): void {
    this.#timer = setInterval(() => void this.heartbeat(), Math.max(50, Math.floor(this.ttlMs / 3)));
    this.#timer.unref();
  }

  /** Renews every held lease once; a store that does not answer is retried at the next beat. */
  heartbeat(): Promise<void> {
    if (this.#beating) return this.#beating;
    this.#beating = (async () => {
      const held = [...this.#held];
      try {
        const renewed = new Set(await this.#o.store.renewLeases(this.replicaId, held, this.#o.clock.now() + this.ttlMs));
        for (const h of held) {
          // Released meanwhile (a stop raced the beat) is not a loss.
          if (renewed.has(h) || !this.#held.has(h)) continue;
          this.#held.delete(h);
          this.#o.log?.('lease lost: stopping the instance here', { hostname: h });
          this.#o.onLost?.(h);
        }
      } catch (e) {
        this.#o.log?.('lease heartbeat failed', { reason: e instanceof Error ? e.message : String(e) });
      }
    })().finally(() => {
      this.#beating = null;
    });
    return this.#beating;
  }

  async acquire(hostname: string, userId: string, limit: number): Promise<LeaseOutcome> {
    const now = this.#o.clock.now();
    const r = await this.#o.store.acquireLease({ hostname, userId, replicaId: this.replicaId, limit, now, expiresAt: now + this.ttlMs });
    if (r.ok) this.#held.add(hostname);
    return r;
  }

  /** A frozen instance keeps its lease (no other replica starts it) but is asleep for the quota. */
  async frozen(hostname: string): Promise<void> {
    if (this.#held.has(hostname)) await this.#o.store.setLeaseCounted(hostname, this.replicaId, false);
  }

  async release(hostname: string): Promise<void> {
    if (!this.#held.delete(hostname)) return;
    await this.#o.store.releaseLease(hostname, this.replicaId);
  }

  holds(hostname: string): boolean {
    return this.#held.has(hostname);
  }

  /** Another replica's lease on `hostname` that has not expired, or null. */
  async heldElsewhere(hostname: string): Promise<LeaseRecord | null> {
    const l = await this.#o.store.getLease(hostname);
    return l && l.replicaId !== this.replicaId && l.expiresAt > this.#o.clock.now() ? l : null;
  }

  /** Graceful end: every lease released, so that other replicas need not wait for them to expire. */
  async close(): Promise<void> {
    this.abandon();
    const held = [...this.#held];
    this.#held.clear();
    for (const h of held) await this.#o.store.releaseLease(h, this.replicaId).catch(() => undefined);
  }

  /** Stops renewing without releasing (what a crash does; tests use it to play a dead replica). */
  abandon(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }
}

/**
 * The replica's id, kept in DATA/replica-id: stable across restarts, so that
 * a restarted replica drops the leases its earlier run held at once instead
 * of waiting for them to expire. One `eph serve` per data directory (the
 * data-dir lock) makes it one process per id.
 */
export async function loadReplicaId(dataDir: string): Promise<string> {
  const file = join(dataDir, 'replica-id');
  try {
    const id = (await readFile(file, 'utf8')).trim();
    if (/^[0-9a-f]{16}$/.test(id)) return id;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const id = randomBytes(8).toString('hex');
  await writeFile(file, `${id}\n`, { mode: 0o600 });
  return id;
}
