import { sql, type Kysely } from 'kysely';
import type { Tables } from './schema.ts';

/**
 * Ordered, append-only migrations; the applied count lives in
 * eph_migrations so that every start brings an older store up to date.
 */
type Migration = (db: Kysely<Tables>, backend: 'sqlite' | 'postgres') => Promise<void>;

const MIGRATIONS: Migration[] = [
  async (db, backend) => {
    // bigint for times: epoch milliseconds overflow a 32-bit integer.
    const big = 'bigint';
    await db.schema
      .createTable('users')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('plan', 'text', (c) => c.notNull())
      .addColumn('token_hash', 'text', (c) => c.notNull())
      .addColumn('created_at', big, (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('images')
      .addColumn('digest', 'text', (c) => c.primaryKey())
      .addColumn('size', big, (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('entry', 'text', (c) => c.notNull())
      .addColumn('created_at', big, (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('instances')
      .addColumn('hostname', 'text', (c) => c.primaryKey())
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
      .addColumn('image_digest', 'text', (c) => c.notNull().references('images.digest'))
      .addColumn('image_name', 'text', (c) => c.notNull())
      .addColumn('alias', 'text', (c) => c.unique())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('created_at', big, (c) => c.notNull())
      .addColumn('access_at', big, (c) => c.notNull())
      .addColumn('last_error', 'text')
      .addColumn('upstream', 'text')
      .execute();
    await db.schema.createIndex('instances_user').on('instances').column('user_id').execute();
    await db.schema
      .createTable('gate_routes')
      .addColumn('domain', 'text', (c) => c.primaryKey())
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
      .addColumn('targets', 'text', (c) => c.notNull())
      .addColumn('health_path', 'text', (c) => c.notNull())
      .addColumn('https_redirect', 'integer', (c) => c.notNull())
      .addColumn('updated_at', big, (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('route_history')
      .addColumn('id', backend === 'postgres' ? sql`bigserial` : 'integer', (c) => c.primaryKey().$call((b) => (backend === 'sqlite' ? b.autoIncrement() : b)))
      .addColumn('domain', 'text', (c) => c.notNull())
      .addColumn('at', big, (c) => c.notNull())
      .addColumn('by_user', 'text', (c) => c.notNull())
      .addColumn('action', 'text', (c) => c.notNull())
      .addColumn('from_targets', 'text', (c) => c.notNull())
      .addColumn('to_targets', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('route_history_domain').on('route_history').columns(['domain', 'id']).execute();
    await db.schema
      .createTable('appliances')
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('port', 'integer', (c) => c.notNull())
      .addColumn('public_port', 'integer', (c) => c.notNull())
      .addColumn('settings', 'text', (c) => c.notNull())
      .addColumn('psk', 'text', (c) => c.notNull())
      .addColumn('last_error', 'text')
      .addColumn('created_at', big, (c) => c.notNull())
      .addPrimaryKeyConstraint('appliances_pk', ['user_id', 'name'])
      .execute();
  },
  async (db) => {
    // Uploaded gate certificates: one per domain (or wildcard), served by SNI.
    await db.schema
      .createTable('gate_certs')
      .addColumn('domain', 'text', (c) => c.primaryKey())
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
      .addColumn('cert', 'text', (c) => c.notNull())
      .addColumn('key', 'text', (c) => c.notNull())
      .addColumn('not_after', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
  },
  async (db) => {
    // CI runs (src/ci): the searchable columns, the rest as one JSON document.
    await db.schema
      .createTable('ci_runs')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addColumn('deadline', 'bigint', (c) => c.notNull())
      .addColumn('doc', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('ci_runs_user').on('ci_runs').columns(['user_id', 'created_at']).execute();
  },
  async (db) => {
    // Config vars of instances (values sealed by the cloud's key, never clear text) and attached appliances.
    await db.schema
      .createTable('config_vars')
      .addColumn('hostname', 'text', (c) => c.notNull().references('instances.hostname'))
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('sealed', 'text', (c) => c.notNull())
      .addColumn('secret', 'integer', (c) => c.notNull())
      .addColumn('size', 'integer', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('config_vars_pk', ['hostname', 'name'])
      .execute();
    await db.schema
      .createTable('attachments')
      .addColumn('hostname', 'text', (c) => c.notNull().references('instances.hostname'))
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
      .addColumn('appliance', 'text', (c) => c.notNull())
      .addColumn('var_name', 'text', (c) => c.notNull())
      .addColumn('identity', 'text', (c) => c.notNull())
      .addColumn('sealed_key', 'text', (c) => c.notNull())
      .addColumn('local_port', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .addPrimaryKeyConstraint('attachments_pk', ['hostname', 'appliance'])
      .execute();
  },
  async (db) => {
    // Automatic HTTPS (ACME): where each certificate came from, the automatic domains' state,
    // HTTP-01 answers any replica's gate can give, and the cloud's account key (sealed).
    await db.schema.alterTable('gate_certs').addColumn('source', 'text', (c) => c.notNull().defaultTo('uploaded')).execute();
    await db.schema
      .createTable('acme_domains')
      .addColumn('domain', 'text', (c) => c.primaryKey())
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
      .addColumn('status', 'text', (c) => c.notNull())
      .addColumn('last_error', 'text')
      .addColumn('failures', 'integer', (c) => c.notNull())
      .addColumn('next_at', 'bigint', (c) => c.notNull())
      .addColumn('updated_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('acme_challenges')
      .addColumn('token', 'text', (c) => c.primaryKey())
      .addColumn('key_authorization', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('acme_accounts')
      .addColumn('directory', 'text', (c) => c.primaryKey())
      .addColumn('sealed_key', 'text', (c) => c.notNull())
      .addColumn('url', 'text')
      .execute();
  },
  async (db) => {
    // Cluster mode (docs/cluster.md): one row per instance running (or starting, or frozen) on some
    // replica. It is the running quota across replicas and the lock that starts a wake once.
    await db.schema
      .createTable('instance_leases')
      .addColumn('hostname', 'text', (c) => c.primaryKey())
      .addColumn('user_id', 'text', (c) => c.notNull())
      .addColumn('replica_id', 'text', (c) => c.notNull())
      .addColumn('counted', 'integer', (c) => c.notNull())
      .addColumn('expires_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('instance_leases_user').on('instance_leases').column('user_id').execute();
  },
];

export async function migrate(db: Kysely<Tables>, backend: 'sqlite' | 'postgres'): Promise<void> {
  await sql`create table if not exists eph_migrations (version integer primary key, applied_at bigint not null)`.execute(db);
  const rows = await sql<{ v: number | null }>`select max(version) as v from eph_migrations`.execute(db);
  const applied = Number(rows.rows[0]?.v ?? 0);
  for (let i = applied; i < MIGRATIONS.length; i++) {
    await db.transaction().execute(async (tx) => {
      await MIGRATIONS[i]!(tx, backend);
      await sql`insert into eph_migrations (version, applied_at) values (${i + 1}, ${Date.now()})`.execute(tx);
    });
  }
}
