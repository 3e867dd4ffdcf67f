import type { GateTarget } from '../core/types.ts';

/** One host's routing: a single instance, or a weighted split (canary). */
export interface HostRoute {
  /** Targets with weights summing to > 0; one target is the common case. */
  targets: GateTarget[];
  /** Redirect plain HTTP to HTTPS for this host. */
  httpsRedirect: boolean;
  /** Precomputed: cumulative weights for a split, null for a single target. */
  cumulative: number[] | null;
  total: number;
}

/** Cookie that keeps a visitor on the same side of a split. */
export const STICKY_COOKIE = 'eph_route';

/**
 * Host → instance map for the gate's hot path: instance hostnames, aliases and
 * gate domains, all in one Map so a request costs one lookup. The instance
 * and gate services keep it in sync with the store; the gate only reads it.
 */
export class RoutingTable {
  readonly #hosts = new Map<string, HostRoute>();
  /** Bumped on every change so that holders of a lookup can notice a switch. */
  version = 0;

  set(host: string, targets: GateTarget[], httpsRedirect = false): void {
    const live = targets.filter((t) => t.weight > 0);
    let cumulative: number[] | null = null;
    let total = 0;
    if (live.length > 1) {
      cumulative = [];
      for (const t of live) cumulative.push((total += t.weight));
    } else total = live.length ? live[0]!.weight : 0;
    this.#hosts.set(host, { targets: live, httpsRedirect, cumulative, total });
    this.version++;
  }

  delete(host: string): void {
    if (this.#hosts.delete(host)) this.version++;
  }

  get(host: string): HostRoute | undefined {
    return this.#hosts.get(host);
  }

  /**
   * Picks the instance for a request. `sticky` is the visitor's previous pick
   * (from the STICKY_COOKIE); it wins while it is still one of the targets.
   */
  pick(route: HostRoute, sticky: string | undefined, rand: number = Math.random()): string {
    const targets = route.targets;
    if (route.cumulative === null) return targets[0]!.hostname;
    if (sticky !== undefined) for (const t of targets) if (t.hostname === sticky) return sticky;
    const x = rand * route.total;
    const cum = route.cumulative;
    for (let i = 0; i < cum.length; i++) if (x < cum[i]!) return targets[i]!.hostname;
    return targets[targets.length - 1]!.hostname;
  }

  hosts(): IterableIterator<string> {
    return this.#hosts.keys();
  }
}
