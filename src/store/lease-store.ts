import { sql, type Kysely, type Transaction } from 'kysely';
import type { Tables } from './schema.ts';

/** One instance held by one replica until `expiresAt` (renewed by its heartbeat). */
export interface LeaseRecord {
  hostname: string;
  userId: string;
  replicaId: string;
  /** False while the instance is frozen: it holds the instance for its replica but is asleep for the quota. */
  counted: boolean;
  expiresAt: number;
}

export interface LeaseRequest {
  hostname: string;
  userId: string;
  replicaId: string;
  /** The owner's plan limit of running instances. */
  limit: number;
  now: number;
  expiresAt: number;
}

/**
 * `ok`: the lease is this replica's (new, renewed, or counted again after a
 * freeze). `quota`: the owner has `limit` live counted leases already.
 * `held`: another replica holds this instance's live lease.
 */
export type LeaseOutcome = { ok: true } | { ok: false; reason: 'quota'; running: number } | { ok: false; reason: 'held'; holder: LeaseRecord };

/** The leases part of the store (src/services/leases.ts uses it). */
export interface LeaseStore {
  /**
   * Takes (or re-counts) the lease of one instance in one transaction
   * serialised per user: PostgreSQL `pg_advisory_xact_lock(hashtext(user_id))`,
   * SQLite `BEGIN IMMEDIATE`. Expired leases of the user are dropped first.
   */
  acquireLease(req: LeaseRequest): Promise<LeaseOutcome>;
  /** Extends this replica's leases of `hostnames`; answers the hostnames it still held (a lost lease is not renewed). */
  renewLeases(replicaId: string, hostnames: readonly string[], expiresAt: number): Promise<string[]>;
  /** Frozen (false) or running again without a quota check (true, used only by tests and recovery). */
  setLeaseCounted(hostname: string, replicaId: string, counted: boolean): Promise<void>;
  /** Drops this replica's lease of `hostname` (a stop, a failed start). */
  releaseLease(hostname: string, replicaId: string): Promise<void>;
  /** Drops every lease of a replica (its start-up: what it held before is gone with its processes). */
  releaseReplicaLeases(replicaId: string): Promise<number>;
  getLease(hostname: string): Promise<LeaseRecord | null>;
  listLeases(userId?: string): Promise<LeaseRecord[]>;
  /** Raises the stored last access to `at` (never lowers it: replicas flush their own views; the newest wins). */
  raiseAccessAt(hostname: string, at: number): Promise<void>;
  /** Stored last access of each of `hostnames` (missing ones are left out). */
  accessTimes(hostnames: readonly string[]): Promise<Map<string, number>>;
  /** PostgreSQL NOTIFY on `channel`; a no-op on SQLite (one process). */
  notify(channel: string, payload: string): Promise<void>;
}

const toLease = (r: Tables['instance_leases']): LeaseRecord => ({
  hostname: r.hostname,
  userId: r.user_id,
  replicaId: r.replica_id,
  counted: Number(r.counted) === 1,
  expiresAt: Number(r.expires_at),
});

/** The SQL of LeaseStore, shared by both back ends (SqlStore delegates here). */
export class SqlLeases implements LeaseStore {
  readonly #db: Kysely<Tables>;
  readonly #backend: 'sqlite' | 'postgres';

  constructor(db: Kysely<Tables>, backend: 'sqlite' | 'postgres') {
    this.#db = db;
    this.#backend = backend;
  }

  acquireLease(req: LeaseRequest): Promise<LeaseOutcome> {
    return this.#serialised(req.userId, (tx) => decide(tx, req));
  }

  async renewLeases(replicaId: string, hostnames: readonly string[], expiresAt: number): Promise<string[]> {
    if (hostnames.length === 0) return [];
    const rows = await this.#db
      .updateTable('instance_leases')
      .set({ expires_at: expiresAt })
      .where('replica_id', '=', replicaId)
      .where('hostname', 'in', [...hostnames])
      .returning('hostname')
      .execute();
    return rows.map((r) => r.hostname);
  }

  async setLeaseCounted(hostname: string, replicaId: string, counted: boolean): Promise<void> {
    await this.#db.updateTable('instance_leases').set({ counted: counted ? 1 : 0 }).where('hostname', '=', hostname).where('replica_id', '=', replicaId).execute();
  }

  async releaseLease(hostname: string, replicaId: string): Promise<void> {
    await this.#db.deleteFrom('instance_leases').where('hostname', '=', hostname).where('replica_id', '=', replicaId).execute();
  }

  async releaseReplicaLeases(replicaId: string): Promise<number> {
    const r = await this.#db.deleteFrom('instance_leases').where('replica_id', '=', replicaId).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  async getLease(hostname: string): Promise<LeaseRecord | null> {
    const r = await this.#db.selectFrom('instance_leases').selectAll().where('hostname', '=', hostname).executeTakeFirst();
    return r ? toLease(r) : null;
  }

  async listLeases(userId?: string): Promise<LeaseRecord[]> {
    let q = this.#db.selectFrom('instance_leases').selectAll();
    if (userId !== undefined) q = q.where('user_id', '=', userId);
    return (await q.orderBy('hostname').execute()).map(toLease);
  }

  async raiseAccessAt(hostname: string, at: number): Promise<void> {
    await this.#db.updateTable('instances').set({ access_at: at }).where('hostname', '=', hostname).where('access_at', '<', at).execute();
  }

  async accessTimes(hostnames: readonly string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    if (hostnames.length === 0) return out;
    const rows = await this.#db.selectFrom('instances').select(['hostname', 'access_at']).where('hostname', 'in', [...hostnames]).execute();
    for (const r of rows) out.set(r.hostname, Number(r.access_at));
    return out;
  }

  async notify(channel: string, payload: string): Promise<void> {
    if (this.#backend !== 'postgres') return;
    await sql`select pg_notify(${channel}, ${payload})`.execute(this.#db);
  }

  /**
   * Runs `fn` alone among every replica for this user. PostgreSQL: a
   * transaction-scoped advisory lock on the user id, freed by the commit (or
   * by the server if the connection dies). SQLite: BEGIN IMMEDIATE takes the
   * write lock at once (one process per data directory anyway).
   */
  async #serialised<T>(userId: string, fn: (tx: Kysely<Tables>) => Promise<T>): Promise<T> {
    if (this.#backend === 'postgres') {
      return this.#db.transaction().execute(async (tx: Transaction<Tables>) => {
        await sql`select pg_advisory_xact_lock(hashtext(${userId}))`.execute(tx);
        return fn(tx);
      });
    }
    return this.#db.connection().execute(async (conn) => {
      await sql`begin immediate`.execute(conn);
      try {
        const out = await fn(conn);
        await sql`commit`.execute(conn);
        return out;
      } catch (e) {
        await sql`rollback`.execute(conn).catch(() => undefined);
        throw e;
      }
    });
  }
}

/** The rule, inside the serialised transaction: drop expired, then held / re-counted / quota / insert. */
async function decide(tx: Kysely<Tables>, req: LeaseRequest): Promise<LeaseOutcome> {
  await tx.deleteFrom('instance_leases').where('user_id', '=', req.userId).where('expires_at', '<=', req.now).execute();
  const mine = await tx.selectFrom('instance_leases').selectAll().where('hostname', '=', req.hostname).executeTakeFirst();
  if (mine && mine.replica_id !== req.replicaId) return { ok: false, reason: 'held', holder: toLease(mine) };
  if (mine && Number(mine.counted) === 1) {
    await tx.updateTable('instance_leases').set({ expires_at: req.expiresAt }).where('hostname', '=', req.hostname).execute();
    return { ok: true };
  }
  const n = await tx
    .selectFrom('instance_leases')
    .select((eb) => eb.fn.countAll().as('n'))
    .where('user_id', '=', req.userId)
    .where('counted', '=', 1)
    .executeTakeFirst();
  const running = Number(n?.n ?? 0);
  if (running >= req.limit) return { ok: false, reason: 'quota', running };
  if (mine) {
    await tx.updateTable('instance_leases').set({ counted: 1, expires_at: req.expiresAt }).where('hostname', '=', req.hostname).execute();
  } else {
    await tx
      .insertInto('instance_leases')
      .values({ hostname: req.hostname, user_id: req.userId, replica_id: req.replicaId, counted: 1, expires_at: req.expiresAt })
      .execute();
  }
  return { ok: true };
}
