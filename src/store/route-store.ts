import type { GateRoute, RouteChange } from '../core/types.ts';

/**
 * Where gate routes and their change history live. The SQLite and PostgreSQL
 * stores implement it; `test/gate/route-store.conformance.ts` is the suite
 * every implementation must pass.
 *
 * Values going in and out are copies: mutating a returned route or change
 * never alters what is stored.
 */
export interface RouteStore {
  /** The route of a normalised domain, or null when none is mapped. */
  getRoute(domain: string): Promise<GateRoute | null>;
  /** Every route, or only `userId`'s, ordered by domain. */
  listRoutes(userId?: string): Promise<GateRoute[]>;
  /** Writes the route (or deletes it when `route` is null) and appends `change` to the history, in ONE transaction. */
  saveRoute(domain: string, route: GateRoute | null, change: RouteChange): Promise<void>;
  /**
   * The domain's changes in the order they were saved, newest first (by
   * insertion, not by `at`: a clock step backwards must not reorder them), at
   * most `limit` of them (all when omitted). History outlives the route: it
   * is kept after the route is deleted.
   */
  history(domain: string, limit?: number): Promise<RouteChange[]>;
}

const copyRoute = (r: GateRoute): GateRoute => ({ ...r, targets: r.targets.map((t) => ({ ...t })) });
const copyChange = (c: RouteChange): RouteChange => ({
  ...c,
  from: c.from.map((t) => ({ ...t })),
  to: c.to.map((t) => ({ ...t })),
});

/**
 * In-memory RouteStore for unit tests and the conformance suite's own check.
 * Nothing survives the process, so production wiring must never use it.
 */
export class MemoryRouteStore implements RouteStore {
  readonly #routes = new Map<string, GateRoute>();
  readonly #changes = new Map<string, RouteChange[]>();

  async getRoute(domain: string): Promise<GateRoute | null> {
    const r = this.#routes.get(domain);
    return r ? copyRoute(r) : null;
  }

  async listRoutes(userId?: string): Promise<GateRoute[]> {
    const out: GateRoute[] = [];
    for (const r of this.#routes.values()) if (userId === undefined || r.userId === userId) out.push(copyRoute(r));
    return out.sort((a, b) => (a.domain < b.domain ? -1 : a.domain > b.domain ? 1 : 0));
  }

  async saveRoute(domain: string, route: GateRoute | null, change: RouteChange): Promise<void> {
    if (route) this.#routes.set(domain, copyRoute(route));
    else this.#routes.delete(domain);
    let list = this.#changes.get(domain);
    if (!list) this.#changes.set(domain, (list = []));
    list.push(copyChange(change));
  }

  async history(domain: string, limit?: number): Promise<RouteChange[]> {
    const list = this.#changes.get(domain) ?? [];
    const n = limit === undefined ? list.length : Math.max(0, Math.min(limit, list.length));
    const out: RouteChange[] = [];
    for (let i = list.length - 1; out.length < n; i--) out.push(copyChange(list[i]!));
    return out;
  }

  async close(): Promise<void> {}
}
