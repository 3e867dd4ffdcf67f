/**
 * Gate vs nginx vs HAProxy (issue 4): the same small app behind each proxy,
 * wrk keep-alive small GETs with 32 connections, rps and p99 for each, and
 * the ratios. Every peer is started here from its Debian package with a
 * generated config in a temp dir, one worker/thread each (the gate is one
 * Node process), and stopped at the end.
 *
 * The machine is small and shared, so one run of each says little: targets
 * run in several rounds, in a rotating order, and the table shows medians.
 *
 *   node bin/run-ts.js bench/gate/run.ts [--duration 5] [--rounds 3] [--connections 32] [--only gate]
 *
 * GATE_NODE_FLAGS adds node flags to the gate process (e.g. `--cpu-prof`).
 * `--variant NAME:FILE:FLAGS` (repeatable) adds another gate to the same run,
 * for A/B comparisons on equal terms: FILE is a gate-server.ts (empty: this
 * one; e.g. one from an exported older commit), FLAGS node flags.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startHaproxy, startNginx } from './peers.ts';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
};
const DURATION = Number(opt('duration', '5'));
const CONNS = Number(opt('connections', '32'));
const ONLY = opt('only', '');
const ROUNDS = Math.max(1, Number(opt('rounds', '3')));
const HOST = 'eph-00000001.eph.localhost';

const children: ChildProcess[] = [];
const dir = mkdtempSync(join(tmpdir(), 'eph-bench-gate-'));
function cleanup(): void {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/**
 * CPU time (user and system, in ms) used so far by a process and its
 * descendants. The machine is shared (wrk, the app and the proxy on 2 cores,
 * maybe other work too), so rps alone is noisy; CPU per request is not.
 */
function treeCpuMs(pid: number): { user: number; sys: number } {
  const parent = new Map<number, number>();
  const ticks = new Map<number, [number, number]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(d), Number(f[1]));
      ticks.set(Number(d), [Number(f[11]), Number(f[12])]);
    } catch {
      // the process ended meanwhile
    }
  }
  let user = 0;
  let sys = 0;
  for (const [p, t] of ticks) {
    for (let q: number | undefined = p; q !== undefined && q > 1; q = parent.get(q)) {
      if (q === pid) {
        user += t[0];
        sys += t[1];
        break;
      }
    }
  }
  return { user: (user * 1000) / 100, sys: (sys * 1000) / 100 }; // USER_HZ is 100 on Linux
}

/** Busy and total jiffies of the whole machine, from /proc/stat. */
function machineJiffies(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3]! - (f[4] ?? 0), total };
}

/** Starts a child that prints `{"port":N}` on its first stdout line. */
function startJsonChild(cmd: string, argv: string[], env: NodeJS.ProcessEnv): Promise<{ port: number; pid: number }> {
  const c = spawn(cmd, argv, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'inherit'], cwd: root });
  children.push(c);
  return new Promise((res, rej) => {
    let out = '';
    const t = setTimeout(() => rej(new Error(`${argv.join(' ')} did not start`)), 15_000);
    c.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(t);
        res({ port: (JSON.parse(out.slice(0, nl)) as { port: number }).port, pid: c.pid! });
      }
    });
    c.on('exit', (code) => rej(new Error(`${argv.join(' ')} exited ${code}`)));
  });
}

interface Result {
  name: string;
  rps: number;
  p99ms: number;
  p50ms: number;
  /** CPU of the proxy (or of the app, for direct) per request, in microseconds. */
  cpuUs: number;
  /** The user-space part of cpuUs (the rest is the kernel's: syscalls, loopback TCP). */
  userUs: number;
  /** Share of the machine's CPUs busy during the run (all processes, the benchmark's and others'), in %. */
  busyPct: number;
  /** rps of every round (summary rows only). */
  all?: string;
}

function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v.trim());
  if (!m) return NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 's' ? n * 1000 : n;
}

function wrk(name: string, port: number, pid: number, seconds: number): Result {
  const cpu0 = treeCpuMs(pid);
  const m0 = machineJiffies();
  const r = spawnSync(
    'wrk',
    ['-t2', `-c${CONNS}`, `-d${seconds}s`, '--latency', '-H', `Host: ${HOST}`, `http://127.0.0.1:${port}/`],
    { encoding: 'utf8', timeout: (seconds + 30) * 1000 },
  );
  const out = r.stdout ?? '';
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN);
  const p99 = toMs(/\s99%\s+(\S+)/.exec(out)?.[1] ?? '');
  const p50 = toMs(/\s50%\s+(\S+)/.exec(out)?.[1] ?? '');
  const total = Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN);
  const cpu1 = treeCpuMs(pid);
  const m1 = machineJiffies();
  const busyPct = ((m1.busy - m0.busy) * 100) / (m1.total - m0.total);
  const userUs = ((cpu1.user - cpu0.user) * 1000) / total;
  const cpuUs = userUs + ((cpu1.sys - cpu0.sys) * 1000) / total;
  if (/Non-2xx|Socket errors/.test(out)) console.error(`${name}: ${out.split('\n').filter((l) => /Non-2xx|Socket errors/.test(l)).join('; ')}`);
  return { name, rps, p99ms: p99, p50ms: p50, cpuUs, userUs, busyPct };
}

for (const cmd of ['wrk', 'nginx', 'haproxy']) {
  if (!have(cmd)) {
    console.error(`bench/gate: ${cmd} is not installed (Debian: wrk, nginx-light, haproxy)`);
    process.exit(2);
  }
}

const loadBefore = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const app = await startJsonChild(process.execPath, [join(here, 'app.mjs')], {});
const appPort = app.port;
const targets: Array<[string, { port: number; pid: number }]> = [['direct', app]];
for (const [name, start] of [
  ['nginx', startNginx],
  ['haproxy', startHaproxy],
] as const) {
  if (ONLY && ONLY !== name) continue;
  const p = await start(dir, `127.0.0.1:${appPort}`, null);
  children.push(p.child);
  targets.push([name, p]);
}
const nodeFlags = (process.env.GATE_NODE_FLAGS ?? '').split(' ').filter(Boolean);
const gate = await startJsonChild(process.execPath, [...nodeFlags, join(root, 'bin', 'run-ts.js'), join(here, 'gate-server.ts')], {
  APP_PORT: String(appPort),
  GATE_HOST: HOST,
});
targets.push(['gate', gate]);
for (let i = 0; i < args.length; i++) {
  if (args[i] !== '--variant') continue;
  const [name, file, flags] = (args[i + 1] ?? '').split(':');
  const v = await startJsonChild(
    process.execPath,
    [...(flags ?? '').split(' ').filter(Boolean), join(root, 'bin', 'run-ts.js'), file ? resolve(file) : join(here, 'gate-server.ts')],
    { APP_PORT: String(appPort), GATE_HOST: HOST },
  );
  targets.push([name!, v]);
}

for (const [name, t] of targets) wrk(name, t.port, t.pid, 1); // warm-up (JIT, pools)
const runs = new Map<string, Result[]>(targets.map(([name]) => [name, []]));
for (let round = 0; round < ROUNDS; round++) {
  // Rotating the order spreads slow moments of the machine over all targets.
  for (let k = 0; k < targets.length; k++) {
    const [name, t] = targets[(k + round) % targets.length]!;
    runs.get(name)!.push(wrk(name, t.port, t.pid, DURATION));
  }
}
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const results: Result[] = [...runs].map(([name, rs]) => ({
  name,
  rps: median(rs.map((r) => r.rps)),
  p99ms: median(rs.map((r) => r.p99ms)),
  p50ms: median(rs.map((r) => r.p50ms)),
  cpuUs: median(rs.map((r) => r.cpuUs)),
  userUs: median(rs.map((r) => r.userUs)),
  busyPct: median(rs.map((r) => r.busyPct)),
  all: rs.map((r) => r.rps.toFixed(0)).join(' '),
}));

const pad = (s: string, n: number): string => s.padStart(n);
console.log(
  `\nwrk -t2 -c${CONNS} -d${DURATION}s keep-alive GET, ${ROUNDS} round(s), medians; app: Node http 'ok'; proxies: 1 worker/thread each\n`,
);
console.log(`load average before the runs: ${loadBefore}`);
console.log(`${'target'.padEnd(10)}${pad('rps', 12)}${pad('p50 ms', 10)}${pad('p99 ms', 10)}${pad('CPU us/req', 12)}${pad('user', 7)}${pad('busy%', 7)}   rps per round`);
for (const r of results) {
  console.log(
    `${r.name.padEnd(10)}${pad(r.rps.toFixed(0), 12)}${pad(r.p50ms.toFixed(2), 10)}${pad(r.p99ms.toFixed(2), 10)}${pad(r.cpuUs.toFixed(1), 12)}${pad(r.userUs.toFixed(1), 7)}${pad(r.busyPct.toFixed(0), 7)}   ${r.all}`,
  );
}
console.log('(CPU us/req: CPU time of the proxy process tree per request, user: its user-space part; for direct, of the app; busy%: whole machine)');
const by = (n: string): Result | undefined => results.find((r) => r.name === n);
const g = by('gate')!;
for (const peer of ['nginx', 'haproxy']) {
  const p = by(peer);
  if (p) console.log(`gate/${peer}: rps ${(g.rps / p.rps).toFixed(2)}x, p99 ${(g.p99ms / p.p99ms).toFixed(2)}x, CPU/req ${(g.cpuUs / p.cpuUs).toFixed(2)}x`);
}
cleanup();
process.exit(0);
