/**
 * Wake costs, three rows side by side in one run, for each isolation mode
 * available (medians of --runs runs, default 9; runs of the three kinds
 * alternate, so that the machine's state is shared):
 *
 * - app boot alone: examples/node-app spawned directly as a child process,
 *   spawn → first HTTP response; its overhead is over a request to that app
 *   running (direct, new connection);
 * - cold wake through the gate: asleep (no process) → first response; its
 *   overhead is over a request through the gate to the running instance, and
 *   the cloud's own share is that overhead minus the app's boot overhead;
 * - warm wake through the gate: frozen (cgroup freezer) → first response;
 *   its overhead is over the same request to the running instance.
 *
 * Also prints the memory a frozen instance holds (its cgroup's usage).
 *
 *   node bin/run-ts.js bench/wake.ts [--runs 9]
 */
import { spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { resolve } from 'node:path';
import { request } from 'undici';
import { buildZip } from '../examples/make-archives.ts';
import { netnsUnavailableReason } from '../src/runtime/process/process-driver.ts';
import { startTestCloud } from '../test/helpers/cloud.ts';

const args = process.argv.slice(2);
const RUNS = (() => {
  const i = args.indexOf('--runs');
  return i >= 0 ? Number(args[i + 1]) : 9;
})();
const APP = resolve('examples/node-app');

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

function tryConnect(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });
}

/** One GET over a new connection (no keep-alive pool), as the first request after a boot is. */
async function getFresh(port: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  const r = await request(`http://127.0.0.1:${port}/`, { reset: true });
  await r.body.text();
  return ms(t0);
}

/** The app alone: spawn → first accepted connection (polled every 2 ms) and → first HTTP response; then one request to it running. */
async function appAlone(): Promise<{ accept: number; response: number; running: number }> {
  const port = await freePort();
  const t0 = process.hrtime.bigint();
  const child = spawn(process.execPath, ['server.js'], { cwd: APP, env: { PATH: process.env.PATH ?? '', PORT: String(port) }, stdio: 'ignore' });
  const exited = new Promise((r) => child.once('exit', r));
  const deadline = Date.now() + 10_000;
  while (!(await tryConnect(port))) {
    if (Date.now() > deadline) throw new Error('the app did not listen within 10 s');
    await new Promise((r) => setTimeout(r, 2));
  }
  const accept = ms(t0);
  const r = await request(`http://127.0.0.1:${port}/`);
  await r.body.text();
  const response = ms(t0);
  const running = await getFresh(port);
  child.kill('SIGTERM');
  await exited;
  return { accept, response, running };
}

async function benchMode(isolation: 'netns' | 'port'): Promise<void> {
  const cloud = await startTestCloud(
    // The reaper stays out of the way: the bench freezes and stops by itself.
    { idleTimeout: '30m', warmIdleTimeout: '0' },
    { driverOptions: { prefix: isolation === 'netns' ? 'bwkn' : 'bwkp', subnet: '10.212.0.0/24', isolation } },
  );
  try {
    const h = await cloud.publish(await buildZip(APP));
    const visit = async (): Promise<number> => {
      const t0 = process.hrtime.bigint();
      const r = await cloud.visit(h);
      const t = ms(t0);
      if (r.status !== 200) throw new Error(`the gate answered ${r.status}: ${r.body}`);
      return t;
    };
    // One warm-up of each, so that file caches and JIT do not count.
    await appAlone();
    await visit();
    const canFreeze = await cloud.instances.freeze(h);
    await visit();
    await cloud.instances.stop(h);
    const boot: number[] = [];
    const accept: number[] = [];
    const direct: number[] = [];
    const cold: number[] = [];
    const warm: number[] = [];
    const running: number[] = [];
    const frozenBytes: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const a = await appAlone();
      boot.push(a.response);
      accept.push(a.accept);
      direct.push(a.running);
      cold.push(await visit());
      // Requests to the running instance, over the same kind of connection (the test client's pool to the gate).
      for (let k = 0; k < 3; k++) running.push(await visit());
      if (canFreeze) {
        if (!(await cloud.instances.freeze(h))) throw new Error('the instance could not be frozen');
        frozenBytes.push((await cloud.driver.memoryUsage?.(h)) ?? 0);
        warm.push(await visit());
        // And to the thawed instance, running again (its JIT as warm as the thaw found it).
        for (let k = 0; k < 3; k++) running.push(await visit());
      }
      await cloud.instances.stop(h);
    }
    const m = { boot: median(boot), accept: median(accept), direct: median(direct), cold: median(cold), warm: median(warm), running: median(running) };
    const bootOverhead = m.boot - m.direct;
    const coldOverhead = m.cold - m.running;
    const row = (name: string, total: number, base: number, note = ''): string =>
      `  ${name.padEnd(32)} ${total.toFixed(1).padStart(7)} ms   ${base.toFixed(1).padStart(5)} ms   ${(total - base).toFixed(1).padStart(7)} ms${note}`;
    console.log(`isolation ${isolation} (${cloud.driver.isolation})`);
    console.log(`  ${'median of '.concat(String(RUNS)).padEnd(32)} ${'total'.padStart(10)}   ${'running'.padStart(8)}   ${'overhead'.padStart(10)}`);
    console.log(row('app boot alone (spawn → answer)', m.boot, m.direct, `   (spawn → accept ${m.accept.toFixed(1)} ms)`));
    console.log(row('cold wake through the gate', m.cold, m.running, `   (cloud's share over the app's boot: ${(coldOverhead - bootOverhead).toFixed(1)} ms)`));
    if (canFreeze) {
      console.log(row('warm wake (thaw) through the gate', m.warm, m.running, `   (frozen instance memory ${(median(frozenBytes) / 2 ** 20).toFixed(1)} MiB)`));
    } else {
      console.log('  warm wake: skipped (this driver cannot freeze here: cgroups off or no freezer)');
    }
    console.log(`  spread: cold ${Math.min(...cold).toFixed(1)}–${Math.max(...cold).toFixed(1)} ms${canFreeze ? `, warm ${Math.min(...warm).toFixed(1)}–${Math.max(...warm).toFixed(1)} ms` : ''}`);
  } finally {
    await cloud.close();
  }
}

const noNetns = netnsUnavailableReason();
if (noNetns === null) await benchMode('netns');
else console.log(`isolation netns: skipped (${noNetns})`);
await benchMode('port');
