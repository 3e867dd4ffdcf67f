import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { EphError } from '../../core/errors.ts';
import type { HostPort } from '../../core/config.ts';
import type { Driver, ExitInfo, LaunchSpec } from '../driver.ts';
import { InstanceTable, errorText } from '../instance-lifecycle.ts';
import type { InstanceState } from '../instance-lifecycle.ts';
import { AddressPool } from './address-pool.ts';
import type { AddressBlock } from './address-pool.ts';
import { buildCommand } from './command.ts';
import { findExecutable, findFirstExecutable, realpathOr } from './executables.ts';
import { Firewall, detectFirewallTools } from './firewall.ts';
import type { Egress } from './firewall.ts';
import { freeLoopbackPort } from './free-port.ts';
import { BoundedLog } from './log-file.ts';
import {
  aliasNamespace,
  createNamespace,
  deleteAlias,
  deleteNamespace,
  hostAddresses,
  killNamespacePids,
  listNamespaces,
  listVeths,
  namesFor,
  namespacePattern,
  vethPattern,
} from './netns.ts';
import type { NamespaceNames } from './netns.ts';
import { groupMembers, procStat, signalEach, signalGroup, termTargets, untilGone } from './process-group.ts';
import { bwrapFeatures, sandboxArgv, unreachableBySandbox } from './sandbox.ts';
import type { SandboxSpec } from './sandbox.ts';
import { Cgroups, describeCgroups, detectCgroups, joinScript } from './cgroups.ts';
import type { InstanceCgroup } from './cgroups.ts';
import { seccompProgram, seccompSupported } from './seccomp.ts';
import { formatBytes } from '../../core/plan-limits.ts';
import type { PlanLimits } from '../../core/types.ts';
import { SpareNamespaces } from './spare-namespaces.ts';
import { STUNNEL_NAMES, attachmentPskFile, attachmentStunnelConfig, instanceStunnelConfig, withStunnel, withStunnelReady } from './stunnel.ts';

/** Options of {@link ProcessDriver}. */
export interface ProcessDriverOptions {
  /** Directory for per-instance state (DATA/run): pid records, stunnel config copies. */
  stateDir: string;
  /**
   * `netns`: a network namespace + bubblewrap sandbox per instance, every app on
   * port 8080 (needs root, `ip`, `bwrap`, `setpriv`); `port`: a loopback port
   * per instance, no sandbox; `auto` (default): netns when possible.
   */
  isolation?: 'auto' | 'netns' | 'port';
  /** Private IPv4 range cut into one /30 per instance (default 10.213.0.0/16). */
  subnet?: string;
  /**
   * Prefix of namespace and veth names (default `eph`, giving `eph-1a2b3c4d`);
   * 1..6 characters [a-z0-9]. recover() only touches names with this prefix.
   */
  prefix?: string;
  /** Time between SIGTERM and SIGKILL on stop (default 3000 ms). */
  stopGraceMs?: number;
  /**
   * Network namespaces kept ready in netns mode (default 2; 0: every start
   * creates its own). They fill after recover() and after each start that
   * takes one; close() deletes them.
   */
  warmNamespaces?: number;
  /**
   * What instances may reach beyond their namespace in netns mode (default
   * `public`): `public` addresses, or `none`. Never other instances, the
   * host's services (except the ports given to allowHostPorts) or private
   * ranges; enforced with iptables (see firewall.ts).
   */
  egress?: Egress;
  /**
   * Where the image trees live (DATA/images): checked at construction in
   * netns mode, because the sandbox user must be able to reach them.
   */
  imageRoot?: string;
  /**
   * `auto` (default): each instance's plan limits are enforced with cgroups
   * (v2, else v1) when this machine has them; `off`: no cgroups (open files,
   * /tmp size and the sandbox's syscall rules still apply).
   */
  limits?: 'auto' | 'off';
}

/** How often the memory accounting of a running instance is read (a kill by the kernel may spare the app's parent). */
const OOM_POLL_MS = 1000;

/** The port every app listens on inside its own namespace, as in the original cloud. */
export const APP_PORT = 8080;

/** Where the sandbox sees the instance's copy of stunnel.conf. */
const SANDBOX_STUNNEL_CONF = '/run/eph/stunnel.conf';
/** Where the sandbox sees the configuration and keys of the attached appliances' tunnels. */
const SANDBOX_ATTACH_CONF = '/run/eph/attach-stunnel.conf';
const SANDBOX_ATTACH_PSK = '/run/eph/attach-psk.txt';

/** Delay from a start to the refill of spare namespaces: the app being woken has the CPU first. */
const REFILL_DELAY_MS = 100;

/** How long to wait for stdout/stderr to close after the process exited. */
const PIPE_CLOSE_GRACE_MS = 2000;

interface Instance extends InstanceState {
  /** Names derived from the hostname: state files, and the namespace (or its alias). */
  names: NamespaceNames;
  /** The namespace the instance runs in: `names`, or a spare with its own names. */
  netns: NamespaceNames | null;
  /** Setting up `names.ns` as a second name of a spare namespace; resolves true once done. */
  aliasing: Promise<boolean> | null;
  block: AddressBlock | null;
  port: number | null;
  child: ChildProcess | null;
  killTimer: NodeJS.Timeout | null;
  /** Resource limits (null: none, or cgroups off). */
  cgroup: InstanceCgroup | null;
  oomWatch: NodeJS.Timeout | null;
  /** Why the driver ended the app (it passed its memory limit), for the exit report. */
  exitReason: string | null;
  /** Frozen by freeze() (warm sleep), until thaw(): signals wait for the thaw. */
  frozen: boolean;
}

/** What recover() needs to find a process left by a crashed server. */
interface PidRecord {
  hostname: string;
  pid: number;
  startTime: number;
}

/**
 * Runs each instance as a local process.
 *
 * As root (isolation `auto` or `netns`) every instance gets its own network
 * namespace `eph-xxxxxxxx` joined to the host by a veth pair on a private /30,
 * and runs as uid/gid 65534 in a bubblewrap sandbox (read-only system dirs and
 * image dir, private /tmp, own pid namespace), listening on 8080 at the
 * namespace address. Otherwise each instance gets a free loopback port in PORT.
 * A few namespaces (`eph-wxxxxxxx`, option `warmNamespaces`) are kept ready so
 * that a wake does not wait for their creation; an instance started in one
 * finds it also under `eph-xxxxxxxx`, and it is deleted, never reused, when
 * the instance ends.
 *
 * Apps must listen on all addresses (0.0.0.0), not 127.0.0.1: the host reaches
 * them through the veth. Inside a namespace, EPH_HOST_ADDR holds the host's
 * address on the veth, where the ports given to allowHostPorts (appliance
 * endpoints) are reachable. The firewall (firewall.ts, when iptables works)
 * refuses every other host service, other instances and private ranges, and
 * public addresses unless `egress` is `public`. A
 * process killed by a signal inside the sandbox is reported by bwrap as code
 * 128+N. Drivers that share a machine must use distinct `prefix` and `subnet`
 * values: recover() deletes every namespace with its prefix.
 *
 * A start's `limits` (the owner's plan) bound the instance: memory, CPU and
 * processes in a cgroup `<prefix>-<hostname>` (cgroups.ts; v2, else v1), open
 * files by RLIMIT_NOFILE, the /tmp size, a seccomp filter and no user
 * namespaces in bubblewrap (seccomp.ts). An app killed by the kernel for
 * passing its memory limit is reported with `reason` set.
 *
 * @example
 * const driver = new ProcessDriver({ stateDir: join(dataDir, 'run') });
 * await driver.recover();
 * const upstream = await driver.start(spec); // { host: '10.213.0.2', port: 8080 }
 * await waitReady(upstream, 60_000);
 */
export class ProcessDriver implements Driver {
  readonly name = 'process';
  readonly isolation: string;
  /** The isolation actually in use. */
  readonly mode: 'netns' | 'port';
  readonly #stateDir: string;
  readonly #prefix: string;
  readonly #graceMs: number;
  readonly #pool: AddressPool;
  readonly #spares: SpareNamespaces;
  readonly #instances = new InstanceTable<Instance>();
  /** Null in port mode, and when iptables is missing (the isolation line says so). */
  readonly #firewall: Firewall | null = null;
  #firewallReady: Promise<void> | null = null;
  readonly #cgroups: Cgroups;
  /** The limits actually enforced (cgroup mode, or why they are off): part of the start-up line. */
  readonly limits: string;

  constructor(opts: ProcessDriverOptions) {
    this.#stateDir = opts.stateDir;
    this.#prefix = opts.prefix ?? 'eph';
    if (!/^[a-z0-9]{1,6}$/.test(this.#prefix)) {
      throw new EphError('INVALID_CONFIG', `prefix: expected 1..6 characters [a-z0-9], got '${this.#prefix}'`);
    }
    this.#graceMs = opts.stopGraceMs ?? 3000;
    this.#pool = new AddressPool(opts.subnet ?? '10.213.0.0/16');
    const wanted = opts.isolation ?? 'auto';
    let spareError = '';
    // Spares are created in the background: a failure surfaces in the log of the next start instead.
    const onSpareError = (e: unknown): void => {
      spareError = errorText(e);
    };
    this.#takeSpareError = (): string => {
      const e = spareError;
      spareError = '';
      return e;
    };
    const missing = wanted === 'port' ? null : netnsUnavailableReason();
    if (wanted === 'port') {
      this.mode = 'port';
      this.isolation = 'port per instance on 127.0.0.1: namespaces turned off (isolation=port)';
    } else if (missing === null) {
      this.mode = 'netns';
      const subnet = opts.subnet ?? '10.213.0.0/16';
      const egress = opts.egress ?? 'public';
      if (opts.imageRoot) checkImageRoot(opts.imageRoot);
      const tools = detectFirewallTools();
      let network: string;
      if (typeof tools === 'string') {
        network = `network isolation OFF (${tools}): instances reach each other and the host's services`;
      } else {
        this.#firewall = new Firewall({ prefix: this.#prefix, subnet, egress }, tools);
        network = `firewall chain ${this.#firewall.chain}: no other instance, host service or private range${egress === 'public' ? ', public egress' : ', no egress'}`;
      }
      this.isolation = `network namespace per instance (${subnet}), apps on port ${APP_PORT} as uid 65534 in bubblewrap; ${network}`;
    } else if (wanted === 'netns') {
      throw new EphError('DEPENDENCY_MISSING', `isolation netns needs ${missing}`);
    } else {
      this.mode = 'port';
      this.isolation = `port per instance on 127.0.0.1, no sandbox: ${missing}`;
    }
    this.#cgroups = new Cgroups(
      opts.limits === 'off' ? { mode: 'off', reason: 'turned off (limits=off)' } : detectCgroups(this.#prefix),
      this.#prefix,
    );
    this.limits = describeCgroups(this.#cgroups.support);
    this.isolation = `${this.isolation}; limits: ${this.limits}`;
    this.#spares = new SpareNamespaces({
      size: this.mode === 'netns' ? (opts.warmNamespaces ?? 2) : 0,
      prefix: this.#prefix,
      addresses: this.#pool,
      onError: onSpareError,
    });
  }

  readonly #takeSpareError: () => string;

  /** Network namespaces ready for the next starts (netns mode). */
  get warmNamespaces(): number {
    return this.#spares.ready;
  }

  start(spec: LaunchSpec): Promise<HostPort> {
    return this.#instances.start(spec.hostname, {
      create: (state) => ({
        ...state,
        names: namesFor(spec.hostname, this.#prefix),
        netns: null,
        aliasing: null,
        block: null,
        port: null,
        child: null,
        killTimer: null,
        cgroup: null,
        oomWatch: null,
        exitReason: null,
        frozen: false,
      }),
      launch: (inst) => this.#launch(inst, spec),
      releaseFailed: (inst) => this.#release(inst),
    });
  }

  async stop(hostname: string): Promise<void> {
    const stopping = await this.#instances.requestStop(hostname);
    if (!stopping) return;
    const { inst, first } = stopping;
    if (first) {
      // A frozen app cannot handle SIGTERM (nor die of SIGKILL) until it is thawed.
      await this.#thawForSignal(inst);
      this.#terminate(inst);
      inst.killTimer = setTimeout(() => this.#kill(inst), this.#graceMs);
    }
    await inst.exited;
  }

  isRunning(hostname: string): boolean {
    return this.#instances.isRunning(hostname);
  }

  /**
   * Warm sleep: freezes every process of the instance in its cgroup (the
   * freezer; memory stays, CPU stops; listening sockets keep queueing
   * connections). False when this instance cannot be frozen: cgroups off
   * (not root, limits=off), no freezer hierarchy, or it is not running.
   */
  async freeze(hostname: string): Promise<boolean> {
    const inst = this.#find(hostname);
    if (!inst || inst.requested || inst.ended || inst.frozen || !inst.cgroup?.canFreeze) return false;
    try {
      await inst.started;
    } catch {
      return false;
    }
    // Marked first: a stop arriving while the kernel freezes thaws it afterwards.
    inst.frozen = true;
    try {
      await inst.cgroup.freeze();
    } catch (e) {
      inst.frozen = false;
      inst.log?.note(`could not freeze: ${errorText(e)}`);
      return false;
    }
    return true;
  }

  /** Resumes a frozen instance; a no-op when it is not frozen. */
  async thaw(hostname: string): Promise<void> {
    const inst = this.#find(hostname);
    if (inst?.frozen && inst.cgroup) {
      await inst.cgroup.thaw();
      inst.frozen = false;
    }
  }

  /** Bytes of memory the instance's cgroup uses now (page cache included); null without cgroups. */
  async memoryUsage(hostname: string): Promise<number | null> {
    return (await this.#find(hostname)?.cgroup?.memoryUsage()) ?? null;
  }

  #find(hostname: string): Instance | undefined {
    for (const i of this.#instances.values()) if (i.hostname === hostname) return i;
    return undefined;
  }

  async #thawForSignal(inst: Instance): Promise<void> {
    if (!inst.frozen || !inst.cgroup) return;
    await inst.cgroup.thaw().catch((e: unknown) => inst.log?.note(`could not thaw before stopping: ${errorText(e)}`));
    inst.frozen = false;
  }

  onExit(listener: (hostname: string, info: ExitInfo) => void): void {
    this.#instances.onExit(listener);
  }

  /**
   * Kills processes recorded by a previous run that are still alive, and (in
   * netns mode) deletes leftover namespaces and veths with this driver's
   * prefix, killing whatever still runs in them.
   */
  async recover(): Promise<void> {
    // Before anything runs: a leftover chain of a killed run is replaced here.
    await this.#firewallInstalled();
    // Spares are deleted with the rest of the prefix, and made anew afterwards.
    await this.#spares.without(() => this.#sweep());
  }

  async #sweep(): Promise<void> {
    await mkdir(this.#stateDir, { recursive: true });
    await this.#cgroups.recover(new Set(this.#instances.hostnames()));
    const live = new Set([...this.#instances.values()].flatMap((i) => [i.names.ns, ...(i.netns ? [i.netns.ns] : [])]));
    for (const entry of await readdir(this.#stateDir)) {
      const ns = entry.replace(/\.json$/, '');
      if (!namespacePattern(this.#prefix).test(ns) || live.has(ns)) continue;
      if (entry.endsWith('.json')) {
        const rec = await readPidRecord(join(this.#stateDir, entry));
        // The start time tells our process from an unrelated one that got the same pid.
        if (rec && procStat(rec.pid)?.startTime === rec.startTime) signalGroup(rec.pid, 'SIGKILL');
      }
      await rm(join(this.#stateDir, entry), { recursive: true, force: true });
    }
    if (this.mode !== 'netns') return;
    const nsPattern = namespacePattern(this.#prefix);
    for (const ns of await listNamespaces()) {
      if (!nsPattern.test(ns) || live.has(ns)) continue;
      await killNamespacePids(ns);
      await deleteNamespace({ ns, hostVeth: `v${ns.replace('-', '')}` });
    }
    const liveVeths = new Set([...this.#instances.values()].flatMap((i) => [i.names.hostVeth, ...(i.netns ? [i.netns.hostVeth] : [])]));
    const vPattern = vethPattern(this.#prefix);
    for (const veth of await listVeths()) {
      if (vPattern.test(veth) && !liveVeths.has(veth)) {
        await deleteNamespace({ ns: `${this.#prefix}-${veth.slice(1 + this.#prefix.length)}`, hostVeth: veth });
      }
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.#instances.hostnames().map((h) => this.stop(h)));
    await this.#spares.close();
    if (this.#firewall) {
      this.#firewallReady = null;
      await this.#firewall.remove();
    }
  }

  /**
   * The host ports instances may reach (the appliances' TLS-PSK endpoints,
   * for tunnels declared in an archive's stunnel.conf); replaces the list.
   */
  async allowHostPorts(ports: readonly number[]): Promise<void> {
    await this.#firewall?.setHostPorts(ports);
  }

  /** Installs the firewall once (again after a failure); a no-op without one. */
  #firewallInstalled(): Promise<void> {
    const fw = this.#firewall;
    if (!fw) return Promise.resolve();
    this.#firewallReady ??= fw.install().catch((e: unknown) => {
      this.#firewallReady = null;
      // Fail closed: no instance starts without its network policy.
      throw new EphError('START_FAILED', `network isolation (iptables): ${errorText(e)}`, { cause: e });
    });
    return this.#firewallReady;
  }

  async #launch(inst: Instance, spec: LaunchSpec): Promise<HostPort> {
    const cmd = buildCommand(spec, process.env.PATH ?? '');
    const instDir = join(this.#stateDir, inst.names.ns);
    await rm(instDir, { recursive: true, force: true });
    await mkdir(instDir, { recursive: true });

    let argv = cmd.argv;
    let stunnelConf: string | null = null;
    if (cmd.stunnelConf) {
      const stunnel = findFirstExecutable(STUNNEL_NAMES);
      if (!stunnel) throw new EphError('DEPENDENCY_MISSING', 'stunnel.conf sits beside the app but stunnel is not installed (Debian: stunnel4)');
      stunnelConf = join(instDir, 'stunnel.conf');
      await writeFile(stunnelConf, instanceStunnelConfig(await readFile(cmd.stunnelConf, 'utf8')), { mode: 0o644 });
      argv = withStunnel(argv, stunnel, this.mode === 'netns' ? SANDBOX_STUNNEL_CONF : stunnelConf);
      cmd.needs.push(dirname(stunnel), dirname(realpathOr(stunnel)));
    }

    const nodeDir = dirname(realpathOr(process.execPath));
    const sandboxNode = this.mode === 'port' || unreachableBySandbox(nodeDir) === null;
    const env: Record<string, string> = {
      PATH: [...new Set([...(sandboxNode ? [nodeDir] : []), '/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin'])].join(':'),
      LANG: 'C.UTF-8',
      HOME: this.mode === 'netns' ? '/tmp' : join(instDir, 'home'),
      ...spec.env,
    };

    let upstream: HostPort;
    let spawnArgv: string[];
    let aliasError = '';
    let cwd: string;
    const extraFds: number[] = [];
    if (this.mode === 'netns') {
      await this.#firewallInstalled();
      const readOnly = [spec.imageDir, cmd.cwd, ...cmd.needs];
      for (const dir of readOnly) {
        const blocked = unreachableBySandbox(dir);
        if (blocked) {
          throw new EphError('START_FAILED', `${blocked} is not readable by the sandbox user (uid 65534): make ${dir} and its parents world-readable`);
        }
      }
      if (sandboxNode) readOnly.push(nodeDir);
      const spare = this.#spares.take();
      if (spare) {
        inst.block = spare.block;
        inst.netns = spare.names;
        // Runs while the app starts; awaited before start() answers.
        inst.aliasing = aliasNamespace(spare.names.ns, inst.names.ns).then(
          () => true,
          (e: unknown) => {
            aliasError = errorText(e);
            return false;
          },
        );
      } else {
        inst.block = this.#pool.allocate(await hostAddresses());
        await createNamespace(inst.names, inst.block);
        inst.netns = inst.names;
      }
      env.PORT = String(APP_PORT);
      env.EPH_HOST_ADDR = inst.block.hostIp;
      upstream = { host: inst.block.nsIp, port: APP_PORT };
      const files: { fd: number; dest: string }[] = [];
      if (stunnelConf) {
        extraFds.push(openSync(stunnelConf, 'r'));
        files.push({ fd: 3, dest: SANDBOX_STUNNEL_CONF });
      }
      const label = spec.hostname.split('.')[0]!.slice(0, 63);
      argv = await this.#withTunnels(spec, instDir, inst.block.hostIp, argv, { extraFds, files });
      const rules = await this.#sandboxRules(spec.limits, instDir, extraFds);
      // nsenter joins the namespace only; `ip netns exec` would also remount /sys and bind /etc/netns in a
      // mount namespace of its own, which the sandbox replaces anyway: a few milliseconds of every wake.
      spawnArgv = ['nsenter', `--net=/run/netns/${inst.netns.ns}`, ...sandboxArgv({ readOnly, files, cwd: cmd.cwd, hostname: label, argv, ...rules })];
      cwd = '/';
    } else {
      await mkdir(env.HOME!, { recursive: true });
      inst.port = await freeLoopbackPort(new Set(this.#usedPorts()));
      env.PORT = String(inst.port);
      upstream = { host: '127.0.0.1', port: inst.port };
      spawnArgv = await this.#withTunnels(spec, instDir, '127.0.0.1', argv, null);
      cwd = cmd.cwd;
    }

    spawnArgv = await this.#withLimits(inst, spec.limits, spawnArgv);
    inst.log = await BoundedLog.open(spec.logFile, spec.maxLogBytes);
    const spareError = this.#takeSpareError();
    if (spareError) inst.log.note(`could not prepare a spare namespace (created this one on start): ${spareError}`);
    inst.log.note(`starting ${describeIsolation(this.mode, inst)}${stunnelConf ? ' with stunnel' : ''}: ${cmd.argv.join(' ')}`);
    const child = spawn(spawnArgv[0]!, spawnArgv.slice(1), {
      cwd,
      env,
      // Own process group: stop() and exit clean-up signal the whole group.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe', ...extraFds],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', reject);
      });
    } finally {
      for (const fd of extraFds) closeSync(fd);
    }
    inst.child = child;
    // Later failures of the process or its pipes are this instance's alone: never an unhandled 'error'.
    child.on('error', (e) => inst.log?.note(`process error: ${errorText(e)}`));
    child.stdout!.on('error', () => undefined);
    child.stderr!.on('error', () => undefined);
    const log = inst.log;
    child.stdout!.pipe(log, { end: false });
    child.stderr!.pipe(log, { end: false });
    const pid = child.pid!;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      inst.ended = true;
      // Whatever the app left behind in its group or namespace goes with it.
      signalGroup(pid, 'SIGKILL');
      if (inst.netns) void killNamespacePids(inst.netns.ns);
      // A daemon that escaped the group may still hold the pipes open.
      setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
      }, PIPE_CLOSE_GRACE_MS).unref();
    });
    child.once('close', (code, signal) => {
      void this.#finish(inst, exit ?? { code, signal });
    });
    this.#watchMemory(inst);
    const record: PidRecord = { hostname: spec.hostname, pid, startTime: procStat(pid)?.startTime ?? 0 };
    // Only recover() after a crash reads it; failing to write it must not fail a running start.
    await writeFile(join(this.#stateDir, `${inst.names.ns}.json`), JSON.stringify(record)).catch(() => undefined);
    if (inst.aliasing && !(await inst.aliasing)) log.note(`namespace ${inst.netns?.ns} has no second name ${inst.names.ns}: ${aliasError}`);
    this.#spares.fill(REFILL_DELAY_MS);
    return upstream;
  }

  /**
   * Attached appliances: a stunnel of the cloud's own making beside the app
   * (as for a stunnel.conf in the archive), its configuration and keys
   * written to the instance's state dir (0600) and, in the sandbox, handed
   * in by fd at /run/eph.
   */
  async #withTunnels(
    spec: LaunchSpec,
    instDir: string,
    connectHost: string,
    argv: string[],
    sandbox: { extraFds: number[]; files: { fd: number; dest: string }[] } | null,
  ): Promise<string[]> {
    const tunnels = spec.tunnels ?? [];
    if (tunnels.length === 0) return argv;
    const stunnel = findFirstExecutable(STUNNEL_NAMES);
    if (!stunnel) throw new EphError('DEPENDENCY_MISSING', 'appliances are attached to this instance but stunnel is not installed (Debian: stunnel4)');
    const psk = join(instDir, 'attach-psk.txt');
    const conf = join(instDir, 'attach-stunnel.conf');
    await writeFile(psk, attachmentPskFile(tunnels), { mode: 0o600 });
    await writeFile(conf, attachmentStunnelConfig(tunnels, connectHost, sandbox ? SANDBOX_ATTACH_PSK : psk), { mode: 0o600 });
    const ports = tunnels.map((t) => t.localPort);
    if (!sandbox) return withStunnelReady(argv, stunnel, conf, ports);
    for (const [file, dest] of [[conf, SANDBOX_ATTACH_CONF], [psk, SANDBOX_ATTACH_PSK]] as const) {
      sandbox.extraFds.push(openSync(file, 'r'));
      // The child's fds 0-2 are stdio; extra fds follow in order from 3.
      sandbox.files.push({ fd: 2 + sandbox.extraFds.length, dest });
    }
    return withStunnelReady(argv, stunnel, SANDBOX_ATTACH_CONF, ports);
  }

  /**
   * The plan's sandbox rules: /tmp size, the seccomp filter (its bytes in a
   * file of the instance's state dir, handed to bwrap as the next extra fd),
   * no user namespaces. Each only when this bubblewrap supports it.
   */
  async #sandboxRules(limits: PlanLimits | undefined, instDir: string, extraFds: number[]): Promise<Partial<SandboxSpec>> {
    if (!limits) return {};
    const bwrap = bwrapFeatures();
    const rules: Partial<SandboxSpec> = {};
    if (limits.tmpBytes !== undefined && bwrap.tmpfsSize) rules.tmpBytes = limits.tmpBytes;
    if (!limits.userns && bwrap.disableUserns) rules.disableUserns = true;
    if (limits.syscalls === 'filtered' && bwrap.seccomp && seccompSupported()) {
      const file = join(instDir, 'seccomp.bpf');
      await writeFile(file, seccompProgram({ allowUserns: limits.userns }), { mode: 0o600 });
      extraFds.push(openSync(file, 'r'));
      // The child's fds 0-2 are stdio; extra fds follow in order from 3.
      rules.seccompFd = 2 + extraFds.length;
    }
    return rules;
  }

  /**
   * Wraps `argv` in `sh -c` that joins the instance's cgroup and sets
   * RLIMIT_NOFILE before it execs: everything the app forks is then inside
   * from its first instruction, with no window where a child escapes.
   */
  async #withLimits(inst: Instance, limits: PlanLimits | undefined, argv: string[]): Promise<string[]> {
    const steps: string[] = [];
    if (limits?.openFiles !== undefined) steps.push(`ulimit -n ${limits.openFiles}`);
    let procFiles: string[] = [];
    const wanted = { memoryBytes: limits?.memoryBytes, cpus: limits?.cpus, pids: limits?.pids };
    // A group even without limits: it is what freeze() freezes and what reports a frozen instance's memory.
    if (this.#cgroups.enabled) {
      inst.cgroup = await this.#cgroups.create(inst.hostname, Object.fromEntries(Object.entries(wanted).filter(([, v]) => v !== undefined)));
      procFiles = inst.cgroup.procFiles;
    }
    if (steps.length === 0 && procFiles.length === 0) return argv;
    return ['/bin/sh', '-c', [...steps, joinScript(procFiles)].join(' && '), 'eph-limits', ...procFiles, ...argv];
  }

  /** Reads the memory accounting every second; a kill by the kernel takes the whole instance. */
  #watchMemory(inst: Instance): void {
    if (!inst.cgroup?.limits.memoryBytes) return;
    inst.oomWatch = setInterval(() => {
      void this.#outOfMemory(inst).then((reason) => {
        if (!reason || inst.exitReason || inst.ended) return;
        inst.exitReason = reason;
        this.#kill(inst);
      });
    }, OOM_POLL_MS);
    inst.oomWatch.unref();
  }

  /** `killed: out of memory (limit 256 MiB)` once the kernel has killed a process of the instance for memory, else null. */
  async #outOfMemory(inst: Instance): Promise<string | null> {
    const limit = inst.cgroup?.limits.memoryBytes;
    if (!inst.cgroup || limit === undefined) return null;
    const state = await inst.cgroup.memoryState();
    return state.oomKills > 0 ? `killed: out of memory (limit ${formatBytes(limit)})` : null;
  }

  #terminate(inst: Instance): void {
    const pid = inst.child?.pid;
    if (pid === undefined) return;
    // In netns mode the group leader is the outer bwrap: its death would
    // SIGKILL the sandbox at once (--die-with-parent) and cut the app's
    // shutdown short, so it only exits when the app has.
    const targets = termTargets(pid, new Set(this.mode === 'netns' ? [pid] : []));
    if (targets.length > 0) signalEach(targets, 'SIGTERM');
    else signalGroup(pid, 'SIGTERM');
  }

  #kill(inst: Instance): void {
    // Thawed first when frozen (SIGKILL waits for the thaw); the kill follows at once, without awaiting the write.
    if (inst.frozen) void this.#thawForSignal(inst);
    const pid = inst.child?.pid;
    if (pid !== undefined) signalGroup(pid, 'SIGKILL');
    if (inst.netns) void killNamespacePids(inst.netns.ns);
  }

  async #finish(inst: Instance, exit: { code: number | null; signal: NodeJS.Signals | null }): Promise<void> {
    if (inst.killTimer) clearTimeout(inst.killTimer);
    if (inst.oomWatch) clearInterval(inst.oomWatch);
    // A kill by the kernel for memory is read here too: the app may have gone before the next poll.
    const reason = inst.exitReason ?? (await this.#outOfMemory(inst));
    const how = exit.signal ? `killed by signal ${exit.signal}` : `exited with code ${exit.code}`;
    inst.log?.note(`${how}${inst.requested ? ' (stop requested)' : ''}`);
    if (reason) inst.log?.note(reason);
    await inst.log?.close().catch(() => undefined);
    await this.#release(inst);
    this.#instances.reportExit(inst, { ...exit, ...(reason ? { reason } : {}) });
  }

  /** Frees the namespace, address block, port and state files of an instance; never throws. */
  async #release(inst: Instance): Promise<void> {
    if (inst.log && !inst.child) await inst.log.close().catch(() => undefined);
    await this.#thawForSignal(inst);
    const pid = inst.child?.pid;
    if (pid !== undefined) {
      // stop() and the exit report promise that nothing of the instance runs any more.
      signalGroup(pid, 'SIGKILL');
      await untilGone(() => groupMembers(pid));
    }
    if (inst.block) {
      // Never handed on to another instance: processes of this one may linger in it.
      const netns = inst.netns ?? inst.names;
      if (inst.aliasing && (await inst.aliasing)) await deleteAlias(inst.names.ns);
      await killNamespacePids(netns.ns);
      await deleteNamespace(netns);
      this.#pool.release(inst.block);
      inst.block = null;
      inst.netns = null;
      // A refill that failed for want of addresses may succeed now.
      this.#spares.fill();
    }
    inst.port = null;
    if (inst.oomWatch) clearInterval(inst.oomWatch);
    if (inst.cgroup) {
      await inst.cgroup.remove().catch((e: unknown) => inst.log?.note(`could not remove cgroup ${inst.cgroup?.name}: ${errorText(e)}`));
      inst.cgroup = null;
    }
    await rm(join(this.#stateDir, inst.names.ns), { recursive: true, force: true }).catch(() => undefined);
    await rm(join(this.#stateDir, `${inst.names.ns}.json`), { force: true }).catch(() => undefined);
  }

  *#usedPorts(): Iterable<number> {
    for (const i of this.#instances.values()) if (i.port !== null) yield i.port;
  }
}

/**
 * Why network namespaces cannot be used here, or null when they can. Being
 * root is not enough (a container may deny namespaces, a kernel may deny
 * unprivileged user namespaces to bwrap), so both are tried once, quickly.
 */
export function netnsUnavailableReason(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  const missing = ['ip', 'bwrap', 'setpriv', 'unshare', 'nsenter'].filter((c) => findExecutable(c) === null);
  if (missing.length > 0) return `${missing.join(', ')} not installed`;
  const ok = (argv: string[]): boolean => spawnSync(argv[0]!, argv.slice(1), { stdio: 'ignore', timeout: 5000 }).status === 0;
  if (!ok(['unshare', '--net', 'true'])) return 'cannot create network namespaces here';
  const probe = sandboxArgv({ readOnly: [], files: [], cwd: '/', hostname: 'probe', argv: ['true'] });
  if (!ok(probe)) return 'bubblewrap cannot create its sandbox as uid 65534 here (user namespaces disabled?)';
  return null;
}

/**
 * Refuses, with what to change, an image root the sandbox user cannot reach:
 * publishing would work and every wake would fail (e.g. a data directory
 * made by `mktemp -d` under a 0700 parent). bwrap runs as that user, so it
 * must traverse every parent to bind the image.
 */
function checkImageRoot(imageRoot: string): void {
  const blocked = unreachableBySandbox(imageRoot);
  if (blocked === null) return;
  const why = blocked === imageRoot ? 'is not readable' : 'is not searchable';
  throw new EphError(
    'INVALID_CONFIG',
    `data directory: ${blocked} ${why} by the sandbox user (uid 65534), so no instance could start: run chmod o+x ${blocked}, or choose a --data outside it`,
  );
}

function describeIsolation(mode: 'netns' | 'port', inst: Instance): string {
  return mode === 'netns' && inst.block
    ? `in namespace ${inst.netns?.ns ?? inst.names.ns}${inst.netns && inst.netns.ns !== inst.names.ns ? ` (ready in advance, also named ${inst.names.ns})` : ''} at ${inst.block.nsIp}:${APP_PORT}`
    : `on 127.0.0.1:${inst.port}`;
}

async function readPidRecord(path: string): Promise<PidRecord | null> {
  try {
    const rec = JSON.parse(await readFile(path, 'utf8')) as Partial<PidRecord>;
    return typeof rec.pid === 'number' && typeof rec.startTime === 'number' && typeof rec.hostname === 'string'
      ? { hostname: rec.hostname, pid: rec.pid, startTime: rec.startTime }
      : null;
  } catch {
    return null;
  }
}
