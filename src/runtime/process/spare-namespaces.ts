import type { AddressBlock, AddressPool } from './address-pool.ts';
import { createNamespace, deleteNamespace, hostAddresses, linkExists, namespaceExists, spareNamesFor } from './netns.ts';
import type { NamespaceNames } from './netns.ts';

/** A namespace made ahead of need: veth pair, addresses, `lo` and route already set up. */
export interface SpareNamespace {
  names: NamespaceNames;
  block: AddressBlock;
}

/** Options of {@link SpareNamespaces}. */
export interface SpareNamespacesOptions {
  /** How many spares to keep ready (0: none, every start creates its own). */
  size: number;
  /** Name prefix of the owning driver, so that its recover() finds the spares. */
  prefix: string;
  /** The driver's address pool: spares hold blocks of the driver's subnet. */
  addresses: AddressPool;
  /** Called with each failed refill (which only leaves the pool short). */
  onError?: (e: unknown) => void;
}

/**
 * Keeps a few network namespaces ready, so that waking an instance does not
 * wait for `ip` to create one (two `ip -batch` runs and a look at the host's
 * addresses). Refills run in the background, one namespace at a time; a
 * failed refill leaves the pool short and callers create their own.
 *
 * @example
 * const spares = new SpareNamespaces({ size: 2, prefix: 'eph', addresses });
 * spares.fill();
 * const spare = spares.take(); // null when none is ready
 */
export class SpareNamespaces {
  readonly #size: number;
  readonly #prefix: string;
  readonly #addresses: AddressPool;
  readonly #onError: (e: unknown) => void;
  readonly #ready: SpareNamespace[] = [];
  #filling: Promise<void> | null = null;
  /** A fill was asked for while one ran: run another pass when it ends. */
  #again = false;
  #timer: NodeJS.Timeout | null = null;
  #held = 0;
  #closed = false;

  constructor(opts: SpareNamespacesOptions) {
    this.#size = Math.max(0, Math.floor(opts.size));
    this.#prefix = opts.prefix;
    this.#addresses = opts.addresses;
    this.#onError = opts.onError ?? (() => undefined);
  }

  /** Number of spares ready to be taken. */
  get ready(): number {
    return this.#ready.length;
  }

  /** Hands out a ready spare (it is the caller's from now on), or null; the caller calls fill() once done. */
  take(): SpareNamespace | null {
    return this.#ready.shift() ?? null;
  }

  /**
   * Starts topping the pool up in the background, after `delayMs` (a refill
   * right after a take would compete for the CPU with the app starting).
   */
  fill(delayMs = 0): void {
    if (this.#size === 0 || this.#closed || this.#held > 0 || this.#ready.length >= this.#size) return;
    if (this.#filling) {
      this.#again = true;
      return;
    }
    if (delayMs > 0) {
      this.#timer ??= setTimeout(() => {
        this.#timer = null;
        this.fill();
      }, delayMs);
      return;
    }
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#filling = this.#topUp().finally(() => {
      this.#filling = null;
      if (this.#again) {
        this.#again = false;
        this.fill();
      }
    });
  }

  /**
   * Deletes every spare and makes none while `work` runs (recover() sweeps
   * the prefix and must not race a refill), then refills.
   */
  async without<T>(work: () => Promise<T>): Promise<T> {
    this.#held++;
    try {
      await this.#emptied();
      return await work();
    } finally {
      this.#held--;
      this.fill();
    }
  }

  /** Deletes every spare and makes no more. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#emptied();
  }

  async #emptied(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#filling;
    for (const spare of this.#ready.splice(0)) await this.#remove(spare);
  }

  async #topUp(): Promise<void> {
    try {
      while (this.#ready.length < this.#size && !this.#closed && this.#held === 0) {
        let names = spareNamesFor(this.#prefix);
        // Random names; another driver with this prefix (a test's second run) may hold one.
        while (namespaceExists(names.ns) || linkExists(names.hostVeth)) names = spareNamesFor(this.#prefix);
        const block = this.#addresses.allocate(await hostAddresses());
        try {
          await createNamespace(names, block);
        } catch (e) {
          this.#addresses.release(block);
          throw e;
        }
        const spare = { names, block };
        if (this.#closed || this.#held > 0) await this.#remove(spare);
        else this.#ready.push(spare);
      }
    } catch (e) {
      this.#again = false;
      this.#onError(e);
    }
  }

  async #remove(spare: SpareNamespace): Promise<void> {
    await deleteNamespace(spare.names);
    this.#addresses.release(spare.block);
  }
}
