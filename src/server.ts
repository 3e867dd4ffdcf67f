import { chmod, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import pino, { type Logger } from 'pino';
import type { Config } from './core/config.ts';
import { systemClock, type Clock } from './core/clock.ts';
import { openStore } from './store/open.ts';
import type { Store } from './store/store.ts';
import { ImageStore } from './images/image-store.ts';
import { ProcessDriver, type ProcessDriverOptions } from './runtime/process/process-driver.ts';
import type { Driver } from './runtime/driver.ts';
import { RoutingTable } from './gate/routing-table.ts';
import { createGate } from './gate/gate.ts';
import { startIdleReaper } from './gate/idle-reaper.ts';
import { RouteService } from './gate/route-service.ts';
import { UserService } from './services/users.ts';
import { InstanceService } from './services/instances.ts';
import { apiRoutesOf, buildApi } from './api/app.ts';
import { authenticate } from './api/auth.ts';
import { applianceRoutes } from './api/v1-appliances.ts';
import { ApplianceService } from './appliances/appliance-service.ts';
import { CloudGateBackend } from './services/gate-backend.ts';
import { selfSignedCert } from './gate/tls.ts';
import { CertService, storeHolders } from './gate/cert-service.ts';
import { gateCertRoutes } from './api/v1-gate-certs.ts';
import { AcmeService, type AcmeServiceDeps } from './gate/acme-service.ts';
import { readFile } from 'node:fs/promises';
import { followerMetrics } from './api/log-follow.ts';
import { escapedErrorMetrics } from './core/process-guard.ts';
import { SpaceReserve } from './core/space-reserve.ts';
import { ciRoutes } from './api/v1-ci.ts';
import { CiService } from './ci/ci-service.ts';
import { NameRegistry } from './services/names.ts';
import { DomainVerifier, loadVerifySecret } from './services/domain-verifier.ts';
import { nameRoutes } from './api/v1-names.ts';
import { SecretBox } from './services/secret-box.ts';
import { ConfigVarService } from './services/config-vars.ts';
import { AttachmentService } from './services/attachments.ts';
import { configRoutes } from './api/v1-config.ts';
import { attachmentRoutes } from './api/v1-attachments.ts';
import { sessionRoutes } from './api/session-routes.ts';
import { consoleRoutes } from './api/console-routes.ts';
import { Resolver } from 'node:dns/promises';
import { DEFAULT_LEASE_TTL_MS, LeaseKeeper, loadReplicaId } from './services/leases.ts';
import { ChangeFeed } from './services/route-notify.ts';

export interface Cloud {
  config: Config;
  apiUrl: string;
  gateUrl: string;
  apiPort: number;
  gatePort: number;
  store: Store;
  users: UserService;
  instances: InstanceService;
  routes: RouteService;
  /** Uploaded per-domain certificates, served by the HTTPS gate's SNI. */
  certs: CertService;
  /** Automatic HTTPS (ACME); null when the operator did not turn it on. */
  acme: AcmeService | null;
  appliances: ApplianceService;
  /** CI runs and their time-to-live reaper. */
  ci: CiService;
  /** Config vars of instances, sealed with the key of `config.secretsKeyFile`. */
  configVars: ConfigVarService;
  /** Appliances attached to instances (tunnels inside them). */
  attachments: AttachmentService;
  table: RoutingTable;
  /** One owner per public name; the only writer of `table`. */
  names: NameRegistry;
  /** Every route of the control API (method + URL pattern), for tests that must cover them all. */
  apiRoutes: Array<{ method: string; url: string }>;
  /** HTTPS gate URL when --gate-tls is set. */
  gateTlsUrl: string | null;
  driver: Driver;
  log: Logger;
  /** Instance leases: the running quota across replicas (docs/cluster.md); null on SQLite (one process). */
  leases: LeaseKeeper | null;
  /** Cluster mode (a postgres:// store): other replicas' route, alias and instance changes; null on SQLite. */
  feed: ChangeFeed | null;
  close(): Promise<void>;
  /** Tests only: ends like a crash (no lease released, no notification, the instances' processes left to the driver's recovery). */
  crash(): Promise<void>;
}

export interface CloudOptions {
  clock?: Clock;
  /** A driver to use instead of the configured one (tests of other drivers). */
  driver?: Driver;
  /** Extra environment for every app. */
  appEnv?: Record<string, string>;
  /** Idle reaper period; defaults to a tenth of the idle timeout, at most 30 s. */
  reapIntervalMs?: number;
  logger?: Logger;
  /** Namespace prefix, subnet, isolation mode of the process driver (tests running side by side need their own). */
  driverOptions?: Partial<ProcessDriverOptions>;
  /** How long a route switch waits for its new target to wake and pass its health check (default 30 s). */
  healthTimeoutMs?: number;
  /** Log the 'ephemeric is up' line (default true; `eph serve` on a terminal prints its own summary instead). */
  announce?: boolean;
  /** How often expired CI runs are looked for (default 5 s). */
  ciReapIntervalMs?: number;
  /** Idle pooled gate connections to instances are closed after this long (default 4 s; tests hold them longer). */
  upstreamIdleMs?: number;
  /** Instance lease time to live (default EPH_LEASE_TTL, else 15 s): how long a dead replica's instances stay held. */
  leaseTtlMs?: number;
  /** Automatic HTTPS timings (retry backoff, polling of the directory); tests shorten them. */
  acme?: Pick<AcmeServiceDeps, 'retryBaseMs' | 'retryMaxMs' | 'poll' | 'maxCheckIntervalMs'>;
}

/**
 * The composition root: the only place that builds parts and hands each its
 * dependencies. Start-up repairs what a crash left behind before it listens.
 */
export async function startCloud(config: Config, opts: CloudOptions = {}): Promise<Cloud> {
  const clock = opts.clock ?? systemClock;
  const log = opts.logger ?? pino({ level: config.logLevel });
  const dataDir = resolve(config.dataDir);
  for (const d of ['images', 'tmp', 'logs', 'run', 'appliances']) await mkdir(join(dataDir, d), { recursive: true });
  // Secrets (eph.sqlite, logs, keys) are the service account's alone; other accounts may only
  // pass through to what they need: the sandbox user to its image, database accounts to their data.
  for (const [d, mode] of [['', 0o711], ['images', 0o711], ['appliances', 0o711], ['tmp', 0o700], ['logs', 0o700], ['run', 0o700]] as const) {
    await chmod(join(dataDir, d), mode);
  }
  // Loaded only when asked for, so that the process runtime does not need dockerode.
  const swarm =
    !opts.driver && config.runtime === 'swarm'
      ? new (await import('./runtime/swarm/swarm-driver.ts')).SwarmDriver({ stateDir: join(dataDir, 'run') })
      : null;

  // Cluster mode: replicas share one images directory (each its own scratch space in it: renames stay on one file system).
  const replicaId = await loadReplicaId(dataDir);
  const imagesDir = config.imagesDir ? resolve(config.imagesDir) : join(dataDir, 'images');
  if (config.imagesDir) {
    await mkdir(join(imagesDir, '.tmp', replicaId), { recursive: true });
    await chmod(imagesDir, 0o711);
    await chmod(join(imagesDir, '.tmp'), 0o700);
  }
  const store = await openStore(config.store, dataDir);
  // Outside the store: a copy of the database alone opens no config var.
  const secretBox = await SecretBox.load(config.secretsKeyFile ?? join(dataDir, 'secrets.key'));
  const images = new ImageStore({
    root: imagesDir,
    tmpDir: config.imagesDir ? join(imagesDir, '.tmp', replicaId) : join(dataDir, 'tmp'),
    limits: { maxArchiveBytes: config.maxArchiveBytes, maxUnpackedBytes: config.maxUnpackedBytes, maxEntries: config.maxEntries },
  });
  await images.recover();
  const driver = opts.driver ?? swarm ?? new ProcessDriver({ prefix: config.netnsPrefix, subnet: config.subnet, egress: config.egress, imageRoot: imagesDir, ...opts.driverOptions, stateDir: join(dataDir, 'run') });
  const table = new RoutingTable();
  let verifier: DomainVerifier | null = null;
  if (config.verifyDomains) {
    const resolver = new Resolver({ timeout: 5000, tries: 2 });
    if (config.dnsServers.length) resolver.setServers(config.dnsServers);
    verifier = new DomainVerifier({ secret: await loadVerifySecret(join(dataDir, 'verify.key')), resolver });
  }
  const names = new NameRegistry({ table, cloudDomain: config.domain, store, verifier, log: (msg, fields) => log.warn(fields ?? {}, msg) });
  let instancesRef: InstanceService | null = null;
  // Only with a shared store: on SQLite one process holds the data directory (its lock), its in-memory quota check is
  // atomic already, and a lease transaction would put a synchronous fsync on every wake's path.
  const leases = store.backend !== 'postgres' ? null : new LeaseKeeper({
    store,
    replicaId,
    ttlMs: opts.leaseTtlMs ?? config.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS,
    clock,
    onLost: (h) => void instancesRef?.dropLost(h),
    log: (msg, fields) => log.warn(fields ?? {}, msg),
  });
  // Cluster mode: what one replica changes, the others hear within milliseconds (LISTEN/NOTIFY), and reload from the store.
  let reloads: Promise<void> = Promise.resolve();
  const feed =
    store.backend === 'postgres'
      ? new ChangeFeed({
          url: config.store,
          replicaId,
          send: (channel, payload) => store.notify(channel, payload),
          // One reload at a time, in arrival order: a later change is never overwritten by an earlier read.
          onName: (name) => {
            reloads = reloads.then(() => names.reload(name)).catch((e: unknown) => log.warn({ name, err: e }, 'name reload failed'));
          },
          onInstance: (hostname, event) => instancesRef?.onHolderRequest(hostname, event),
          onResync: () => {
            reloads = reloads.then(() => names.reloadAll()).catch((e: unknown) => log.warn({ err: e }, 'names reload failed'));
          },
          log: (msg, fields) => log.warn(fields ?? {}, msg),
        })
      : null;
  // The gate is built before the instances so that they can tell it about starts and stops.
  let gate: ReturnType<typeof createGate> | null = null;
  const users = new UserService(store, config.plans, clock, config.authLimits);
  // Built after the instances (they need each other): read at each start, by then set.
  let configVars: ConfigVarService | null = null;
  let attachments: AttachmentService | null = null;
  const instances = new InstanceService({
    store,
    images,
    driver,
    table,
    names,
    users,
    clock,
    domain: config.domain,
    pharoVm: config.pharoVm,
    wakeTimeoutMs: config.wakeTimeoutMs,
    logDir: join(dataDir, 'logs'),
    maxLogBytes: config.maxLogBytes,
    ...(opts.appEnv ? { appEnv: opts.appEnv } : {}),
    log: (msg, fields) => log.info(fields ?? {}, msg),
    launchSetup: async (hostname) => ({
      env: configVars ? await configVars.envOf(hostname) : {},
      tunnels: attachments ? await attachments.tunnelsOf(hostname) : [],
    }),
    onRemoved: (hostname) => attachments?.instanceRemoved(hostname),
    ...(leases ? { leases } : {}),
    ...(feed ? { tellHolder: (hostname: string, event: 'stop' | 'wake' | 'up' | 'down') => feed.publishInstance(hostname, event) } : {}),
    onRunningChange: (hostname, running) => {
      feed?.publishInstance(hostname, running ? 'up' : 'down');
      if (!gate) return;
      if (!running) gate.forgetInstance(hostname);
      gate.setRunningInstances(instances.listRunning().length);
    },
    // A frozen instance keeps its pooled connections (they work again after the thaw); it only leaves the running count.
    onFrozenChange: (hostname, frozen) => {
      // Other replicas' gates stop forwarding to a frozen instance (its sockets would queue): they ask for a thaw instead.
      if (frozen) feed?.publishInstance(hostname, 'down');
      gate?.setRunningInstances(instances.listRunning().length);
    },
    warmMemoryBytes: config.warmMemoryBytes,
  });
  instancesRef = instances;
  await instances.load();
  leases?.start();
  // Listening before the names are loaded: a change made meanwhile is heard (and reloaded) rather than missed.
  await feed?.start();
  if (feed) names.onChange((name) => feed.publishName(name));
  const backend = new CloudGateBackend(instances, store, names, config.domain);
  const routes = new RouteService({
    store,
    table,
    backend,
    instances,
    names,
    reservedDomain: config.domain,
    clock,
    ...(opts.healthTimeoutMs !== undefined ? { healthTimeoutMs: opts.healthTimeoutMs } : {}),
  });
  await routes.load();
  const certs = new CertService({
    store,
    holders: storeHolders(store),
    reservedDomain: config.domain,
    clock,
    claim: (userId, domain) => names.checkClaim(userId, domain, 'certificate domain'),
  });
  await certs.load();
  const acme = config.acme
    ? new AcmeService({
        store,
        holders: storeHolders(store),
        certs,
        box: secretBox,
        settings: {
          directoryUrl: config.acme.directoryUrl,
          email: config.acme.email,
          ca: config.acme.caFile ? await readFile(config.acme.caFile, 'utf8') : null,
          byDefault: config.acme.byDefault,
          ordersPerHour: config.acme.ordersPerHour,
        },
        mappedDomains: async () => [
          ...(await store.listRoutes()).map((r) => ({ domain: r.domain, userId: r.userId })),
          ...(await store.listInstances()).flatMap((i) => (i.alias ? [{ domain: i.alias, userId: i.userId }] : [])),
        ],
        clock,
        log: (msg, fields) => log.info(fields ?? {}, msg),
        ...opts.acme,
      })
    : null;
  const appliances = new ApplianceService({
    store,
    dataDir: join(dataDir, 'appliances'),
    publicHost: config.publicHost,
    publicBind: config.publicBind,
    clock,
    log,
    attachedIdentities: (userId, name) => attachments?.identities(userId, name),
    onRemoved: async (userId, name) => attachments?.applianceRemoved(userId, name),
  });
  configVars = new ConfigVarService({ store, box: secretBox, instances, users, clock });
  attachments = new AttachmentService({
    store,
    box: secretBox,
    instances,
    appliances,
    configVars,
    users,
    clock,
    ...attachmentNetwork(driver, config.publicBind),
  });
  await attachments.load();
  await appliances.load();
  // Tunnels inside instances (their stunnel.conf) reach the appliances' TLS-PSK endpoints, and no other host port.
  const openAppliancePorts = async (): Promise<void> => {
    if (driver instanceof ProcessDriver) await driver.allowHostPorts((await store.listAppliances()).map((a) => a.publicPort).filter((p) => p > 0));
  };
  await openAppliancePorts();
  await backend.syncStatic();

  const tls = config.gateTls ? { defaultCert: await selfSignedCert(config.domain), sni: (name: string) => certs.sni(name) } : undefined;
  // Redirects name the port the HTTPS listener got (port 0 picks one at listen time).
  gate = createGate({
    table,
    backend,
    logger: config.accessLog ? log.child({ part: 'gate' }) : null,
    ...(tls ? { tls } : {}),
    ...(acme ? { acmeChallenge: acme.challenges } : {}),
    ...(opts.upstreamIdleMs !== undefined ? { upstreamIdleMs: opts.upstreamIdleMs } : {}),
  });
  const gateAddr = await gate.listen(config.gate.host, config.gate.port);
  const gateTlsAddr = config.gateTls ? await gate.listenTls(config.gateTls.host, config.gateTls.port) : null;
  // Renewals that fell due while the cloud was down start now; the gate already answers the challenges.
  acme?.start();
  const firstTier = config.warmIdleTimeoutMs > 0 ? Math.min(config.warmIdleTimeoutMs, config.idleTimeoutMs) : config.idleTimeoutMs;
  const reaper = startIdleReaper({
    intervalMs: opts.reapIntervalMs ?? Math.min(30_000, Math.max(250, Math.floor(firstTier / 10))),
    idleTimeoutMs: config.idleTimeoutMs,
    warmIdleTimeoutMs: config.warmIdleTimeoutMs,
    listRunning: () => instances.listLive(),
    activeCount: (h) => gate.activeCount(h),
    stop: (h) => instances.stop(h),
    freeze: (h) => instances.freeze(h),
    onFreeze: (h) => log.info({ hostname: h }, 'idle: frozen'),
    onReap: (h) => {
      gate?.countIdleReap();
      log.info({ hostname: h }, 'idle: stopped');
    },
  });

  const reserve = new SpaceReserve(join(dataDir, 'space-reserve'));
  await reserve.ensure();
  const ci = new CiService({ store, instances, clock, ...(opts.ciReapIntervalMs ? { reapIntervalMs: opts.ciReapIntervalMs } : {}), log: (msg, fields) => log.info(fields ?? {}, msg) });
  ci.start();

  const api = await buildApi(
    {
      users,
      instances,
      routes,
      maxArchiveBytes: config.maxArchiveBytes,
      gatePort: gateAddr.port,
      domain: config.domain,
      metrics: () => gate!.metrics() + escapedErrorMetrics() + followerMetrics(),
      // A host's series go to the tenant holding the host now (the names registry), every host's to the operator.
      hostMetrics: (userId) => gate!.hostMetrics(userId === null ? () => true : (h) => h !== '' && names.holderOf(h)?.userId === userId),
      metricsToken: config.metricsToken,
    },
    log,
    [
      (app) => {
        applianceRoutes(app, { appliances, authenticate: (req) => authenticate(users, req) });
        // Static sites are routed by the gate: refresh its view after any appliance change.
        // Not after a file or WebDAV request (a WebDAV client sends hundreds): files change neither routes nor ports.
        const filesOnly = /^\/v1\/appliances\/[^/?]+\/(dav|files)(\/|\?|$)/;
        app.addHook('onResponse', async (req) => {
          if (req.method !== 'GET' && req.url.startsWith('/v1/appliances') && !filesOnly.test(req.url)) {
            await backend.syncStatic();
            await openAppliancePorts();
          }
        });
      },
      (app) => configRoutes(app, { configVars: configVars!, authenticate: (req) => authenticate(users, req) }),
      (app) => attachmentRoutes(app, { attachments: attachments!, configVars: configVars!, authenticate: (req) => authenticate(users, req) }),
      (app) => ciRoutes(app, { ci, maxArchiveBytes: config.maxArchiveBytes, gatePort: gateAddr.port, authenticate: (req) => authenticate(users, req) }),
      (app) => nameRoutes(app, { names, authenticate: (req) => authenticate(users, req) }),
      // The web console at / and its sign-in (session cookie + CSRF token) at /v1/session.
      (app) => {
        sessionRoutes(app, { users });
        consoleRoutes(app);
      },
      (app) => {
        // A full disk must not stop the API from freeing space: a delete may use the reserve.
        app.addHook('onRequest', async (req) => {
          if (req.method === 'DELETE') await reserve.releaseIfLow();
        });
        app.addHook('onResponse', async (req) => {
          if (req.method === 'DELETE') await reserve.ensure();
        });
      },
      (app) => {
        gateCertRoutes(app, { certs, acme, authenticate: (req) => authenticate(users, req) });
        // A certificate is served only while its owner holds the domain: re-check after routes or aliases change hands.
        app.addHook('onResponse', async (req) => {
          if (req.method !== 'GET' && /^\/(v1\/gate\/(routes|promote)|v1\/instances|api\/)/.test(req.url)) {
            await certs.refresh().catch(() => {});
            // --acme-default: a newly mapped domain is ordered now, not at the next check (the order runs in the background).
            if (acme?.settings.byDefault) void acme.checkNow().catch(() => {});
          }
        });
      },
    ],
  );
  await api.listen({ host: config.api.host, port: config.api.port });
  const apiAddr = api.server.address() as AddressInfo;
  const hostOf = (a: AddressInfo) => (a.family === 'IPv6' ? `[${a.address}]` : a.address);
  const apiUrl = `http://${hostOf(apiAddr)}:${apiAddr.port}`;
  const gateUrl = `http://${hostOf(gateAddr)}:${gateAddr.port}`;
  const gateTlsUrl = gateTlsAddr ? `https://${hostOf(gateTlsAddr)}:${gateTlsAddr.port}` : null;
  if (opts.announce !== false) log.info({ api: apiUrl, gate: gateUrl, domain: config.domain, store: store.backend, isolation: driver.isolation }, 'ephemeric is up');

  let closed = false;
  return {
    config,
    apiUrl,
    gateUrl,
    apiPort: apiAddr.port,
    gatePort: gateAddr.port,
    store,
    users,
    instances,
    routes,
    certs,
    acme,
    appliances,
    ci,
    configVars,
    attachments,
    table,
    names,
    get apiRoutes() {
      return apiRoutesOf(api);
    },
    gateTlsUrl,
    driver,
    log,
    leases,
    feed,
    async crash() {
      if (closed) return;
      closed = true;
      leases?.abandon();
      reaper.stop();
      await feed?.close();
      await ci.close();
      await api.close();
      await gate!.close();
      // The processes end as a dead server's would (killed with it); its leases stay until they expire.
      await driver.close();
      await appliances.close();
      await store.close();
    },
    async close() {
      if (closed) return;
      closed = true;
      await feed?.close();
      acme?.close();
      reaper.stop();
      await ci.close();
      await api.close();
      await gate!.close();
      await instances.close();
      await appliances.close();
      await store.close();
    },
  };
}

/**
 * How attachments' tunnels reach the appliances from this driver's
 * instances, or why they cannot: inside a network namespace the host is
 * reached on its veth address, which an endpoint bound to loopback only
 * does not listen on.
 */
function attachmentNetwork(driver: Driver, publicBind: string): { loopback: 'namespace' | 'shared'; unavailable: string | null } {
  if (!(driver instanceof ProcessDriver)) return { loopback: 'shared', unavailable: `the ${driver.name} runtime does not open tunnels for attachments (use a stunnel.conf in the archive)` };
  if (driver.mode !== 'netns') return { loopback: 'shared', unavailable: null };
  const loopbackOnly = /^(127\.|::1$|\[::1\]$|localhost$)/.test(publicBind);
  return {
    loopback: 'namespace',
    unavailable: loopbackOnly
      ? `the appliances' TLS-PSK endpoints listen on ${publicBind} only, which instances in their network namespaces cannot reach: start the cloud with EPH_PUBLIC_BIND=0.0.0.0`
      : null,
  };
}
