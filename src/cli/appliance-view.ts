import type { ApplianceKind } from '../core/types.ts';

/** What GET /v1/appliances/:name answers: the service's own view type (a type-only import, nothing loads). */
export type { ApplianceView } from '../appliances/appliance-service.ts';
import type { ApplianceView } from '../appliances/appliance-service.ts';

export const APPLIANCE_KINDS: readonly ApplianceKind[] = ['postgres', 'redis', 'static', 'mongo'];

/** Where a client tunnel listens by default: the service's standard port. */
const STANDARD_PORTS: Record<ApplianceKind, number> = { postgres: 5432, redis: 6379, static: 8000, mongo: 27017 };

/**
 * The local port a tunnel to `a` opens by default: the port of its `url`
 * (the API's own choice), else the service's standard port.
 */
export function defaultLocalPort(a: Pick<ApplianceView, 'kind' | 'url'>): number {
  try {
    const port = Number(new URL(a.url).port);
    if (Number.isInteger(port) && port > 0) return port;
  } catch {
    // no usable url: fall through to the standard port
  }
  return STANDARD_PORTS[a.kind] ?? 0;
}
