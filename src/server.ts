import { mkdir } from 'node:fs/promises';
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
import { buildApi } from './api/app.ts';
import { EphError } from './core/errors.ts';

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
  table: RoutingTable;
  driver: Driver;
  log: Logger;
  close(): Promise<void>;
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
}

/**
 * The composition root: the only place that builds parts and hands each its
 * dependencies. Start-up repairs what a crash left behind before it listens.
 */
export async function startCloud(config: Config, opts: CloudOptions = {}): Promise<Cloud> {
  const clock = opts.clock ?? systemClock;
  const log = opts.logger ?? pino({ level: config.logLevel });
  const dataDir = resolve(config.dataDir);
  for (const d of ['images', 'tmp', 'logs', 'run']) await mkdir(join(dataDir, d), { recursive: true });
  if (config.runtime === 'swarm') {
    throw new EphError('DEPENDENCY_MISSING', '--runtime swarm: the swarm driver is not available in this build; use --runtime process');
  }

  const store = await openStore(config.store, dataDir);
  const images = new ImageStore({
    root: join(dataDir, 'images'),
    tmpDir: join(dataDir, 'tmp'),
    limits: { maxArchiveBytes: config.maxArchiveBytes, maxUnpackedBytes: config.maxUnpackedBytes, maxEntries: config.maxEntries },
  });
  await images.recover();
  const driver = opts.driver ?? new ProcessDriver({ ...opts.driverOptions, stateDir: join(dataDir, 'run') });
  const table = new RoutingTable();
  const users = new UserService(store, config.plans, clock);
  const instances = new InstanceService({
    store,
    images,
    driver,
    table,
    users,
    clock,
    domain: config.domain,
    pharoVm: config.pharoVm,
    wakeTimeoutMs: config.wakeTimeoutMs,
    logDir: join(dataDir, 'logs'),
    maxLogBytes: config.maxLogBytes,
    ...(opts.appEnv ? { appEnv: opts.appEnv } : {}),
    log: (msg, fields) => log.info(fields ?? {}, msg),
  });
  await instances.load();
  const routes = new RouteService({ store, table, backend: instances, instances, reservedDomain: config.domain, clock });
  await routes.load();

  const gate = createGate({ table, backend: instances, logger: null });
  const gateAddr = await gate.listen(config.gate.host, config.gate.port);
  const reaper = startIdleReaper({
    intervalMs: opts.reapIntervalMs ?? Math.min(30_000, Math.max(250, Math.floor(config.idleTimeoutMs / 10))),
    idleTimeoutMs: config.idleTimeoutMs,
    listRunning: () => instances.listRunning(),
    activeCount: (h) => gate.activeCount(h),
    stop: (h) => instances.stop(h),
    onReap: (h) => log.info({ hostname: h }, 'idle: stopped'),
  });

  const api = await buildApi({ users, instances, routes, maxArchiveBytes: config.maxArchiveBytes, gatePort: gateAddr.port, domain: config.domain }, log);
  await api.listen({ host: config.api.host, port: config.api.port });
  const apiAddr = api.server.address() as AddressInfo;
  const hostOf = (a: AddressInfo) => (a.family === 'IPv6' ? `[${a.address}]` : a.address);
  const apiUrl = `http://${hostOf(apiAddr)}:${apiAddr.port}`;
  const gateUrl = `http://${hostOf(gateAddr)}:${gateAddr.port}`;
  log.info({ api: apiUrl, gate: gateUrl, domain: config.domain, store: store.backend, isolation: driver.isolation }, 'ephemeric is up');

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
    table,
    driver,
    log,
    async close() {
      if (closed) return;
      closed = true;
      reaper.stop();
      await api.close();
      await gate.close();
      await instances.close();
      await store.close();
    },
  };
}
