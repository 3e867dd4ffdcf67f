/**
 * Wake overhead: time to the first response through the gate for an
 * instance that is asleep, minus the app's own time to accept connections
 * (examples/node-app started directly as a child process, timed from spawn
 * to its first accepted TCP connection). Runs alternate between the two,
 * several times, for each isolation mode available; prints medians.
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

/** The app alone: spawn → first accepted connection (polled every 2 ms), and → first HTTP response. */
async function appAlone(): Promise<{ accept: number; response: number }> {
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
  child.kill('SIGTERM');
  await exited;
  return { accept, response };
}

async function benchMode(isolation: 'netns' | 'port'): Promise<void> {
  const cloud = await startTestCloud(
    { idleTimeout: '30m' },
    { driverOptions: { prefix: isolation === 'netns' ? 'bwkn' : 'bwkp', subnet: '10.212.0.0/24', isolation } },
  );
  try {
    const h = await cloud.publish(await buildZip(APP));
    // One warm-up of each, so that file caches and JIT do not count.
    await appAlone();
    await cloud.visit(h);
    await cloud.instances.stop(h);
    const accepts: number[] = [];
    const responses: number[] = [];
    const wakes: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const a = await appAlone();
      accepts.push(a.accept);
      responses.push(a.response);
      const t0 = process.hrtime.bigint();
      const r = await cloud.visit(h);
      wakes.push(ms(t0));
      if (r.status !== 200) throw new Error(`wake answered ${r.status}: ${r.body}`);
      await cloud.instances.stop(h);
    }
    const wake = median(wakes);
    const accept = median(accepts);
    const response = median(responses);
    console.log(`isolation ${isolation} (${cloud.driver.isolation})`);
    console.log(`  app alone, spawn → first accepted connection : ${accept.toFixed(1)} ms (median of ${RUNS})`);
    console.log(`  app alone, spawn → first HTTP response        : ${response.toFixed(1)} ms`);
    console.log(`  asleep → first response through the gate      : ${wake.toFixed(1)} ms (min ${Math.min(...wakes).toFixed(1)}, max ${Math.max(...wakes).toFixed(1)})`);
    console.log(`  wake overhead (wake − app accept)             : ${(wake - accept).toFixed(1)} ms  (ratio ${(wake / accept).toFixed(2)}×)`);
  } finally {
    await cloud.close();
  }
}

const noNetns = netnsUnavailableReason();
if (noNetns === null) await benchMode('netns');
else console.log(`isolation netns: skipped (${noNetns})`);
await benchMode('port');
