import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { mkdir, readFile, readdir, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EphError } from '../../core/errors.ts';
import { errorText } from '../instance-lifecycle.ts';

/**
 * The controllers the process driver uses. `freezer` is listed so that a warm
 * sleep (freezing an instance instead of stopping it) can join the same
 * groups: in v1 it is one more hierarchy, in v2 `cgroup.freeze` is always there.
 */
export type Controller = 'memory' | 'cpu' | 'pids' | 'freezer';
const CONTROLLERS: readonly Controller[] = ['memory', 'cpu', 'pids', 'freezer'];

/** Limits a cgroup enforces; an absent field is not limited. */
export interface CgroupLimits {
  memoryBytes?: number;
  /** CPU time as a number of cores (0.5: half of one core). */
  cpus?: number;
  pids?: number;
}

/** What this machine offers, decided once at start-up. */
export type CgroupSupport =
  | { mode: 'v2'; root: string }
  | { mode: 'v1'; mounts: Partial<Record<Controller, string>> }
  | { mode: 'off'; reason: string };

/** What memory accounting says about one group. */
export interface MemoryState {
  /** Processes the kernel killed for passing the limit. */
  oomKills: number;
  /** Times the usage hit the limit (v1 `memory.failcnt`, v2 `max` events). */
  limitHits: number;
}

const CFS_PERIOD_US = 100_000;

/**
 * Finds cgroup v2 with the memory and pids controllers (where the cloud may
 * enable them for its groups), else cgroup v1 hierarchies with at least
 * memory and pids, else says why limits are off. Probes by creating and
 * removing a group named `<prefix>-probe-<pid>`.
 */
export function detectCgroups(prefix: string, mountsFile = '/proc/mounts'): CgroupSupport {
  if (process.getuid?.() !== 0) return { mode: 'off', reason: 'not root' };
  let mounts: string[][];
  try {
    mounts = readFileSync(mountsFile, 'utf8').split('\n').map((l) => l.split(' '));
  } catch (e) {
    return { mode: 'off', reason: `cannot read ${mountsFile}: ${errorText(e)}` };
  }
  const probe = `${prefix}-probe-${process.pid}`;
  const v2Problems: string[] = [];
  for (const m of mounts.filter((f) => f[2] === 'cgroup2')) {
    const root = m[1]!;
    const available = readWords(join(root, 'cgroup.controllers'));
    if (!available.includes('memory') || !available.includes('pids')) continue;
    try {
      // Controllers must be enabled in the parent for its children to get their files.
      const wanted = ['memory', 'pids', ...(available.includes('cpu') ? ['cpu'] : [])];
      const enabled = readWords(join(root, 'cgroup.subtree_control'));
      const missing = wanted.filter((c) => !enabled.includes(c));
      if (missing.length > 0) writeFileSync(join(root, 'cgroup.subtree_control'), missing.map((c) => `+${c}`).join(' '));
      mkdirSync(join(root, probe));
      const ok = existsSync(join(root, probe, 'memory.max'));
      rmdirSync(join(root, probe));
      if (ok) return { mode: 'v2', root };
      v2Problems.push(`${root}: memory controller not delegated`);
    } catch (e) {
      v2Problems.push(`${root}: ${errorText(e)}`);
    }
  }
  const v1: Partial<Record<Controller, string>> = {};
  for (const m of mounts.filter((f) => f[2] === 'cgroup')) {
    const options = (m[3] ?? '').split(',');
    for (const c of CONTROLLERS) if (options.includes(c) && !v1[c]) v1[c] = m[1]!;
  }
  if (!v1.memory || !v1.pids) {
    const why = v2Problems.length > 0 ? v2Problems.join('; ') : 'no cgroup v2 with memory+pids and no v1 memory+pids hierarchies';
    return { mode: 'off', reason: why };
  }
  for (const c of ['memory', 'pids'] as const) {
    try {
      mkdirSync(join(v1[c]!, probe));
      rmdirSync(join(v1[c]!, probe));
    } catch (e) {
      return { mode: 'off', reason: `cannot create a cgroup under ${v1[c]}: ${errorText(e)}` };
    }
  }
  return { mode: 'v1', mounts: v1 };
}

/** One line for the start-up summary. */
export function describeCgroups(s: CgroupSupport): string {
  if (s.mode === 'off') return `limits off (${s.reason})`;
  if (s.mode === 'v2') return `cgroup v2 at ${s.root}`;
  return `cgroup v1 (${CONTROLLERS.filter((c) => s.mounts[c]).join(', ')})`;
}

/**
 * The cgroups of one cloud: one group per instance, named
 * `<prefix>-<hostname>` in every hierarchy used, so that recover() finds what
 * a killed cloud left behind and never touches another cloud's groups.
 *
 * @example
 * const cgroups = new Cgroups(detectCgroups('eph'), 'eph');
 * const g = await cgroups.create('eph-1a2b3c4d.eph.localhost', { memoryBytes: 256 * 2 ** 20, pids: 128 });
 * // start the app with: sh -c 'echo $$ > <g.procFiles[0]> ... && exec app'
 * (await g.memoryState()).oomKills; await g.remove();
 */
export class Cgroups {
  readonly support: CgroupSupport;
  readonly #prefix: string;

  constructor(support: CgroupSupport, prefix: string) {
    this.support = support;
    this.#prefix = prefix;
  }

  get enabled(): boolean {
    return this.support.mode !== 'off';
  }

  /** Directories of the group `name` (v1: one per hierarchy). */
  #dirs(name: string): Partial<Record<Controller, string>> {
    const s = this.support;
    if (s.mode === 'v2') {
      const d = join(s.root, name);
      return { memory: d, cpu: d, pids: d, freezer: d };
    }
    if (s.mode === 'v1') {
      const out: Partial<Record<Controller, string>> = {};
      for (const [c, mount] of Object.entries(s.mounts) as [Controller, string][]) out[c] = join(mount, name);
      return out;
    }
    return {};
  }

  /**
   * Creates the group of `hostname` (empty leftovers of the same name are
   * replaced) and sets its limits.
   *
   * @throws EphError START_FAILED when the kernel refuses a directory or a limit.
   */
  async create(hostname: string, limits: CgroupLimits): Promise<InstanceCgroup> {
    const name = `${this.#prefix}-${hostname}`;
    const group = new InstanceCgroup(this.support.mode === 'v2' ? 'v2' : 'v1', name, this.#dirs(name), limits);
    try {
      await group.remove();
      await group.setUp();
      return group;
    } catch (e) {
      await group.remove().catch(() => undefined);
      throw new EphError('START_FAILED', `cannot set the limits of ${hostname} (cgroup ${name}): ${errorText(e)}`);
    }
  }

  /**
   * Kills the processes of, and removes, every group of this prefix whose
   * hostname `keep` does not list: leftovers of a cloud killed with -9.
   */
  async recover(keep: ReadonlySet<string> = new Set()): Promise<string[]> {
    const names = new Set<string>();
    for (const root of new Set(Object.values(this.#dirs('')))) {
      let entries: string[] = [];
      try {
        entries = await readdir(root!);
      } catch {
        continue;
      }
      for (const e of entries) {
        // `<prefix>-probe-<pid>` is detectCgroups' own (maybe of a cloud starting now), never an instance.
        if (!e.startsWith(`${this.#prefix}-`) || /^[a-z0-9]+-probe-\d+$/.test(e)) continue;
        if (!keep.has(e.slice(this.#prefix.length + 1))) names.add(e);
      }
    }
    for (const name of names) {
      await new InstanceCgroup(this.support.mode === 'v2' ? 'v2' : 'v1', name, this.#dirs(name), {}).remove();
    }
    return [...names];
  }
}

/** The group of one instance. */
export class InstanceCgroup {
  readonly name: string;
  readonly limits: CgroupLimits;
  readonly #mode: 'v1' | 'v2';
  readonly #dirs: Partial<Record<Controller, string>>;

  constructor(mode: 'v1' | 'v2', name: string, dirs: Partial<Record<Controller, string>>, limits: CgroupLimits) {
    this.#mode = mode;
    this.name = name;
    this.#dirs = dirs;
    this.limits = limits;
  }

  /** The `cgroup.procs` files a process writes its pid into to join every hierarchy of the group. */
  get procFiles(): string[] {
    return [...new Set(Object.values(this.#dirs))].map((d) => join(d!, 'cgroup.procs'));
  }

  /** The directory of one controller (e.g. `freezer`), or null when that hierarchy is absent. */
  dir(controller: Controller): string | null {
    return this.#dirs[controller] ?? null;
  }

  async setUp(): Promise<void> {
    for (const d of new Set(Object.values(this.#dirs))) await mkdirIfAbsent(d!);
    const { memoryBytes, cpus, pids } = this.limits;
    const mem = this.#dirs.memory!;
    const cpu = this.#dirs.cpu;
    if (this.#mode === 'v2') {
      if (memoryBytes !== undefined) {
        await writeFile(join(mem, 'memory.max'), String(memoryBytes));
        // No swap: past its memory the instance is killed rather than slowed down.
        await writeIfPresent(join(mem, 'memory.swap.max'), '0');
        // One process killed for memory takes the whole instance with it.
        await writeIfPresent(join(mem, 'memory.oom.group'), '1');
      }
      if (pids !== undefined) await writeFile(join(this.#dirs.pids!, 'pids.max'), String(pids));
      if (cpus !== undefined && cpu) {
        await writeIfPresent(join(cpu, 'cpu.max'), `${Math.max(1000, Math.round(cpus * CFS_PERIOD_US))} ${CFS_PERIOD_US}`);
        await writeIfPresent(join(cpu, 'cpu.weight'), String(Math.min(10_000, Math.max(1, Math.round(cpus * 100)))));
      }
      return;
    }
    if (memoryBytes !== undefined) {
      await writeFile(join(mem, 'memory.limit_in_bytes'), String(memoryBytes));
      // memory+swap equal to memory: no swap (present only with swap accounting).
      await writeIfPresent(join(mem, 'memory.memsw.limit_in_bytes'), String(memoryBytes));
    }
    if (pids !== undefined) await writeFile(join(this.#dirs.pids!, 'pids.max'), String(pids));
    if (cpus !== undefined && cpu) {
      await writeFile(join(cpu, 'cpu.cfs_period_us'), String(CFS_PERIOD_US));
      await writeFile(join(cpu, 'cpu.cfs_quota_us'), String(Math.max(1000, Math.round(cpus * CFS_PERIOD_US))));
      await writeFile(join(cpu, 'cpu.shares'), String(Math.max(2, Math.round(cpus * 1024))));
    }
  }

  /** OOM kills and limit hits so far (zeros when the files cannot be read). */
  async memoryState(): Promise<MemoryState> {
    const mem = this.#dirs.memory!;
    if (this.#mode === 'v2') {
      const events = keyValues(await readFile(join(mem, 'memory.events'), 'utf8').catch(() => ''));
      return { oomKills: events.oom_kill ?? 0, limitHits: events.max ?? 0 };
    }
    const oom = keyValues(await readFile(join(mem, 'memory.oom_control'), 'utf8').catch(() => ''));
    const failcnt = Number((await readFile(join(mem, 'memory.failcnt'), 'utf8').catch(() => '0')).trim()) || 0;
    return { oomKills: oom.oom_kill ?? 0, limitHits: failcnt };
  }

  /**
   * Freezes every process of the group (a warm sleep: memory stays, no CPU)
   * and resolves once the kernel says they are all frozen: v1 `freezer.state`
   * reads FROZEN (it passes through FREEZING), v2 `cgroup.events` says
   * `frozen 1`. Polls with a short backoff: freezing a few processes takes
   * well under a millisecond, a busy one may take longer.
   *
   * @throws EphError START_FAILED when this group has no freezer, or it is not
   * frozen within `timeoutMs` (it is thawed again then).
   */
  async freeze(timeoutMs = 5000): Promise<void> {
    const dir = this.#freezerDir();
    const [file, on] = this.#mode === 'v2' ? ['cgroup.freeze', '1'] : ['freezer.state', 'FROZEN'];
    await writeFile(join(dir, file), on);
    const deadline = Date.now() + timeoutMs;
    let delay = 1;
    while (!(await this.isFrozen())) {
      if (Date.now() > deadline) {
        await this.thaw().catch(() => undefined);
        throw new EphError('START_FAILED', `cgroup ${this.name} was not frozen within ${timeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 50);
    }
  }

  /**
   * Lets the group's processes run again. Effective when the write returns
   * (v1 THAWED, v2 `cgroup.freeze` 0): nothing to wait for. Written
   * synchronously: a visitor waits for it, and a write to cgroupfs takes
   * microseconds where the thread pool's open/write/close round trips take
   * longer (more so on a busy machine).
   */
  async thaw(): Promise<void> {
    const dir = this.#freezerDir();
    writeFileSync(join(dir, this.#mode === 'v2' ? 'cgroup.freeze' : 'freezer.state'), this.#mode === 'v2' ? '0' : 'THAWED');
  }

  /** True once every process of the group is frozen (false while FREEZING, or without a freezer). */
  async isFrozen(): Promise<boolean> {
    const dir = this.dir('freezer');
    if (!dir) return false;
    if (this.#mode === 'v2') return keyValues(await readFile(join(dir, 'cgroup.events'), 'utf8').catch(() => '')).frozen === 1;
    return (await readFile(join(dir, 'freezer.state'), 'utf8').catch(() => '')).trim() === 'FROZEN';
  }

  /** True when this group can be frozen (a v1 freezer hierarchy, or v2's cgroup.freeze). */
  get canFreeze(): boolean {
    const dir = this.dir('freezer');
    return dir !== null && existsSync(join(dir, this.#mode === 'v2' ? 'cgroup.freeze' : 'freezer.state'));
  }

  /**
   * Bytes of memory the group uses now, page cache included (v1
   * `memory.usage_in_bytes`, v2 `memory.current`); null when unreadable.
   */
  async memoryUsage(): Promise<number | null> {
    const mem = this.#dirs.memory;
    if (!mem) return null;
    const text = await readFile(join(mem, this.#mode === 'v2' ? 'memory.current' : 'memory.usage_in_bytes'), 'utf8').catch(() => '');
    const n = Number(text.trim());
    return text.trim() !== '' && Number.isFinite(n) ? n : null;
  }

  #freezerDir(): string {
    const dir = this.dir('freezer');
    if (!dir) throw new EphError('START_FAILED', `cgroup ${this.name} has no freezer (no freezer hierarchy on this machine)`);
    return dir;
  }

  /** Pids in the group (any hierarchy). */
  async pids(): Promise<number[]> {
    const out = new Set<number>();
    for (const f of this.procFiles) {
      const text = await readFile(f, 'utf8').catch(() => '');
      for (const w of text.split('\n')) if (w) out.add(Number(w));
    }
    return [...out];
  }

  /** Kills whatever still runs in the group and removes its directories; waits up to 5 s for the kernel. */
  async remove(): Promise<void> {
    const deadline = Date.now() + 5000;
    // A frozen process does not die of SIGKILL until it is thawed (the group would stay busy).
    const freezer = this.dir('freezer');
    if (freezer && existsSync(freezer)) await this.thaw().catch(() => undefined);
    for (const d of new Set(Object.values(this.#dirs))) {
      if (!existsSync(d!)) continue;
      for (;;) {
        for (const pid of await this.pids()) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // gone meanwhile
          }
        }
        try {
          await rmdir(d!);
          break;
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') break;
          // EBUSY: killed processes are still leaving.
          if (code !== 'EBUSY' || Date.now() > deadline) throw e;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    }
  }
}

/** `sh -c` script that writes its own pid into each of `procFiles` ($1..$n), then runs the rest of its arguments. */
export function joinScript(procFiles: readonly string[]): string {
  return [...procFiles.map((_, i) => `echo $$ > "$${i + 1}"`), `shift ${procFiles.length}`, 'exec "$@"'].join(' && ');
}

function readWords(file: string): string[] {
  try {
    return readFileSync(file, 'utf8').trim().split(/\s+/);
  } catch {
    return [];
  }
}

function keyValues(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined) out[k] = Number(v);
  }
  return out;
}

async function mkdirIfAbsent(dir: string): Promise<void> {
  try {
    await mkdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
}

async function writeIfPresent(file: string, value: string): Promise<void> {
  if (existsSync(file)) await writeFile(file, value);
}

/** Names of groups `recover()` would look at, synchronously (tests). */
export function groupNames(support: CgroupSupport, prefix: string): string[] {
  const roots = support.mode === 'v2' ? [support.root] : support.mode === 'v1' ? Object.values(support.mounts) : [];
  const out = new Set<string>();
  for (const r of roots) {
    try {
      for (const e of readdirSync(r)) if (e.startsWith(`${prefix}-`)) out.add(e);
    } catch {
      // hierarchy gone
    }
  }
  return [...out];
}
