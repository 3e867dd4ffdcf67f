import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import type { HostPort } from '../../../src/core/config.ts';
import type { ExitInfo } from '../../../src/runtime/driver.ts';
import { detectCgroups, groupNames } from '../../../src/runtime/process/cgroups.ts';
import type { CgroupSupport } from '../../../src/runtime/process/cgroups.ts';
import { ProcessDriver } from '../../../src/runtime/process/process-driver.ts';
import { driverIsolation } from '../../helpers/driver-isolation.ts';
import { httpGet, makeDir, netnsSkip, procfileSpec, readLog, removeDir, waitFor } from './helpers.ts';

/**
 * Warm sleep in the process driver: freeze() suspends every process of an
 * instance in its cgroup's freezer, thaw() resumes it with its memory, its
 * sockets and its timers; stop() of a frozen instance thaws it first so that
 * the app handles its SIGTERM.
 */

const iso = driverIsolation('z');
// Decided before any test: root with cgroups, and a freezer (v1 hierarchy or v2's cgroup.freeze).
const support: CgroupSupport = detectCgroups(iso.prefix);
const skip =
  support.mode === 'off'
    ? `cgroups unavailable: ${support.reason}`
    : support.mode === 'v1' && !support.mounts.freezer
      ? 'no cgroup v1 freezer hierarchy mounted (the freezer controller)'
      : false;
const isolation = netnsSkip() ? 'port' : 'netns';

/** Counts in memory, spins the CPU on demand, ticks a timer, and handles SIGTERM by saying so. */
const APP = `
const http = require('http');
let counter = 0;
let ticks = 0;
let spinning = false;
setInterval(() => { ticks++; }, 20);
function spin() { const t = Date.now(); while (Date.now() - t < 10) {} if (spinning) setImmediate(spin); }
http.createServer((req, res) => {
  if (req.url === '/inc') return res.end(String(++counter));
  if (req.url === '/ticks') return res.end(String(ticks));
  if (req.url === '/spin') { spinning = true; spin(); return res.end('spinning'); }
  if (req.url === '/port') return res.end(String(req.socket.remotePort));
  res.end('ok');
}).listen(Number(process.env.PORT), () => console.log('app up'));
process.on('SIGTERM', () => { console.log('got SIGTERM'); process.exit(0); });
`;

let dir = '';
let driver: ProcessDriver | null = null;
const exits = new Map<string, ExitInfo>();
let seq = 0;
const nextHost = (): string => `eph-f${process.pid.toString(16).padStart(6, '0').slice(-6)}${(seq++).toString(16)}.eph.test`;

before(async () => {
  if (skip) return;
  dir = await makeDir({ 'app.js': APP });
  // A long grace: a stop that does not thaw first would hang instead of ending in a kill.
  driver = new ProcessDriver({ stateDir: join(dir, 'run'), ...iso, isolation, stopGraceMs: 60_000, warmNamespaces: 0 });
  driver.onExit((h, info) => exits.set(h, info));
  await driver.recover();
});

after(async () => {
  await driver?.close();
  if (dir) await removeDir(dir);
  if (support.mode !== 'off') assert.deepEqual(groupNames(support, iso.prefix), [], 'no cgroup of this driver is left');
});

async function startApp(): Promise<{ hostname: string; addr: HostPort }> {
  const hostname = nextHost();
  const addr = await driver!.start(procfileSpec(hostname, dir, 'exec node app.js', dir));
  await waitFor(`${hostname} to answer`, async () => (await httpGet(addr).catch(() => null))?.status === 200, 30_000);
  return { hostname, addr };
}

/** The instance's freezer group directory. */
function freezerDir(hostname: string): string {
  if (support.mode === 'v1') return join(support.mounts.freezer!, `${iso.prefix}-${hostname}`);
  if (support.mode === 'v2') return join(support.root, `${iso.prefix}-${hostname}`);
  throw new Error('no cgroups');
}

/** What the kernel says of the group: FROZEN / THAWED (v1), frozen 1 / 0 (v2). */
function kernelFrozen(hostname: string): boolean {
  const d = freezerDir(hostname);
  if (support.mode === 'v2') return /^frozen 1$/m.test(readFileSync(join(d, 'cgroup.events'), 'utf8'));
  return readFileSync(join(d, 'freezer.state'), 'utf8').trim() === 'FROZEN';
}

function thawByHand(hostname: string): void {
  const d = freezerDir(hostname);
  if (support.mode === 'v2') writeFileSync(join(d, 'cgroup.freeze'), '0');
  else writeFileSync(join(d, 'freezer.state'), 'THAWED');
}

/** CPU time (clock ticks, user + system) used so far by every process of the instance's group. */
function cpuTicks(hostname: string): number {
  let sum = 0;
  for (const pid of readFileSync(join(freezerDir(hostname), 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
    try {
      // Fields after the command name (which may hold spaces): state is 3rd, utime 14th, stime 15th.
      const rest = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      sum += Number(rest[11]) + Number(rest[12]);
    } catch {
      // the process ended between the two reads
    }
  }
  return sum;
}

test('a frozen instance keeps its memory: a counter survives the freeze, and the next request after thaw sees it', { skip }, async () => {
  const { hostname, addr } = await startApp();
  assert.equal((await httpGet(addr, '/inc')).body, '1');
  assert.equal((await httpGet(addr, '/inc')).body, '2');
  assert.equal(await driver!.freeze(hostname), true);
  assert.equal(kernelFrozen(hostname), true, 'the kernel says the group is frozen');
  assert.equal(driver!.isRunning(hostname), true, 'a frozen instance still has its process');
  const bytes = await driver!.memoryUsage(hostname);
  assert.ok(bytes !== null && bytes > 0, `memory of the frozen instance: ${bytes}`);
  await driver!.thaw(hostname);
  assert.equal(kernelFrozen(hostname), false);
  assert.equal((await httpGet(addr, '/inc')).body, '3');
  await driver!.stop(hostname);
});

test('a frozen instance uses no CPU: a busy app stops counting CPU time until it is thawed, and its timers tick again', { skip }, async () => {
  const { hostname, addr } = await startApp();
  assert.equal((await httpGet(addr, '/spin')).body, 'spinning');
  const running = cpuTicks(hostname);
  await waitFor('the busy app to use CPU', () => cpuTicks(hostname) > running + 5, 30_000);
  assert.equal(await driver!.freeze(hostname), true);
  const frozen = cpuTicks(hostname);
  // Not a synchronisation: the interval over which a running app would have used CPU.
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(cpuTicks(hostname), frozen, 'no CPU time while frozen');
  await driver!.thaw(hostname);
  await waitFor('the thawed app to use CPU again', () => cpuTicks(hostname) > frozen, 30_000);
  const ticks = Number((await httpGet(addr, '/ticks')).body);
  await waitFor('its interval timer to tick after the thaw', async () => Number((await httpGet(addr, '/ticks')).body) > ticks, 30_000);
  await driver!.stop(hostname);
});

test('a keep-alive connection opened before the freeze carries a request after the thaw', { skip }, async () => {
  const { hostname, addr } = await startApp();
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const get = (path: string): Promise<{ body: string; local: number }> =>
    new Promise((resolve, reject) => {
      const req = request({ host: addr.host, port: addr.port, path, agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ body, local: req.socket?.localPort ?? -1 }));
      });
      req.on('error', reject);
      req.end();
    });
  try {
    const before = await get('/port');
    assert.equal(await driver!.freeze(hostname), true);
    await driver!.thaw(hostname);
    const later = await get('/port');
    assert.equal(later.body, before.body, 'the app saw the same client port: the same connection');
    assert.equal(later.local, before.local);
  } finally {
    agent.destroy();
  }
  await driver!.stop(hostname);
});

test('stop() of a frozen instance thaws it first: the app handles its SIGTERM and exits by itself', { skip }, async () => {
  const { hostname } = await startApp();
  assert.equal(await driver!.freeze(hostname), true);
  // The grace is 60 s: only an app that got its SIGTERM ends before the deadline of waitFor below.
  const stopped = driver!.stop(hostname);
  try {
    await waitFor('the frozen instance to exit after stop()', () => exits.has(hostname), 30_000);
  } catch (e) {
    // Thawed by hand so that the driver's close() in after() is not stuck behind a frozen process.
    thawByHand(hostname);
    throw e;
  }
  await stopped;
  const info = exits.get(hostname)!;
  assert.equal(info.requested, true);
  assert.match(await readLog(join(dir, `${hostname}.log`)), /got SIGTERM/);
  assert.deepEqual(groupNames(support, iso.prefix).filter((g) => g.endsWith(hostname)), [], 'its cgroup is removed');
});

test('freeze() answers false for an instance that is not running, and thaw() of a running one changes nothing', { skip }, async () => {
  assert.equal(await driver!.freeze('eph-nothere.eph.test'), false);
  const { hostname, addr } = await startApp();
  await driver!.thaw(hostname);
  assert.equal((await httpGet(addr, '/inc')).body, '1');
  await driver!.stop(hostname);
});
