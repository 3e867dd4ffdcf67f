import type { Generated } from 'kysely';

/** Table shapes as kysely sees them. Times are epoch milliseconds. */
export interface Tables {
  users: { id: string; name: string; plan: string; token_hash: string; created_at: number };
  images: { digest: string; size: number; kind: string; entry: string; created_at: number };
  instances: {
    hostname: string;
    user_id: string;
    image_digest: string;
    image_name: string;
    alias: string | null;
    state: string;
    created_at: number;
    access_at: number;
    last_error: string | null;
    upstream: string | null;
  };
  gate_routes: {
    domain: string;
    user_id: string;
    targets: string;
    health_path: string;
    https_redirect: number;
    updated_at: number;
  };
  route_history: {
    id: Generated<number>;
    domain: string;
    at: number;
    by_user: string;
    action: string;
    from_targets: string;
    to_targets: string;
  };
  appliances: {
    user_id: string;
    name: string;
    kind: string;
    status: string;
    port: number;
    public_port: number;
    settings: string;
    psk: string;
    last_error: string | null;
    created_at: number;
  };
  gate_certs: {
    domain: string;
    user_id: string;
    cert: string;
    key: string;
    not_after: number;
    updated_at: number;
    source: string;
  };
  acme_domains: {
    domain: string;
    user_id: string;
    status: string;
    last_error: string | null;
    failures: number;
    next_at: number;
    updated_at: number;
  };
  acme_challenges: { token: string; key_authorization: string; expires_at: number };
  acme_accounts: { directory: string; sealed_key: string; url: string | null };
  ci_runs: {
    id: string;
    user_id: string;
    status: string;
    created_at: number;
    deadline: number;
    /** The rest of the run, as JSON (src/ci/ci-run.ts). */
    doc: string;
  };
  config_vars: {
    hostname: string;
    name: string;
    sealed: string;
    secret: number;
    size: number;
    updated_at: number;
  };
  /** Cluster leases (src/services/leases.ts): `counted` 0 while frozen (asleep for the quota). */
  instance_leases: { hostname: string; user_id: string; replica_id: string; counted: number; expires_at: number };
  attachments: {
    hostname: string;
    user_id: string;
    appliance: string;
    var_name: string;
    identity: string;
    sealed_key: string;
    local_port: number;
    created_at: number;
  };
}
