/**
 * The gate through the REAL cloud (issue 13 "Goals"): a whole cloud (startCloud,
 * as `eph serve` runs it: API, store, services, idle reaper and the gate on one
 * event loop) with a real instance (examples/node-app, in its own network
 * namespace when the machine allows), and nginx and HAProxy (one worker each)
 * proxying to the SAME instance address, all in the same run. wrk (-t1, keep-alive,
 * separate process) loads each target in turn, in a rotating order, and the
 * table shows medians: rps, p50, p99, the proxy's CPU per request, and the
 * ratios gate/HAProxy rps and gate p99 / nginx p99.
 *
 * Two passes: free (every process on any core), then pinned with taskset (the
 * gate's process and each peer on core 1, wrk on core 0; the app is not pinned).
 *
 *   node bin/run-ts.js bench/gate/cloud.ts [--duration 10] [--rounds 2] [--connections 32] [--pass free|pinned|both]
 *
 * The machine is small and may be shared: compare targets within one run only.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { buildZip } from '../../examples/make-archives.ts';
import { netnsUnavailableReason } from '../../src/runtime/process/process-driver.ts';
import { driverIsolation } from '../../test/helpers/driver-isolation.ts';
import { startTestCloud } from '../../test/helpers/cloud.ts';
import { run, startHaproxy, startNginx, treeCpuMs, wrk, type Peer, type WrkResult } from './peers.ts';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
};
const DURATION = Number(opt('duration', '10'));
const ROUNDS = Math.max(1, Number(opt('rounds', '2')));
const CONNS = Number(opt('connections', '32'));
const PASS = opt('pass', 'both');

for (const cmd of ['wrk', 'nginx', 'haproxy', 'taskset']) {
  if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) {
    console.error(`bench/gate/cloud: ${cmd} is not installed (Debian: wrk, nginx-light, haproxy, util-linux)`);
    process.exit(2);
  }
}

const noNetns = netnsUnavailableReason();
const isolation = noNetns === null ? 'netns' : 'port';
const dir = mkdtempSync(join(tmpdir(), 'eph-bench-cloud-'));
const cloud = await startTestCloud(
  // No sleep during the bench: the instance stays up; the reaper still runs, as in production.
  { idleTimeout: '30m', warmIdleTimeout: '0' },
  { driverOptions: { ...driverIsolation('b'), isolation } },
);
const peers: Peer[] = [];
async function cleanup(): Promise<void> {
  for (const p of peers) if (p.child.exitCode === null) p.child.kill('SIGTERM');
  await cloud.close();
  rmSync(dir, { recursive: true, force: true });
}
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));

interface Row {
  name: string;
  rps: number;
  p50ms: number;
  p99ms: number;
  /** CPU of the proxy per request (µs); for the gate, of the whole cloud process; NaN for direct. */
  cpuUs: number;
  /** The cloud process's event-loop delay (p99, max) while this target was loaded: the gate's own loop for `gate`, the control plane alone for the others. */
  loopP99ms: number;
  loopMaxMs: number;
  all: string;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** CPU (ms) of this process: the cloud, gate included, all its threads. */
const selfCpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

async function pass(pin: boolean, host: string, upstream: string): Promise<void> {
  const proxyCpus = pin ? '1' : null;
  const wrkCpus = pin ? '0' : null;
  if (pin) await run('taskset', ['-a', '-p', '-c', '1', String(process.pid)], 10_000);
  const nginx = await startNginx(dir, upstream, proxyCpus);
  const haproxy = await startHaproxy(dir, upstream, proxyCpus);
  peers.push(nginx, haproxy);
  const targets: Array<{ name: string; url: string; cpu: () => number }> = [
    { name: 'direct', url: `http://${upstream}/`, cpu: () => Number.NaN },
    { name: 'nginx', url: `http://127.0.0.1:${nginx.port}/`, cpu: () => treeCpuMs(nginx.pid) },
    { name: 'haproxy', url: `http://127.0.0.1:${haproxy.port}/`, cpu: () => treeCpuMs(haproxy.pid) },
    { name: 'gate', url: `${cloud.gateUrl}/`, cpu: selfCpuMs },
  ];
  for (const t of targets) {
    const w = await wrk(t.url, host, CONNS, 2, wrkCpus); // warm-up: JIT, pools
    if (!(w.rps > 0)) throw new Error(`${t.name} does not answer (${t.url})`);
  }
  const runs = new Map<string, Array<WrkResult & { cpuUs: number; loopP99ms: number; loopMaxMs: number }>>(targets.map((t) => [t.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    // Rotating the order spreads slow moments of the machine over all targets.
    for (let k = 0; k < targets.length; k++) {
      const t = targets[(k + round) % targets.length]!;
      const c0 = t.cpu();
      const loop = monitorEventLoopDelay({ resolution: 1 });
      loop.enable();
      const r = await wrk(t.url, host, CONNS, DURATION, wrkCpus);
      loop.disable();
      const cpuUs = ((t.cpu() - c0) * 1000) / r.requests;
      if (r.errors) console.error(`${t.name}: ${r.errors}`);
      runs.get(t.name)!.push({ ...r, cpuUs, loopP99ms: loop.percentile(99) / 1e6, loopMaxMs: loop.max / 1e6 });
    }
  }
  for (const p of [nginx, haproxy]) p.child.kill('SIGTERM');
  if (pin) await run('taskset', ['-a', '-p', '-c', '0-1023', String(process.pid)], 10_000);
  const rows: Row[] = [...runs].map(([name, rs]) => ({
    name,
    rps: median(rs.map((r) => r.rps)),
    p50ms: median(rs.map((r) => r.p50ms)),
    p99ms: median(rs.map((r) => r.p99ms)),
    cpuUs: median(rs.map((r) => r.cpuUs)),
    loopP99ms: median(rs.map((r) => r.loopP99ms)),
    loopMaxMs: Math.max(...rs.map((r) => r.loopMaxMs)),
    all: rs.map((r) => r.rps.toFixed(0)).join(' '),
  }));
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  console.log(
    `\n${pin ? 'PINNED: gate process and each peer on core 1, wrk on core 0' : 'FREE: no pinning'}; wrk -t1 -c${CONNS} -d${DURATION}s, ${ROUNDS} round(s), medians; load average now ${load}`,
  );
  const pad = (s: string, n: number): string => s.padStart(n);
  console.log(`${'target'.padEnd(10)}${pad('rps', 10)}${pad('p50 ms', 9)}${pad('p99 ms', 9)}${pad('CPU us/req', 12)}${pad('loop p99/max ms', 17)}   rps per round`);
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(10)}${pad(r.rps.toFixed(0), 10)}${pad(r.p50ms.toFixed(2), 9)}${pad(r.p99ms.toFixed(2), 9)}${pad(Number.isNaN(r.cpuUs) ? '-' : r.cpuUs.toFixed(1), 12)}${pad(`${r.loopP99ms.toFixed(1)}/${r.loopMaxMs.toFixed(0)}`, 17)}   ${r.all}`,
    );
  }
  const by = (n: string): Row => rows.find((r) => r.name === n)!;
  const g = by('gate');
  console.log(
    `gate/HAProxy rps ${(g.rps / by('haproxy').rps).toFixed(2)}x (goal >= 1.0); gate p99 / nginx p99 ${(g.p99ms / by('nginx').p99ms).toFixed(2)}x (goal <= 1.0); gate/nginx rps ${(g.rps / by('nginx').rps).toFixed(2)}x`,
  );
}

try {
  const h = await cloud.publish(await buildZip(resolve('examples/node-app')));
  const first = await cloud.visit(h);
  if (first.status !== 200) throw new Error(`the gate answered ${first.status}: ${first.body}`);
  const up = cloud.instances.upstream(h);
  if (up === null) throw new Error('the instance is not running after a visit');
  const upstream = `${up.host}:${up.port}`;
  console.log(`cloud in this process (pid ${process.pid}), instance ${h} (isolation ${cloud.driver.isolation}) at ${upstream}; gate ${cloud.gateUrl}`);
  console.log('gate CPU us/req: the whole cloud process (API, store, reaper included); peers: their process tree');
  console.log("loop p99/max: the cloud process's event-loop delay while each target ran (for the peers and direct: the control plane alone)");
  if (PASS !== 'pinned') await pass(false, h, upstream);
  if (PASS !== 'free') await pass(true, h, upstream);
} finally {
  await cleanup();
}
process.exit(0);
