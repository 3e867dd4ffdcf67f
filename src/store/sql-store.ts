import type { Kysely, Selectable } from 'kysely';
import type { ApplianceRecord, AppKind, GateRoute, GateTarget, ImageRecord, Instance, InstanceState, RouteChange, User, ApplianceKind, ApplianceStatus } from '../core/types.ts';
import { EphError } from '../core/errors.ts';
import type { InstancePatch, Store } from './store.ts';
import type { Tables } from './schema.ts';
import { migrate } from './migrations.ts';
import { SqlLeases, type LeaseOutcome, type LeaseRecord, type LeaseRequest } from './lease-store.ts';
import type { StoredCert } from './cert-store.ts';
import type { AcmeAccount, AcmeChallenge, AcmeDomain, AcmeStatus } from '../gate/acme-store.ts';
import type { CiRun } from '../ci/ci-run.ts';
import type { AttachmentRecord, ConfigVarRecord } from './config-var-store.ts';

type Row<T extends keyof Tables> = Selectable<Tables[T]>;

const toUser = (r: Row<'users'>): User => ({
  id: r.id,
  name: r.name,
  plan: r.plan,
  tokenHash: r.token_hash,
  createdAt: Number(r.created_at),
});

const toImage = (r: Row<'images'>): ImageRecord => ({
  digest: r.digest,
  size: Number(r.size),
  kind: r.kind as AppKind,
  entry: r.entry,
  createdAt: Number(r.created_at),
});

const toInstance = (r: Row<'instances'>): Instance => ({
  hostname: r.hostname,
  userId: r.user_id,
  imageDigest: r.image_digest,
  imageName: r.image_name,
  alias: r.alias,
  state: r.state as InstanceState,
  createdAt: Number(r.created_at),
  accessAt: Number(r.access_at),
  lastError: r.last_error,
  upstream: r.upstream,
});

const toRoute = (r: Row<'gate_routes'>): GateRoute => ({
  domain: r.domain,
  userId: r.user_id,
  targets: JSON.parse(r.targets) as GateTarget[],
  healthPath: r.health_path,
  httpsRedirect: Number(r.https_redirect) === 1,
  updatedAt: Number(r.updated_at),
});

const toChange = (r: Row<'route_history'>): RouteChange => ({
  domain: r.domain,
  at: Number(r.at),
  by: r.by_user,
  action: r.action,
  from: JSON.parse(r.from_targets) as GateTarget[],
  to: JSON.parse(r.to_targets) as GateTarget[],
});

const toAppliance = (r: Row<'appliances'>): ApplianceRecord => ({
  userId: r.user_id,
  name: r.name,
  kind: r.kind as ApplianceKind,
  status: r.status as ApplianceStatus,
  port: Number(r.port),
  publicPort: Number(r.public_port),
  settings: JSON.parse(r.settings) as Record<string, string>,
  psk: JSON.parse(r.psk) as Record<string, string>,
  lastError: r.last_error,
  createdAt: Number(r.created_at),
});

const toCert = (r: Row<'gate_certs'>): StoredCert => ({
  domain: r.domain,
  userId: r.user_id,
  cert: r.cert,
  key: r.key,
  notAfter: Number(r.not_after),
  updatedAt: Number(r.updated_at),
  // Only an automatic certificate says so: an upload reads as before the column existed.
  ...(r.source === 'acme' ? { source: 'acme' as const } : {}),
});

const toAcmeDomain = (r: Row<'acme_domains'>): AcmeDomain => ({
  domain: r.domain,
  userId: r.user_id,
  status: r.status as AcmeStatus,
  lastError: r.last_error,
  failures: Number(r.failures),
  nextAt: Number(r.next_at),
  updatedAt: Number(r.updated_at),
});

const acmeDomainRow = (d: AcmeDomain) => ({
  domain: d.domain,
  user_id: d.userId,
  status: d.status,
  last_error: d.lastError,
  failures: d.failures,
  next_at: d.nextAt,
  updated_at: d.updatedAt,
});

const certRow = (c: StoredCert) => ({
  domain: c.domain,
  user_id: c.userId,
  cert: c.cert,
  key: c.key,
  not_after: c.notAfter,
  updated_at: c.updatedAt,
  source: c.source ?? 'uploaded',
});

function isUniqueViolation(e: unknown): boolean {
  const err = e as { code?: string; message?: string };
  return err.code === '23505' || err.code === 'SQLITE_CONSTRAINT_UNIQUE' || err.code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

/** The one SQL implementation of Store; sqlite/ and postgres/ only build the kysely dialect. */
export class SqlStore implements Store {
  readonly backend: 'sqlite' | 'postgres';
  readonly #db: Kysely<Tables>;

  constructor(db: Kysely<Tables>, backend: 'sqlite' | 'postgres') {
    this.#db = db;
    this.backend = backend;
  }

  migrate(): Promise<void> {
    return migrate(this.#db, this.backend);
  }

  // ---- cluster leases (lease-store.ts) ----------------------------------
  #leases: SqlLeases | null = null;
  get #l(): SqlLeases {
    return (this.#leases ??= new SqlLeases(this.#db, this.backend));
  }
  acquireLease(req: LeaseRequest): Promise<LeaseOutcome> {
    return this.#l.acquireLease(req);
  }
  renewLeases(replicaId: string, hostnames: readonly string[], expiresAt: number): Promise<string[]> {
    return this.#l.renewLeases(replicaId, hostnames, expiresAt);
  }
  setLeaseCounted(hostname: string, replicaId: string, counted: boolean): Promise<void> {
    return this.#l.setLeaseCounted(hostname, replicaId, counted);
  }
  releaseLease(hostname: string, replicaId: string): Promise<void> {
    return this.#l.releaseLease(hostname, replicaId);
  }
  releaseReplicaLeases(replicaId: string): Promise<number> {
    return this.#l.releaseReplicaLeases(replicaId);
  }
  getLease(hostname: string): Promise<LeaseRecord | null> {
    return this.#l.getLease(hostname);
  }
  listLeases(userId?: string): Promise<LeaseRecord[]> {
    return this.#l.listLeases(userId);
  }
  raiseAccessAt(hostname: string, at: number): Promise<void> {
    return this.#l.raiseAccessAt(hostname, at);
  }
  accessTimes(hostnames: readonly string[]): Promise<Map<string, number>> {
    return this.#l.accessTimes(hostnames);
  }
  notify(channel: string, payload: string): Promise<void> {
    return this.#l.notify(channel, payload);
  }

  close(): Promise<void> {
    return this.#db.destroy();
  }

  async createUser(u: User): Promise<void> {
    try {
      await this.#db
        .insertInto('users')
        .values({ id: u.id, name: u.name, plan: u.plan, token_hash: u.tokenHash, created_at: u.createdAt })
        .execute();
    } catch (e) {
      if (isUniqueViolation(e)) throw new EphError('CONFLICT', `user '${u.name}' exists already`);
      throw e;
    }
  }

  async getUser(id: string): Promise<User | null> {
    const r = await this.#db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? toUser(r) : null;
  }

  async getUserByName(name: string): Promise<User | null> {
    const r = await this.#db.selectFrom('users').selectAll().where('name', '=', name).executeTakeFirst();
    return r ? toUser(r) : null;
  }

  async listUsers(): Promise<User[]> {
    return (await this.#db.selectFrom('users').selectAll().orderBy('created_at').execute()).map(toUser);
  }

  async putImage(i: ImageRecord): Promise<void> {
    await this.#db
      .insertInto('images')
      .values({ digest: i.digest, size: i.size, kind: i.kind, entry: i.entry, created_at: i.createdAt })
      .onConflict((oc) => oc.column('digest').doNothing())
      .execute();
  }

  async getImage(digest: string): Promise<ImageRecord | null> {
    const r = await this.#db.selectFrom('images').selectAll().where('digest', '=', digest).executeTakeFirst();
    return r ? toImage(r) : null;
  }

  async listImages(): Promise<ImageRecord[]> {
    return (await this.#db.selectFrom('images').selectAll().execute()).map(toImage);
  }

  async deleteImage(digest: string): Promise<void> {
    await this.#db.deleteFrom('images').where('digest', '=', digest).execute();
  }

  async imageRefs(digest: string): Promise<number> {
    const r = await this.#db
      .selectFrom('instances')
      .select((eb) => eb.fn.countAll().as('n'))
      .where('image_digest', '=', digest)
      .executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  async insertInstance(i: Instance): Promise<void> {
    await this.#db
      .insertInto('instances')
      .values({
        hostname: i.hostname,
        user_id: i.userId,
        image_digest: i.imageDigest,
        image_name: i.imageName,
        alias: i.alias,
        state: i.state,
        created_at: i.createdAt,
        access_at: i.accessAt,
        last_error: i.lastError,
        upstream: i.upstream,
      })
      .execute();
  }

  async getInstance(hostname: string): Promise<Instance | null> {
    const r = await this.#db.selectFrom('instances').selectAll().where('hostname', '=', hostname).executeTakeFirst();
    return r ? toInstance(r) : null;
  }

  async findInstance(host: string): Promise<Instance | null> {
    const r = await this.#db
      .selectFrom('instances')
      .selectAll()
      .where((eb) => eb.or([eb('hostname', '=', host), eb('alias', '=', host)]))
      .executeTakeFirst();
    return r ? toInstance(r) : null;
  }

  async listInstances(userId?: string): Promise<Instance[]> {
    let q = this.#db.selectFrom('instances').selectAll();
    if (userId !== undefined) q = q.where('user_id', '=', userId);
    return (await q.orderBy('created_at').orderBy('hostname').execute()).map(toInstance);
  }

  async updateInstance(hostname: string, p: InstancePatch): Promise<void> {
    const set: Partial<Tables['instances']> = {};
    if (p.imageName !== undefined) set.image_name = p.imageName;
    if (p.state !== undefined) set.state = p.state;
    if (p.accessAt !== undefined) set.access_at = p.accessAt;
    if (p.lastError !== undefined) set.last_error = p.lastError;
    if (p.upstream !== undefined) set.upstream = p.upstream;
    if (Object.keys(set).length === 0) return;
    await this.#db.updateTable('instances').set(set).where('hostname', '=', hostname).execute();
  }

  async setAlias(hostname: string, alias: string | null): Promise<{ movedFrom: string | null }> {
    return this.#db.transaction().execute(async (tx) => {
      let movedFrom: string | null = null;
      if (alias !== null) {
        const holder = await tx.selectFrom('instances').select('hostname').where('alias', '=', alias).executeTakeFirst();
        if (holder && holder.hostname !== hostname) {
          movedFrom = holder.hostname;
          await tx.updateTable('instances').set({ alias: null }).where('hostname', '=', holder.hostname).execute();
        }
      }
      await tx.updateTable('instances').set({ alias }).where('hostname', '=', hostname).execute();
      return { movedFrom };
    });
  }

  async deleteInstance(hostname: string): Promise<{ imageOrphaned: boolean }> {
    return this.#db.transaction().execute(async (tx) => {
      const row = await tx.selectFrom('instances').select('image_digest').where('hostname', '=', hostname).executeTakeFirst();
      if (!row) return { imageOrphaned: false };
      // Its config vars and attachments go with it (they name it by a foreign key).
      await tx.deleteFrom('config_vars').where('hostname', '=', hostname).execute();
      await tx.deleteFrom('attachments').where('hostname', '=', hostname).execute();
      await tx.deleteFrom('instances').where('hostname', '=', hostname).execute();
      const left = await tx
        .selectFrom('instances')
        .select((eb) => eb.fn.countAll().as('n'))
        .where('image_digest', '=', row.image_digest)
        .executeTakeFirst();
      return { imageOrphaned: Number(left?.n ?? 0) === 0 };
    });
  }

  async getRoute(domain: string): Promise<GateRoute | null> {
    const r = await this.#db.selectFrom('gate_routes').selectAll().where('domain', '=', domain).executeTakeFirst();
    return r ? toRoute(r) : null;
  }

  async listRoutes(userId?: string): Promise<GateRoute[]> {
    let q = this.#db.selectFrom('gate_routes').selectAll();
    if (userId !== undefined) q = q.where('user_id', '=', userId);
    return (await q.orderBy('domain').execute()).map(toRoute);
  }

  async saveRoute(domain: string, route: GateRoute | null, change: RouteChange): Promise<void> {
    await this.#db.transaction().execute(async (tx) => {
      if (route === null) {
        await tx.deleteFrom('gate_routes').where('domain', '=', domain).execute();
      } else {
        const values = {
          domain,
          user_id: route.userId,
          targets: JSON.stringify(route.targets),
          health_path: route.healthPath,
          https_redirect: route.httpsRedirect ? 1 : 0,
          updated_at: route.updatedAt,
        };
        await tx
          .insertInto('gate_routes')
          .values(values)
          .onConflict((oc) => oc.column('domain').doUpdateSet({ ...values }))
          .execute();
      }
      await tx
        .insertInto('route_history')
        .values({
          domain,
          at: change.at,
          by_user: change.by,
          action: change.action,
          from_targets: JSON.stringify(change.from),
          to_targets: JSON.stringify(change.to),
        })
        .execute();
    });
  }

  async history(domain: string, limit?: number): Promise<RouteChange[]> {
    let q = this.#db.selectFrom('route_history').selectAll().where('domain', '=', domain).orderBy('id', 'desc');
    if (limit !== undefined) q = q.limit(limit);
    const rows = await q.execute();
    return rows.map(toChange);
  }

  async putAppliance(a: ApplianceRecord): Promise<void> {
    const values = {
      user_id: a.userId,
      name: a.name,
      kind: a.kind,
      status: a.status,
      port: a.port,
      public_port: a.publicPort,
      settings: JSON.stringify(a.settings),
      psk: JSON.stringify(a.psk),
      last_error: a.lastError,
      created_at: a.createdAt,
    };
    await this.#db
      .insertInto('appliances')
      .values(values)
      .onConflict((oc) => oc.columns(['user_id', 'name']).doUpdateSet({ ...values }))
      .execute();
  }

  async getAppliance(userId: string, name: string): Promise<ApplianceRecord | null> {
    const r = await this.#db
      .selectFrom('appliances')
      .selectAll()
      .where('user_id', '=', userId)
      .where('name', '=', name)
      .executeTakeFirst();
    return r ? toAppliance(r) : null;
  }

  async listAppliances(userId?: string): Promise<ApplianceRecord[]> {
    let q = this.#db.selectFrom('appliances').selectAll();
    if (userId !== undefined) q = q.where('user_id', '=', userId);
    return (await q.orderBy('name').execute()).map(toAppliance);
  }

  async deleteAppliance(userId: string, name: string): Promise<void> {
    await this.#db.deleteFrom('appliances').where('user_id', '=', userId).where('name', '=', name).execute();
  }

  async putCert(c: StoredCert): Promise<void> {
    const values = certRow(c);
    await this.#db
      .insertInto('gate_certs')
      .values(values)
      .onConflict((oc) => oc.column('domain').doUpdateSet({ ...values }))
      .execute();
  }

  async putAcmeDomain(d: AcmeDomain): Promise<void> {
    const values = acmeDomainRow(d);
    await this.#db
      .insertInto('acme_domains')
      .values(values)
      .onConflict((oc) => oc.column('domain').doUpdateSet({ ...values }))
      .execute();
  }

  async getAcmeDomain(domain: string): Promise<AcmeDomain | null> {
    const r = await this.#db.selectFrom('acme_domains').selectAll().where('domain', '=', domain).executeTakeFirst();
    return r ? toAcmeDomain(r) : null;
  }

  async listAcmeDomains(userId?: string): Promise<AcmeDomain[]> {
    let q = this.#db.selectFrom('acme_domains').selectAll();
    if (userId !== undefined) q = q.where('user_id', '=', userId);
    return (await q.orderBy('domain').execute()).map(toAcmeDomain);
  }

  async deleteAcmeDomain(domain: string): Promise<void> {
    await this.#db.deleteFrom('acme_domains').where('domain', '=', domain).execute();
  }

  async saveAcmeIssued(c: StoredCert, d: AcmeDomain): Promise<void> {
    const cert = certRow({ ...c, source: 'acme' });
    const state = acmeDomainRow(d);
    await this.#db.transaction().execute(async (tx) => {
      await tx.insertInto('gate_certs').values(cert).onConflict((oc) => oc.column('domain').doUpdateSet({ ...cert })).execute();
      await tx.insertInto('acme_domains').values(state).onConflict((oc) => oc.column('domain').doUpdateSet({ ...state })).execute();
    });
  }

  async putAcmeChallenge(c: AcmeChallenge): Promise<void> {
    const values = { token: c.token, key_authorization: c.keyAuthorization, expires_at: c.expiresAt };
    await this.#db
      .insertInto('acme_challenges')
      .values(values)
      .onConflict((oc) => oc.column('token').doUpdateSet({ ...values }))
      .execute();
  }

  async getAcmeChallenge(token: string): Promise<AcmeChallenge | null> {
    const r = await this.#db.selectFrom('acme_challenges').selectAll().where('token', '=', token).executeTakeFirst();
    return r ? { token: r.token, keyAuthorization: r.key_authorization, expiresAt: Number(r.expires_at) } : null;
  }

  async deleteAcmeChallenge(token: string, now: number): Promise<void> {
    await this.#db.deleteFrom('acme_challenges').where((eb) => eb.or([eb('token', '=', token), eb('expires_at', '<', now)])).execute();
  }

  async getAcmeAccount(directory: string): Promise<AcmeAccount | null> {
    const r = await this.#db.selectFrom('acme_accounts').selectAll().where('directory', '=', directory).executeTakeFirst();
    return r ? { directory: r.directory, sealedKey: r.sealed_key, url: r.url } : null;
  }

  async putAcmeAccount(a: AcmeAccount): Promise<void> {
    const values = { directory: a.directory, sealed_key: a.sealedKey, url: a.url };
    await this.#db
      .insertInto('acme_accounts')
      .values(values)
      .onConflict((oc) => oc.column('directory').doUpdateSet({ ...values }))
      .execute();
  }

  async getCert(domain: string): Promise<StoredCert | null> {
    const r = await this.#db.selectFrom('gate_certs').selectAll().where('domain', '=', domain).executeTakeFirst();
    return r ? toCert(r) : null;
  }

  async listCerts(userId?: string): Promise<StoredCert[]> {
    let q = this.#db.selectFrom('gate_certs').selectAll();
    if (userId !== undefined) q = q.where('user_id', '=', userId);
    return (await q.orderBy('domain').execute()).map(toCert);
  }

  async deleteCert(domain: string): Promise<void> {
    await this.#db.deleteFrom('gate_certs').where('domain', '=', domain).execute();
  }

  async putCiRun(run: CiRun): Promise<void> {
    const { id, userId, status, createdAt, deadline } = run;
    const row = { id, user_id: userId, status, created_at: createdAt, deadline, doc: JSON.stringify(run) };
    await this.#db
      .insertInto('ci_runs')
      .values(row)
      .onConflict((oc) => oc.column('id').doUpdateSet({ status: row.status, deadline: row.deadline, doc: row.doc }))
      .execute();
  }

  async getCiRun(id: string): Promise<CiRun | null> {
    const r = await this.#db.selectFrom('ci_runs').select('doc').where('id', '=', id).executeTakeFirst();
    return r ? (JSON.parse(r.doc) as CiRun) : null;
  }

  async listCiRuns(userId: string, limit = 1000): Promise<CiRun[]> {
    const rows = await this.#db.selectFrom('ci_runs').select('doc').where('user_id', '=', userId).orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
    return rows.map((r) => JSON.parse(r.doc) as CiRun);
  }

  async listRunningCiRuns(): Promise<CiRun[]> {
    const rows = await this.#db.selectFrom('ci_runs').select('doc').where('status', '=', 'running').orderBy('deadline').execute();
    return rows.map((r) => JSON.parse(r.doc) as CiRun);
  }

  async deleteCiRun(id: string): Promise<void> {
    await this.#db.deleteFrom('ci_runs').where('id', '=', id).execute();
  }

  async listConfigVars(hostname: string): Promise<ConfigVarRecord[]> {
    const rows = await this.#db.selectFrom('config_vars').selectAll().where('hostname', '=', hostname).orderBy('name').execute();
    return rows.map(toConfigVar);
  }

  async changeConfigVars(hostname: string, set: readonly ConfigVarRecord[], unset: readonly string[]): Promise<void> {
    await this.#db.transaction().execute(async (tx) => {
      const names = [...new Set([...unset, ...set.map((v) => v.name)])];
      if (names.length > 0) await tx.deleteFrom('config_vars').where('hostname', '=', hostname).where('name', 'in', names).execute();
      if (set.length > 0) await tx.insertInto('config_vars').values(set.map((v) => configVarRow({ ...v, hostname }))).execute();
    });
  }

  async listAttachments(hostname?: string): Promise<AttachmentRecord[]> {
    let q = this.#db.selectFrom('attachments').selectAll();
    if (hostname !== undefined) q = q.where('hostname', '=', hostname);
    return (await q.orderBy('hostname').orderBy('appliance').execute()).map(toAttachment);
  }

  async putAttachment(a: AttachmentRecord, v: ConfigVarRecord): Promise<void> {
    await this.#db.transaction().execute(async (tx) => {
      await tx
        .insertInto('attachments')
        .values({
          hostname: a.hostname,
          user_id: a.userId,
          appliance: a.appliance,
          var_name: a.varName,
          identity: a.identity,
          sealed_key: a.sealedKey,
          local_port: a.localPort,
          created_at: a.createdAt,
        })
        .execute()
        .catch((e: unknown) => {
          if (isUniqueViolation(e)) throw new EphError('CONFLICT', `appliance '${a.appliance}' is attached to ${a.hostname} already`);
          throw e;
        });
      await tx.deleteFrom('config_vars').where('hostname', '=', v.hostname).where('name', '=', v.name).execute();
      await tx.insertInto('config_vars').values(configVarRow(v)).execute();
    });
  }

  async deleteAttachment(hostname: string, appliance: string): Promise<void> {
    await this.#db.transaction().execute(async (tx) => {
      const a = await tx.selectFrom('attachments').select('var_name').where('hostname', '=', hostname).where('appliance', '=', appliance).executeTakeFirst();
      if (!a) return;
      await tx.deleteFrom('config_vars').where('hostname', '=', hostname).where('name', '=', a.var_name).execute();
      await tx.deleteFrom('attachments').where('hostname', '=', hostname).where('appliance', '=', appliance).execute();
    });
  }
}

const toConfigVar = (r: Row<'config_vars'>): ConfigVarRecord => ({
  hostname: r.hostname,
  name: r.name,
  sealed: r.sealed,
  secret: Number(r.secret) === 1,
  size: Number(r.size),
  updatedAt: Number(r.updated_at),
});

const configVarRow = (v: ConfigVarRecord): Tables['config_vars'] => ({
  hostname: v.hostname,
  name: v.name,
  sealed: v.sealed,
  secret: v.secret ? 1 : 0,
  size: v.size,
  updated_at: v.updatedAt,
});

const toAttachment = (r: Row<'attachments'>): AttachmentRecord => ({
  hostname: r.hostname,
  userId: r.user_id,
  appliance: r.appliance,
  varName: r.var_name,
  identity: r.identity,
  sealedKey: r.sealed_key,
  localPort: Number(r.local_port),
  createdAt: Number(r.created_at),
});
