import pg from 'pg';

/** Channel of name changes: routes, aliases, instance hostnames (published, deleted). */
export const NAMES_CHANNEL = 'eph_names';
/** Channel of instance events between replicas: `up`, `down` (stopped, crashed or frozen), `stop` and `wake` requests to the holder. */
export const INSTANCES_CHANNEL = 'eph_instances';

export type InstanceEvent = 'up' | 'down' | 'stop' | 'wake';
const EVENTS: ReadonlySet<string> = new Set(['up', 'down', 'stop', 'wake']);

export interface ChangeFeedOptions {
  /** The postgres:// URL of the shared store. */
  url: string;
  replicaId: string;
  /** Sends a NOTIFY (the store's pool: no second connection for sending). */
  send: (channel: string, payload: string) => Promise<void>;
  /** Another replica changed `name`: reload it from the store. */
  onName: (name: string) => void;
  onInstance: (hostname: string, event: InstanceEvent, from: string) => void;
  /** The listening connection was re-established: notifications may have been missed, reload everything. */
  onResync: () => void;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

/**
 * Cluster mode's change feed over PostgreSQL LISTEN/NOTIFY. A payload is
 * `<replica id> <name>` on eph_names and `<replica id> <event> <hostname>`
 * on eph_instances: the sender's id lets a replica skip its own changes (a
 * DNS name has no space). NOTIFY is delivered after the sender's transaction
 * commits, so a receiver that reloads from the store sees the change.
 *
 * One dedicated connection listens; when it drops, it reconnects with a
 * growing delay (100 ms to 5 s) and asks for a full reload, since what was
 * sent meanwhile is lost.
 */
export class ChangeFeed {
  readonly #o: ChangeFeedOptions;
  #client: pg.Client | null = null;
  #closed = false;
  #retryMs = 100;
  #retryTimer: NodeJS.Timeout | null = null;

  constructor(o: ChangeFeedOptions) {
    this.#o = o;
  }

  /** Resolves once listening (the first connection must work: a replica that cannot listen would serve stale routes). */
  async start(): Promise<void> {
    await this.#connect();
  }

  publishName(name: string): void {
    this.#send(NAMES_CHANNEL, `${this.#o.replicaId} ${name}`);
  }

  publishInstance(hostname: string, event: InstanceEvent): void {
    this.#send(INSTANCES_CHANNEL, `${this.#o.replicaId} ${event} ${hostname}`);
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    const c = this.#client;
    this.#client = null;
    await c?.end().catch(() => undefined);
  }

  #send(channel: string, payload: string): void {
    this.#o.send(channel, payload).catch((e: unknown) => this.#o.log?.('change not announced to other replicas', { channel, payload, reason: e instanceof Error ? e.message : String(e) }));
  }

  async #connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.#o.url });
    client.on('error', (e) => {
      this.#o.log?.('change feed connection failed', { reason: e.message });
      this.#lost(client);
    });
    client.on('end', () => this.#lost(client));
    client.on('notification', (m) => this.#dispatch(m.channel, m.payload ?? ''));
    await client.connect();
    await client.query(`LISTEN ${NAMES_CHANNEL}`);
    await client.query(`LISTEN ${INSTANCES_CHANNEL}`);
    if (this.#closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.#client = client;
    this.#retryMs = 100;
  }

  #lost(client: pg.Client): void {
    if (this.#client !== client || this.#closed) return;
    this.#client = null;
    client.end().catch(() => undefined);
    const retry = (): void => {
      this.#retryTimer = setTimeout(() => {
        this.#connect().then(
          () => this.#o.onResync(),
          (e: unknown) => {
            this.#o.log?.('change feed reconnect failed', { reason: e instanceof Error ? e.message : String(e), retryMs: this.#retryMs });
            this.#retryMs = Math.min(5000, this.#retryMs * 2);
            if (!this.#closed) retry();
          },
        );
      }, this.#retryMs);
      this.#retryTimer.unref();
    };
    retry();
  }

  #dispatch(channel: string, payload: string): void {
    const parts = payload.split(' ');
    const from = parts[0] ?? '';
    if (from === this.#o.replicaId) return;
    if (channel === NAMES_CHANNEL && parts.length === 2 && parts[1]) this.#o.onName(parts[1]);
    else if (channel === INSTANCES_CHANNEL && parts.length === 3 && EVENTS.has(parts[1]!) && parts[2]) this.#o.onInstance(parts[2], parts[1] as InstanceEvent, from);
  }
}
