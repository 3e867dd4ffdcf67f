import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type Docker from 'dockerode';
import { EphError } from '../../core/errors.ts';
import type { HostPort } from '../../core/config.ts';
import type { Driver, ExitInfo, LaunchSpec } from '../driver.ts';
import { InstanceTable } from '../instance-lifecycle.ts';
import type { InstanceState } from '../instance-lifecycle.ts';
import { buildCommand } from '../process/command.ts';
import { findFirstExecutable, realpathOr } from '../process/executables.ts';
import { BoundedLog } from '../process/log-file.ts';
import { namesFor, namespacePattern } from '../process/netns.ts';
import { unreachableBySandbox } from '../process/sandbox.ts';
import { STUNNEL_NAMES, instanceStunnelConfig, withStunnel } from '../process/stunnel.ts';
import { DEFAULT_BASE_IMAGE, ensureBaseImage, ensureNetwork, hostLayout } from './base-image.ts';
import type { HostLayout } from './base-image.ts';
import { DEFAULT_DOCKER_SOCKET, apiMessage, apiStatus, dockerClient, isGone } from './docker-api.ts';
import { copyContainerLog, followContainerLog } from './log-stream.ts';
import { APP_PORT, OWNER_LABEL, execSimpleCommand, serviceSpec, tmpVolumeName } from './service-spec.ts';

/** Options of {@link SwarmDriver}. */
export interface SwarmDriverOptions {
  /** Directory for per-instance state (DATA/run): stunnel config copies. */
  stateDir: string;
  /** Docker Engine API socket (default /var/run/docker.sock). */
  socketPath?: string;
  /** Base image, built locally when absent (default eph-runtime:1). */
  image?: string;
  /** Swarm-scoped bridge network the instances join, created when absent (default eph-runtime). */
  network?: string;
  /**
   * Prefix of service names (default `eph`, giving `eph-1a2b3c4d`); 1..6
   * characters [a-z0-9]. recover() only removes services with this prefix's label.
   */
  prefix?: string;
  /** Time between SIGTERM and SIGKILL on stop (default 3000 ms). */
  stopGraceMs?: number;
  /** Memory limit per instance (default 512 MiB). */
  memoryBytes?: number;
  /** CPU limit per instance, in CPUs (default 1). */
  cpus?: number;
  /** Process limit per instance (default 512). */
  pids?: number;
  /** Size of each instance's private /tmp (default 64 MiB). */
  tmpfsBytes?: number;
  /** How long a task may take to be scheduled and started (default 60 s). */
  startTimeoutMs?: number;
}

/** Where the container sees the instance's copy of stunnel.conf. */
const CONTAINER_STUNNEL_CONF = '/run/eph/stunnel.conf';
/** How often task states are read while a start is pending. */
const TASK_POLL_MS = 50;
/** How long the rest of a stopped container's output may take to arrive. */
const LOG_DRAIN_MS = 2000;
/** How long after SIGKILL the container's exit must be reported before it is removed by force. */
const KILL_REPORT_MS = 5000;
/** How long removing a container may take before clean-up gives up on it. */
const REMOVE_TIMEOUT_MS = 15_000;

const TERMINAL = new Set(['complete', 'failed', 'shutdown', 'rejected', 'orphaned', 'remove']);

/** The fields of an Engine API task that the driver reads. */
interface SwarmTask {
  ID: string;
  CreatedAt?: string;
  Status?: {
    State?: string;
    Err?: string;
    Message?: string;
    ContainerStatus?: { ContainerID?: string; ExitCode?: number };
  };
}

interface Instance extends InstanceState {
  service: string;
  serviceId: string | null;
  containerId: string | null;
  logDone: Promise<void>;
  removing: boolean;
  killTimer: NodeJS.Timeout | null;
}

/** What prepare() found and made: the host layout mirrored by the base image and this swarm node. */
export interface PreparedDaemon {
  layout: HostLayout;
  nodeId: string;
}

/**
 * Runs each instance as a one-replica Docker Swarm service.
 *
 * Every task runs from a skeleton base image (built locally at start when
 * absent; there is no registry) with the host's system directories, the
 * image directory and the Pharo VM's directory bound read-only, a read-only
 * root file system, a private tmpfs /tmp, uid/gid 65534, no capabilities,
 * memory/CPU/pids limits, docker-init as PID 1, and Docker's restart policy
 * off (restarting is the instance service's decision).
 *
 * Networking: every app listens on 8080 at its own container address on a
 * swarm-scoped bridge network, and the gate connects to that address, as it
 * does to namespaces under the process driver. Published ports were rejected:
 * Swarm publishes on all of the node's addresses (no host IP), so apps would
 * be reachable from outside past the gate; ingress publishing also needs the
 * iptables rules that `dockerd --iptables=false` does not make. The same
 * missing rules mean containers on the bridge can reach each other; the
 * bridge address is only reachable from the node it runs on, so tasks are
 * placed on this node (the manager the driver talks to); other nodes would
 * need an overlay network and a router on each node.
 *
 * Output goes to the instance log through the Engine's log stream of the
 * container; the exit is the container's wait result (code 128+N for a
 * signal). stop() removes the service (Docker sends SIGTERM, then SIGKILL
 * after the grace period) and its container; recover() removes services and
 * containers with this driver's prefix label that a previous run left behind.
 *
 * No warm sleep: the driver has no freeze()/thaw() (not implemented: the
 * Engine's container pause could do it, but nothing here reads a paused
 * task's memory for the warm-memory budget), so an idle instance runs until
 * the idle timeout stops it.
 *
 * @example
 * const driver = new SwarmDriver({ stateDir: join(dataDir, 'run') });
 * await driver.recover(); // also builds the base image and network when absent
 * const upstream = await driver.start(spec); // { host: '172.19.0.3', port: 8080 }
 * await waitReady(upstream, 60_000);
 */
export class SwarmDriver implements Driver {
  readonly name = 'swarm';
  readonly isolation: string;
  readonly #docker: Docker;
  readonly #socketPath: string;
  readonly #stateDir: string;
  readonly #prefix: string;
  readonly #image: string;
  readonly #network: string;
  readonly #graceMs: number;
  readonly #limits: { memoryBytes: number; nanoCpus: number; pids: number; tmpfsBytes: number };
  readonly #startTimeoutMs: number;
  readonly #instances = new InstanceTable<Instance>();
  #prepared: Promise<PreparedDaemon> | null = null;

  constructor(opts: SwarmDriverOptions) {
    this.#stateDir = opts.stateDir;
    this.#prefix = opts.prefix ?? 'eph';
    if (!/^[a-z0-9]{1,6}$/.test(this.#prefix)) {
      throw new EphError('INVALID_CONFIG', `prefix: expected 1..6 characters [a-z0-9], got '${this.#prefix}'`);
    }
    this.#socketPath = opts.socketPath ?? DEFAULT_DOCKER_SOCKET;
    this.#docker = dockerClient(this.#socketPath);
    this.#image = opts.image ?? DEFAULT_BASE_IMAGE;
    this.#network = opts.network ?? 'eph-runtime';
    this.#graceMs = opts.stopGraceMs ?? 3000;
    const cpus = opts.cpus ?? 1;
    this.#limits = {
      memoryBytes: opts.memoryBytes ?? 512 * 1024 ** 2,
      nanoCpus: Math.round(cpus * 1e9),
      pids: opts.pids ?? 512,
      tmpfsBytes: opts.tmpfsBytes ?? 64 * 1024 ** 2,
    };
    this.#startTimeoutMs = opts.startTimeoutMs ?? 60_000;
    this.isolation =
      `Docker Swarm service per instance on bridge network ${this.#network} (image ${this.#image}), apps on port ${APP_PORT} ` +
      `as uid 65534 with a read-only root, ${Math.round(this.#limits.memoryBytes / 1024 ** 2)} MiB, ${cpus} CPU; ` +
      'containers share the bridge (dockerd --iptables=false: no filtering between them)';
  }

  /**
   * Checks the daemon, then builds the base image and creates the network
   * when absent. Called by recover() and by the first start(); a failure is
   * not remembered, so a later call tries again.
   *
   * @throws EphError DEPENDENCY_MISSING when the daemon cannot be reached or is not a swarm manager.
   */
  prepare(): Promise<PreparedDaemon> {
    this.#prepared ??= this.#prepare().catch((e: unknown) => {
      this.#prepared = null;
      throw e;
    });
    return this.#prepared;
  }

  start(spec: LaunchSpec): Promise<HostPort> {
    return this.#instances.start(spec.hostname, {
      create: (state) => ({
        ...state,
        service: namesFor(spec.hostname, this.#prefix).ns,
        serviceId: null,
        containerId: null,
        logDone: Promise.resolve(),
        removing: false,
        killTimer: null,
      }),
      launch: (inst) => this.#launch(inst, spec),
      releaseFailed: async (inst) => {
        await inst.log?.close().catch(() => undefined);
        await this.#release(inst);
      },
    });
  }

  async stop(hostname: string): Promise<void> {
    const stopping = await this.#instances.requestStop(hostname);
    if (!stopping) return;
    const { inst, first } = stopping;
    // Signalled directly rather than by removing the service: Swarm waits a
    // fixed 2 s ("gossip converge") before it stops a task on a network other
    // than the default bridge. The container's wait result ends the instance,
    // and the service goes with it.
    if (first && !inst.ended) {
      this.#signal(inst, 'SIGTERM');
      inst.killTimer = setTimeout(() => {
        this.#signal(inst, 'SIGKILL');
        // Should the daemon not report the exit, removing the container ends the wait.
        inst.killTimer = setTimeout(() => void this.#removeContainer(inst.containerId!), KILL_REPORT_MS);
      }, this.#graceMs);
    }
    await inst.exited;
  }

  isRunning(hostname: string): boolean {
    return this.#instances.isRunning(hostname);
  }

  onExit(listener: (hostname: string, info: ExitInfo) => void): void {
    this.#instances.onExit(listener);
  }

  /**
   * Prepares the daemon (see prepare()), then removes services, containers
   * and /tmp volumes labelled with this driver's prefix that no live
   * instance owns (left by a crashed server), and their state directories.
   */
  async recover(): Promise<void> {
    await this.prepare();
    await mkdir(this.#stateDir, { recursive: true });
    const live = new Set([...this.#instances.values()].map((i) => i.service));
    const label = `${OWNER_LABEL}=${this.#prefix}`;
    const services = await this.#docker.listServices({ filters: { label: [label] } });
    for (const s of services) {
      const name = s.Spec?.Name ?? '';
      if (live.has(name)) continue;
      await this.#docker.getService(s.ID).remove().catch((e: unknown) => {
        if (!isGone(e)) throw new EphError('UNAVAILABLE', `Docker: cannot remove service ${name}: ${apiMessage(e)}`, { cause: e });
      });
    }
    // Containers outlive their service for a moment (and for good when the
    // daemon crashed meanwhile): remove them until none is left.
    const deadline = Date.now() + REMOVE_TIMEOUT_MS;
    for (;;) {
      const containers = await this.#docker.listContainers({ all: true, filters: { label: [label] } });
      const stale = containers.filter((c) => !live.has(c.Labels['com.docker.swarm.service.name'] ?? ''));
      if (stale.length === 0 || Date.now() > deadline) break;
      await Promise.all(stale.map((c) => this.#docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
    }
    const volumes = (await this.#docker.listVolumes({ filters: { label: [label] } })).Volumes ?? [];
    const liveVolumes = new Set([...live].map(tmpVolumeName));
    for (const v of volumes) if (!liveVolumes.has(v.Name)) await this.#removeVolume(v.Name);
    const pattern = namespacePattern(this.#prefix);
    for (const entry of await readdir(this.#stateDir)) {
      if (pattern.test(entry) && !live.has(entry)) await rm(join(this.#stateDir, entry), { recursive: true, force: true });
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.#instances.hostnames().map((h) => this.stop(h)));
  }

  async #prepare(): Promise<PreparedDaemon> {
    let info: { Swarm?: { LocalNodeState?: string; ControlAvailable?: boolean; NodeID?: string } };
    try {
      info = (await this.#docker.info()) as typeof info;
    } catch (e) {
      throw new EphError(
        'DEPENDENCY_MISSING',
        `Docker daemon not reachable at ${this.#socketPath} (${apiMessage(e)}): start it with dockerd --iptables=false`,
        { cause: e },
      );
    }
    if (info.Swarm?.LocalNodeState !== 'active' || !info.Swarm.NodeID) {
      throw new EphError('DEPENDENCY_MISSING', 'Docker is not in swarm mode: run docker swarm init --advertise-addr 127.0.0.1');
    }
    if (!info.Swarm.ControlAvailable) {
      throw new EphError('DEPENDENCY_MISSING', 'this Docker node is a swarm worker: run the swarm driver against a manager');
    }
    const layout = hostLayout();
    await ensureBaseImage(this.#docker, this.#image, layout);
    await ensureNetwork(this.#docker, this.#network, { [OWNER_LABEL]: this.#prefix });
    return { layout, nodeId: info.Swarm.NodeID };
  }

  async #launch(inst: Instance, spec: LaunchSpec): Promise<HostPort> {
    const cmd = buildCommand(spec, process.env.PATH ?? '');
    for (const dir of [spec.imageDir, cmd.cwd, ...cmd.needs]) {
      const blocked = unreachableBySandbox(dir);
      if (blocked) {
        throw new EphError('START_FAILED', `${blocked} is not readable by the app user (uid 65534): make ${dir} and its parents world-readable`);
      }
    }
    const prepared = await this.prepare();
    const instDir = join(this.#stateDir, inst.service);
    await rm(instDir, { recursive: true, force: true });
    await mkdir(instDir, { recursive: true });

    let argv = execSimpleCommand(cmd.argv);
    const files: Record<string, string> = {};
    if (cmd.stunnelConf) {
      const stunnel = findFirstExecutable(STUNNEL_NAMES);
      if (!stunnel) throw new EphError('DEPENDENCY_MISSING', 'stunnel.conf sits beside the app but stunnel is not installed (Debian: stunnel4)');
      const copy = join(instDir, 'stunnel.conf');
      await writeFile(copy, instanceStunnelConfig(await readFile(cmd.stunnelConf, 'utf8')), { mode: 0o644 });
      files[copy] = CONTAINER_STUNNEL_CONF;
      argv = withStunnel(argv, stunnel, CONTAINER_STUNNEL_CONF);
      cmd.needs.push(dirname(stunnel), dirname(realpathOr(stunnel)));
    }
    const nodeDir = dirname(realpathOr(process.execPath));
    const nodeVisible = unreachableBySandbox(nodeDir) === null;
    const env: Record<string, string> = {
      PATH: [...new Set([...(nodeVisible ? [nodeDir] : []), '/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin'])].join(':'),
      LANG: 'C.UTF-8',
      HOME: '/tmp',
      ...spec.env,
    };
    const readOnly = [...prepared.layout.binds, spec.imageDir, cmd.cwd, ...cmd.needs, ...(nodeVisible ? [nodeDir] : [])];

    inst.log = await BoundedLog.open(spec.logFile, spec.maxLogBytes);
    inst.log.note(`starting service ${inst.service} on network ${this.#network}: ${cmd.argv.join(' ')}`);
    const created = await this.#docker
      .createService(
        serviceSpec({
          name: inst.service,
          owner: this.#prefix,
          hostname: spec.hostname,
          image: this.#image,
          network: this.#network,
          nodeId: prepared.nodeId,
          argv,
          cwd: cmd.cwd,
          env,
          readOnly,
          files,
          ...this.#limits,
          stopGraceMs: this.#graceMs,
        }),
      )
      .catch(async (e: unknown) => {
        // A service of the same name: left by a crashed run that recover() did not see.
        if (apiStatus(e) === 409) {
          await this.#docker.getService(inst.service).remove().catch(() => undefined);
        }
        throw new EphError('START_FAILED', `Docker: cannot create service ${inst.service}: ${apiMessage(e)}`, { cause: e });
      });
    inst.serviceId = created.id;
    if (inst.requested) throw new EphError('START_FAILED', 'stopped while starting');

    const task = await this.#untilContainer(inst);
    inst.containerId = task.Status!.ContainerStatus!.ContainerID!;
    const state = task.Status?.State ?? '';
    // An app that is gone before it could be watched (Swarm reports states
    // some 50-500 ms late) is a failed start, not an exit: it has no address
    // to hand out. Its output still goes to the log.
    if (state !== 'running') {
      await copyContainerLog(this.#docker, inst.containerId, inst.log);
      const code = task.Status?.ContainerStatus?.ExitCode;
      throw new EphError('START_FAILED', `the app exited at once${code === undefined ? '' : ` with code ${code}`} (${task.Status?.Err ?? state})`);
    }
    const container = this.#docker.getContainer(inst.containerId);
    const details = await container.inspect();
    if (!details.State.Running) {
      await copyContainerLog(this.#docker, inst.containerId, inst.log);
      throw new EphError('START_FAILED', `the app exited at once with code ${details.State.ExitCode}${details.State.OOMKilled ? ' (out of memory)' : ''}`);
    }
    const address = details.NetworkSettings.Networks[this.#network]?.IPAddress;
    if (!address) throw new EphError('START_FAILED', `the container has no address on network ${this.#network}`);

    const log = inst.log;
    inst.logDone = followContainerLog(this.#docker, inst.containerId, log);
    container.wait().then(
      (r: { StatusCode?: number }) => this.#finish(inst, typeof r.StatusCode === 'number' ? r.StatusCode : null),
      (e: unknown) => {
        log.note(`lost track of the container: ${apiMessage(e)}`);
        return this.#finish(inst, null);
      },
    );
    return { host: address, port: APP_PORT };
  }

  /**
   * Polls the service's task until it has a container that runs (or ran and
   * ended at once). A task that fails before it has a container (no such
   * image, a bind source missing on the node) is a failed start.
   */
  async #untilContainer(inst: Instance): Promise<SwarmTask> {
    const deadline = Date.now() + this.#startTimeoutMs;
    for (;;) {
      const tasks = (await this.#docker.listTasks({ filters: { service: [inst.serviceId!] } })) as SwarmTask[];
      const task = tasks.sort((a, b) => (a.CreatedAt ?? '').localeCompare(b.CreatedAt ?? '')).at(-1);
      const state = task?.Status?.State ?? '';
      const hasContainer = Boolean(task?.Status?.ContainerStatus?.ContainerID);
      if (task && hasContainer && (state === 'running' || TERMINAL.has(state))) return task;
      if (task && TERMINAL.has(state)) throw new EphError('START_FAILED', `task ${state}: ${task.Status?.Err ?? task.Status?.Message ?? 'no reason given'}`);
      if (inst.requested) throw new EphError('START_FAILED', 'stopped while starting');
      if (Date.now() > deadline) {
        const why = task ? `${state}${task.Status?.Err ? `: ${task.Status.Err}` : ''}` : 'not scheduled';
        throw new EphError('START_FAILED', `the task did not start within ${this.#startTimeoutMs} ms (${why})`);
      }
      await new Promise((r) => setTimeout(r, TASK_POLL_MS));
    }
  }

  /** Sends `signal` to the container's init, which passes it to the app's process group. */
  #signal(inst: Instance, signal: 'SIGTERM' | 'SIGKILL'): void {
    if (!inst.containerId || inst.ended) return;
    this.#docker
      .getContainer(inst.containerId)
      .kill({ signal })
      .catch(() => undefined); // exited meanwhile
  }

  async #finish(inst: Instance, code: number | null): Promise<void> {
    inst.ended = true;
    if (inst.killTimer) clearTimeout(inst.killTimer);
    // The log stream ends when the container has stopped; wait for its last lines.
    await Promise.race([inst.logDone, new Promise((r) => setTimeout(r, LOG_DRAIN_MS).unref())]);
    inst.log?.note(`exited with code ${code}${inst.requested ? ' (stop requested)' : ''}`);
    await inst.log?.close().catch(() => undefined);
    await this.#release(inst);
    this.#instances.reportExit(inst, { code, signal: null });
  }

  /** Removes the service, its container and state directory; never throws. */
  async #release(inst: Instance): Promise<void> {
    await this.#removeService(inst);
    const ids = new Set<string>(inst.containerId ? [inst.containerId] : []);
    if (inst.serviceId) {
      const left = await this.#docker
        .listContainers({ all: true, filters: { label: [`com.docker.swarm.service.id=${inst.serviceId}`] } })
        .catch(() => []);
      for (const c of left) ids.add(c.Id);
    }
    await Promise.all([...ids].map((id) => this.#removeContainer(id)));
    await this.#removeVolume(tmpVolumeName(inst.service));
    await rm(join(this.#stateDir, inst.service), { recursive: true, force: true }).catch(() => undefined);
  }

  async #removeService(inst: Instance): Promise<void> {
    if (inst.removing || !inst.serviceId) return;
    inst.removing = true;
    await this.#docker
      .getService(inst.serviceId)
      .remove()
      .catch(() => undefined);
  }

  /** Removes a volume, retrying while a container that is going away still uses it; never throws. */
  async #removeVolume(name: string): Promise<void> {
    const deadline = Date.now() + REMOVE_TIMEOUT_MS;
    while (Date.now() < deadline) {
      try {
        await this.#docker.getVolume(name).remove();
        return;
      } catch (e) {
        if (isGone(e) || apiStatus(e) !== 409) return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Force-removes a container and waits until the Engine no longer knows it. */
  async #removeContainer(id: string): Promise<void> {
    const container = this.#docker.getContainer(id);
    const deadline = Date.now() + REMOVE_TIMEOUT_MS;
    while (Date.now() < deadline) {
      try {
        await container.remove({ force: true });
      } catch (e) {
        if (isGone(e)) return;
        // 409 "removal already in progress" (Swarm removes it too): look again shortly.
      }
      try {
        await container.inspect();
      } catch (e) {
        if (isGone(e)) return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
