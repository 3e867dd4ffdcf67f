import type { Clock } from '../core/clock.ts';
import { isoWithOffset } from '../core/clock.ts';
import { EphError } from '../core/errors.ts';
import type { Plan, User } from '../core/types.ts';
import type { ConfigVarRecord } from '../store/config-var-store.ts';
import type { Store } from '../store/store.ts';
import type { InstanceService } from './instances.ts';
import type { SecretBox } from './secret-box.ts';
import type { UserService } from './users.ts';
import { KeyedLock } from '../core/keyed-lock.ts';

/** What a config var may be called: a portable environment variable name. */
export const CONFIG_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
export const MAX_CONFIG_NAME = 128;
/**
 * The kernel refuses one environment string longer than 128 KiB
 * (MAX_ARG_STRLEN): whatever the plan says, a value stays below it.
 */
export const HARD_MAX_VALUE_BYTES = 128 * 1024 - MAX_CONFIG_NAME - 2;

/**
 * Names the cloud sets itself or that would change how the programs around
 * the app run (the driver's helpers run as root with the app's environment
 * before the sandbox drops privileges): the dynamic loader's and the C
 * library's variables, the shell's start-up hooks, and command lookup.
 */
export const RESERVED_NAMES: ReadonlySet<string> = new Set([
  'PORT', 'PATH', 'IFS', 'ENV', 'BASH_ENV', 'SHELLOPTS', 'BASHOPTS', 'PS4', 'CDPATH',
  'GCONV_PATH', 'GETCONF_DIR', 'GLIBC_TUNABLES', 'HOSTALIASES', 'LOCALDOMAIN', 'LOCPATH', 'NIS_PATH',
  'NLSPATH', 'RESOLV_HOST_CONF', 'RES_OPTIONS', 'TMPDIR', 'TZDIR',
]);
export const RESERVED_PREFIXES: readonly string[] = ['EPH_', 'LD_', 'MALLOC_'];

/** A config var as the API shows it: secrets without their value unless revealed. */
export interface ConfigVarView {
  name: string;
  /** Null when redacted. */
  value: string | null;
  secret: boolean;
  redacted: boolean;
  /** The appliance whose attachment set it, or null. */
  attachment: string | null;
  updatedAt: string;
}

export interface ConfigView {
  hostname: string;
  vars: ConfigVarView[];
  /** When the app sees them: the environment is read at start. */
  appliesAt: 'next start';
}

/** A change asked for: values to set (all secret or none), names to remove. */
export interface ConfigChange {
  set: Record<string, string>;
  unset: string[];
  secret: boolean;
}

/** Why `name` cannot be a config var, or null when it can. */
export function configNameProblem(name: string): string | null {
  if (!CONFIG_NAME.test(name) || name.length > MAX_CONFIG_NAME) {
    return `config var name '${name.slice(0, MAX_CONFIG_NAME)}': expected a letter or '_' then letters, digits or '_' (at most ${MAX_CONFIG_NAME})`;
  }
  if (RESERVED_NAMES.has(name) || RESERVED_PREFIXES.some((p) => name.startsWith(p))) {
    return `config var name '${name}' is reserved (PORT, PATH, EPH_*, LD_*, and variables of the shell and the C library are the cloud's)`;
  }
  return null;
}

/** The context a value is sealed under: a sealed value moved to another instance or name does not open. */
export function sealContext(hostname: string, name: string): string {
  return `config\0${hostname}\0${name}`;
}

export interface ConfigVarServiceOptions {
  store: Store;
  box: SecretBox;
  instances: InstanceService;
  users: UserService;
  clock: Clock;
}

/**
 * Config vars of instances (`eph config`): stored sealed with the cloud's
 * key, checked against the owner's plan, handed to the app as environment
 * variables at its next start. Another user's instance is NOT_FOUND, as if
 * it did not exist. Values never go to a log: errors name the variable,
 * never its value.
 *
 * @example
 * await configVars.change(user, 'eph-1a2b3c4d.eph.localhost', { set: { API_KEY: 's3cret' }, unset: [], secret: true });
 * await configVars.envOf('eph-1a2b3c4d.eph.localhost'); // { API_KEY: 's3cret' }
 */
export class ConfigVarService {
  readonly #o: ConfigVarServiceOptions;
  readonly #locks = new KeyedLock();

  constructor(o: ConfigVarServiceOptions) {
    this.#o = o;
  }

  /** The user's instance's vars; secrets redacted unless `reveal`. */
  async view(user: User, host: string, reveal: boolean): Promise<ConfigView> {
    const i = await this.#o.instances.get(user, host);
    return this.#view(i.hostname, reveal);
  }

  /**
   * Sets and removes vars in one step, checked first: a bad name, a
   * reserved name or a change over the plan's limits changes nothing.
   * @throws EphError BAD_REQUEST / INVALID_VALUE (400), CONFIG_TOO_LARGE (413), NOT_FOUND.
   */
  async change(user: User, host: string, change: ConfigChange): Promise<ConfigView> {
    const i = await this.#o.instances.get(user, host);
    const names = Object.keys(change.set);
    if (names.length === 0 && change.unset.length === 0) throw new EphError('BAD_REQUEST', 'nothing to change: give vars to set or to unset');
    for (const name of [...names, ...change.unset]) {
      const problem = configNameProblem(name);
      if (problem) throw new EphError('INVALID_VALUE', problem);
    }
    const both = names.filter((n) => change.unset.includes(n));
    if (both.length) throw new EphError('BAD_REQUEST', `${both.join(', ')}: set and unset in the same change`);
    const plan = this.#o.users.plan(user.plan);
    const maxValue = Math.min(plan.quotas?.maxConfigValueBytes ?? Infinity, HARD_MAX_VALUE_BYTES);
    for (const name of names) {
      const value = change.set[name];
      if (typeof value !== 'string') throw new EphError('INVALID_VALUE', `config var ${name}: the value must be a string`);
      if (value.includes('\0')) throw new EphError('INVALID_VALUE', `config var ${name}: the value holds a NUL character, which no environment variable can`);
      const bytes = Buffer.byteLength(value);
      if (bytes > maxValue) {
        throw new EphError('CONFIG_TOO_LARGE', `config var ${name}: the value is ${bytes} bytes; ${limitOwner(plan, maxValue)} allows ${formatBytes(maxValue)} per value`);
      }
    }
    return this.#locks.run(i.hostname, async () => {
      const now = this.#o.clock.now();
      const current = new Map((await this.#o.store.listConfigVars(i.hostname)).map((v) => [v.name, v]));
      const set: ConfigVarRecord[] = names.map((name) => ({
        hostname: i.hostname,
        name,
        sealed: this.#o.box.seal(change.set[name]!, sealContext(i.hostname, name)),
        secret: change.secret,
        size: Buffer.byteLength(name) + Buffer.byteLength(change.set[name]!),
        updatedAt: now,
      }));
      const after = new Map(current);
      for (const n of change.unset) after.delete(n);
      for (const v of set) after.set(v.name, v);
      checkTotals(plan, after.size, [...after.values()].reduce((sum, v) => sum + v.size, 0));
      const missing = change.unset.filter((n) => !current.has(n));
      if (missing.length && names.length === 0 && missing.length === change.unset.length) {
        throw new EphError('NOT_FOUND', `config var ${missing.join(', ')} not set on ${i.hostname}`);
      }
      await this.#o.store.changeConfigVars(i.hostname, set, change.unset);
      return this.#view(i.hostname, false);
    });
  }

  /** Removes one var. @throws EphError NOT_FOUND when it is not set. */
  async unset(user: User, host: string, name: string): Promise<ConfigView> {
    return this.change(user, host, { set: {}, unset: [name], secret: false });
  }

  /** The environment the instance's app gets from its config vars (attachments' URLs included). */
  async envOf(hostname: string): Promise<Record<string, string>> {
    const env: Record<string, string> = {};
    for (const v of await this.#o.store.listConfigVars(hostname)) env[v.name] = this.#o.box.open(v.sealed, sealContext(hostname, v.name));
    return env;
  }

  /**
   * Restarts the user's instance when it runs, or sleeps frozen (a thaw would
   * keep the old environment), so that it reads its vars now; answers whether it did.
   */
  async restartIfRunning(user: User, host: string): Promise<boolean> {
    const i = await this.#o.instances.get(user, host);
    if (i.state !== 'running' && i.state !== 'starting' && i.state !== 'frozen') return false;
    await this.#o.instances.stop(i.hostname);
    await this.#o.instances.start(i.hostname, 'api');
    return true;
  }

  /** Serialises changes of one instance: the plan's limits are checked against what is really there. */
  exclusive<T>(hostname: string, fn: () => Promise<T>): Promise<T> {
    return this.#locks.run(hostname, fn);
  }

  async #view(hostname: string, reveal: boolean): Promise<ConfigView> {
    const attached = new Map((await this.#o.store.listAttachments(hostname)).map((a) => [a.varName, a.appliance]));
    const vars = (await this.#o.store.listConfigVars(hostname)).map((v): ConfigVarView => {
      const shown = reveal || !v.secret;
      return {
        name: v.name,
        value: shown ? this.#o.box.open(v.sealed, sealContext(hostname, v.name)) : null,
        secret: v.secret,
        redacted: !shown,
        attachment: attached.get(v.name) ?? null,
        updatedAt: isoWithOffset(v.updatedAt),
      };
    });
    return { hostname, vars, appliesAt: 'next start' };
  }

}

/** Refuses a state of `count` vars and `bytes` in all beyond the plan. */
export function checkTotals(plan: Plan, count: number, bytes: number): void {
  const q = plan.quotas ?? {};
  if (q.maxConfigVars !== undefined && count > q.maxConfigVars) {
    throw new EphError('CONFIG_TOO_LARGE', `plan '${plan.name}' allows ${q.maxConfigVars} config vars per instance; this change would make ${count}`);
  }
  if (q.maxConfigBytes !== undefined && bytes > q.maxConfigBytes) {
    throw new EphError('CONFIG_TOO_LARGE', `plan '${plan.name}' allows ${formatBytes(q.maxConfigBytes)} of config vars per instance (names and values); this change would make ${bytes} bytes`);
  }
}

function limitOwner(plan: Plan, max: number): string {
  return max === HARD_MAX_VALUE_BYTES && (plan.quotas?.maxConfigValueBytes ?? Infinity) > max ? 'the kernel (one environment string)' : `plan '${plan.name}'`;
}

/** `32 KiB (32768 bytes)`: both, so that nobody has to guess which unit. */
function formatBytes(n: number): string {
  return n >= 1024 && n % 1024 === 0 ? `${n / 1024} KiB (${n} bytes)` : `${n} bytes`;
}
