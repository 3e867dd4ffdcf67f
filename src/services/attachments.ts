import { randomBytes } from 'node:crypto';
import type { ApplianceService } from '../appliances/appliance-service.ts';
import { freeLoopbackPort } from '../appliances/free-port.ts';
import type { Clock } from '../core/clock.ts';
import { isoWithOffset } from '../core/clock.ts';
import { EphError } from '../core/errors.ts';
import type { ApplianceKind, User } from '../core/types.ts';
import type { LaunchTunnel } from '../runtime/driver.ts';
import type { AttachmentRecord, ConfigVarRecord } from '../store/config-var-store.ts';
import type { Store } from '../store/store.ts';
import { checkTotals, configNameProblem, sealContext } from './config-vars.ts';
import type { ConfigVarService } from './config-vars.ts';
import type { InstanceService } from './instances.ts';
import type { SecretBox } from './secret-box.ts';
import type { UserService } from './users.ts';

/** The config var an attachment sets unless told otherwise (`--as`). */
export const DEFAULT_VAR: Readonly<Record<ApplianceKind, string>> = {
  postgres: 'DATABASE_URL',
  redis: 'REDIS_URL',
  static: 'STATIC_URL',
  mongo: 'MONGODB_URL',
};

/** An attachment as the API shows it (no key, no password). */
export interface AttachmentView {
  hostname: string;
  appliance: string;
  /** The config var holding the local URL (a secret: `eph config HOST --reveal` shows it). */
  var: string;
  /** Where the tunnel accepts inside the instance. */
  local: string;
  createdAt: string;
}

export interface AttachmentServiceOptions {
  store: Store;
  box: SecretBox;
  instances: InstanceService;
  appliances: ApplianceService;
  configVars: ConfigVarService;
  users: UserService;
  clock: Clock;
  /**
   * `namespace`: every instance has a loopback of its own (process driver
   * with network namespaces), so a tunnel accepts on the kind's usual port
   * (5432…); `shared`: instances share the host's loopback, so each
   * attachment gets a free port of its own.
   */
  loopback: 'namespace' | 'shared';
  /** Why attachments cannot work on this cloud (e.g. the swarm runtime), or null. */
  unavailable: string | null;
}

interface Live {
  userId: string;
  appliance: string;
  identity: string;
}

/**
 * Attaches a user's appliance to the same user's instance: at each start
 * the driver opens a TLS-PSK client tunnel inside the instance (the
 * machinery of a stunnel.conf in an archive, written by the cloud) with an
 * identity of the attachment's own, and the app finds the local URL in a
 * config var (DATABASE_URL…). Detaching deletes both and revokes the
 * identity at once, cutting its open connections.
 *
 * @example
 * await attachments.attach(user, 'mydb', 'eph-1a2b3c4d.eph.localhost', {});
 * // next start: DATABASE_URL=postgres://role:pw@127.0.0.1:5432/mydb inside the instance
 */
export class AttachmentService {
  readonly #o: AttachmentServiceOptions;
  /** `userId/appliance` → identity → key: what the appliances' endpoints accept besides their own identities. */
  readonly #keys = new Map<string, Map<string, string>>();
  /** hostname → its attachments' identities, to revoke them when the instance goes. */
  readonly #byHost = new Map<string, Live[]>();

  constructor(o: AttachmentServiceOptions) {
    this.#o = o;
  }

  /** Reads every attachment's identity (call before the appliances open their endpoints). */
  async load(): Promise<void> {
    for (const a of await this.#o.store.listAttachments()) this.#remember(a, this.#o.box.open(a.sealedKey, keyContext(a)));
  }

  /** For ApplianceService's `attachedIdentities`: called on every handshake, so a detach applies to the next connection. */
  identities(userId: string, appliance: string): ReadonlyMap<string, string> | undefined {
    return this.#keys.get(`${userId}/${appliance}`);
  }

  async list(user: User, host: string): Promise<AttachmentView[]> {
    const i = await this.#o.instances.get(user, host);
    return (await this.#o.store.listAttachments(i.hostname)).map(view);
  }

  /**
   * @throws EphError NOT_FOUND (instance or appliance not the user's), CONFLICT (attached already, or the
   *   config var is taken), INVALID_VALUE (bad `as`), CONFIG_TOO_LARGE, UNAVAILABLE (not on this runtime).
   */
  async attach(user: User, applianceName: string, host: string, opts: { as?: string | undefined }): Promise<AttachmentView> {
    const i = await this.#o.instances.get(user, host);
    const target = await this.#o.appliances.attachTarget(user, applianceName);
    if (this.#o.unavailable) throw new EphError('UNAVAILABLE', `attachments: ${this.#o.unavailable}`);
    const varName = opts.as ?? DEFAULT_VAR[target.kind];
    const problem = configNameProblem(varName);
    if (problem) throw new EphError('INVALID_VALUE', problem);
    return this.#o.configVars.exclusive(i.hostname, async () => {
      const { store } = this.#o;
      const attached = await store.listAttachments(i.hostname);
      if (attached.some((a) => a.appliance === applianceName)) throw new EphError('CONFLICT', `appliance '${applianceName}' is attached to ${i.hostname} already`);
      const vars = await store.listConfigVars(i.hostname);
      if (vars.some((v) => v.name === varName)) {
        throw new EphError('CONFLICT', `config var ${varName} is set on ${i.hostname} already: choose another name (--as NAME) or unset it first`);
      }
      const localPort = await this.#localPort(target.defaultLocalPort, attached);
      const rec: AttachmentRecord = {
        hostname: i.hostname,
        userId: user.id,
        appliance: applianceName,
        varName,
        identity: `attach-${i.hostname.split('.')[0]}-${randomBytes(4).toString('hex')}`,
        sealedKey: '',
        localPort,
        createdAt: this.#o.clock.now(),
      };
      const key = randomBytes(32).toString('hex');
      rec.sealedKey = this.#o.box.seal(key, keyContext(rec));
      const url = target.url(localPort);
      const configVar: ConfigVarRecord = {
        hostname: i.hostname,
        name: varName,
        sealed: this.#o.box.seal(url, sealContext(i.hostname, varName)),
        secret: true,
        size: Buffer.byteLength(varName) + Buffer.byteLength(url),
        updatedAt: rec.createdAt,
      };
      const plan = this.#o.users.plan(user.plan);
      checkTotals(plan, vars.length + 1, vars.reduce((sum, v) => sum + v.size, configVar.size));
      await store.putAttachment(rec, configVar);
      this.#remember(rec, key);
      return view(rec);
    });
  }

  /** Deletes the attachment and its config var, and revokes its identity (open connections are cut). */
  async detach(user: User, applianceName: string, host: string): Promise<AttachmentView> {
    const i = await this.#o.instances.get(user, host);
    return this.#o.configVars.exclusive(i.hostname, async () => {
      const a = (await this.#o.store.listAttachments(i.hostname)).find((x) => x.appliance === applianceName && x.userId === user.id);
      if (!a) throw new EphError('NOT_FOUND', `appliance '${applianceName}' is not attached to ${i.hostname}`);
      await this.#o.store.deleteAttachment(a.hostname, a.appliance);
      this.#forget(a);
      return view(a);
    });
  }

  /** The tunnels the instance's next start opens (attachments whose appliance still exists). */
  async tunnelsOf(hostname: string): Promise<LaunchTunnel[]> {
    const out: LaunchTunnel[] = [];
    for (const a of await this.#o.store.listAttachments(hostname)) {
      const app = await this.#o.store.getAppliance(a.userId, a.appliance);
      if (!app || app.publicPort === 0) continue;
      out.push({ name: a.appliance, localPort: a.localPort, endpointPort: app.publicPort, identity: a.identity, key: this.#o.box.open(a.sealedKey, keyContext(a)) });
    }
    return out;
  }

  /** The appliance was deleted: its attachments, their config vars and identities go with it. */
  async applianceRemoved(userId: string, appliance: string): Promise<void> {
    for (const a of await this.#o.store.listAttachments()) {
      if (a.userId !== userId || a.appliance !== appliance) continue;
      await this.#o.configVars.exclusive(a.hostname, () => this.#o.store.deleteAttachment(a.hostname, a.appliance));
      this.#forget(a);
    }
  }

  /** The instance was deleted (its rows with it): its identities stop working now. */
  instanceRemoved(hostname: string): void {
    for (const a of this.#byHost.get(hostname) ?? []) this.#forget({ ...a, hostname });
    this.#byHost.delete(hostname);
  }

  #remember(a: AttachmentRecord, key: string): void {
    const k = `${a.userId}/${a.appliance}`;
    let ids = this.#keys.get(k);
    if (!ids) this.#keys.set(k, (ids = new Map()));
    ids.set(a.identity, key);
    const list = this.#byHost.get(a.hostname) ?? [];
    list.push({ userId: a.userId, appliance: a.appliance, identity: a.identity });
    this.#byHost.set(a.hostname, list);
  }

  #forget(a: Live & { hostname: string }): void {
    const k = `${a.userId}/${a.appliance}`;
    const ids = this.#keys.get(k);
    ids?.delete(a.identity);
    if (ids?.size === 0) this.#keys.delete(k);
    const rest = (this.#byHost.get(a.hostname) ?? []).filter((x) => x.identity !== a.identity);
    if (rest.length) this.#byHost.set(a.hostname, rest);
    else this.#byHost.delete(a.hostname);
    this.#o.appliances.disconnect(a.userId, a.appliance, a.identity);
  }

  /** The kind's usual port inside a namespace (the next one up when two attachments want it); a free one on a shared loopback. */
  async #localPort(usual: number, attached: readonly AttachmentRecord[]): Promise<number> {
    if (this.#o.loopback === 'namespace') {
      const taken = new Set(attached.map((a) => a.localPort));
      let port = usual;
      while (taken.has(port) || port === 8080) port++;
      return port;
    }
    const taken = new Set((await this.#o.store.listAttachments()).map((a) => a.localPort));
    return freeLoopbackPort(taken);
  }
}

function keyContext(a: { hostname: string; appliance: string; identity: string }): string {
  return `attachment\0${a.hostname}\0${a.appliance}\0${a.identity}`;
}

function view(a: AttachmentRecord): AttachmentView {
  return { hostname: a.hostname, appliance: a.appliance, var: a.varName, local: `127.0.0.1:${a.localPort}`, createdAt: isoWithOffset(a.createdAt) };
}
