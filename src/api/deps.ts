import type { InstanceService } from '../services/instances.ts';
import type { UserService } from '../services/users.ts';
import type { RouteService } from '../gate/route-service.ts';

/** What the HTTP API is built from; server.ts fills it. */
export interface ApiDeps {
  users: UserService;
  instances: InstanceService;
  routes: RouteService | null;
  maxArchiveBytes: number;
  /** Port visitors use, for the URLs the API shows. */
  gatePort: number;
  domain: string;
  /** Prometheus text of the gate and the cloud, without host names. */
  metrics?: () => string;
  /** Per-host gate series: of the hosts `userId` holds, or of every host for null (the operator). */
  hostMetrics?: (userId: string | null) => string;
  /** The operator's bearer token that adds every host's series to /metrics; null or absent: none. */
  metricsToken?: string | null;
}
