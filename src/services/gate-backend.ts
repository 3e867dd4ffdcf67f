import type { HostPort } from '../core/config.ts';
import { EphError } from '../core/errors.ts';
import type { Store } from '../store/store.ts';
import type { GateBackend } from '../gate/backend.ts';
import type { NameRegistry } from './names.ts';

/**
 * The gate's one backend: static-file appliances at `<name>.static.<domain>`
 * (served by their loopback site, never woken) in front of the instance
 * service. Static routes are re-read from the store after every appliance
 * change, so the hot path only does a Map lookup.
 */
export class CloudGateBackend implements GateBackend {
  readonly #instances: GateBackend;
  readonly #store: Store;
  readonly #names: NameRegistry;
  readonly #domain: string;
  #static = new Map<string, HostPort>();
  /** Static site host → owner, as last written to the routing table. */
  #known = new Map<string, string>();

  constructor(instances: GateBackend, store: Store, names: NameRegistry, domain: string) {
    this.#instances = instances;
    this.#store = store;
    this.#names = names;
    this.#domain = domain;
  }

  upstream(hostname: string): HostPort | null {
    if (this.#static.size !== 0) {
      const s = this.#static.get(hostname);
      if (s !== undefined) return s;
    }
    return this.#instances.upstream(hostname);
  }

  wake(hostname: string): Promise<HostPort> {
    if (this.#known.has(hostname)) {
      return Promise.reject(new EphError('UNAVAILABLE', `static site ${hostname} is stopped; start its appliance`));
    }
    return this.#instances.wake(hostname);
  }

  touch(hostname: string): void {
    this.#instances.touch(hostname);
  }

  /** Re-reads static appliances and updates the routing table (through the name registry, as their owners' `static` names). */
  async syncStatic(): Promise<void> {
    const running = new Map<string, HostPort>();
    const known = new Map<string, string>();
    for (const a of await this.#store.listAppliances()) {
      if (a.kind !== 'static') continue;
      const host = `${a.name}.static.${this.#domain}`.toLowerCase();
      known.set(host, a.userId);
      if (a.status === 'running') running.set(host, { host: '127.0.0.1', port: a.port });
    }
    for (const [host, userId] of this.#known) if (known.get(host) !== userId) this.#names.release(host, { kind: 'static', userId });
    for (const [host, userId] of known) {
      if (this.#known.get(host) !== userId) this.#names.bindLoaded(host, { kind: 'static', userId }, [{ hostname: host, weight: 1 }]);
    }
    this.#static = running;
    this.#known = known;
  }
}
