import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HostPort } from '../../../src/core/config.ts';
import { DEFAULT_PLAN_LIMITS } from '../../../src/core/plan-limits.ts';
import type { PlanLimits } from '../../../src/core/types.ts';
import type { ExitInfo } from '../../../src/runtime/driver.ts';
import { detectCgroups, groupNames } from '../../../src/runtime/process/cgroups.ts';
import type { CgroupSupport } from '../../../src/runtime/process/cgroups.ts';
import { ProcessDriver } from '../../../src/runtime/process/process-driver.ts';
import { bwrapFeatures } from '../../../src/runtime/process/sandbox.ts';
import { driverIsolation } from '../../helpers/driver-isolation.ts';
import { httpGet, makeDir, netnsSkip, procfileSpec, readLog, removeDir, waitFor } from './helpers.ts';

/**
 * Per-plan limits of the process driver, tried from inside real sandboxed
 * instances: memory (the kernel kills, the driver says why), processes (a
 * fork bomb), /tmp size, open files, and the sandbox's syscall rules.
 */

const iso = driverIsolation('l');
// Decided before any test: namespaces + bubblewrap, then cgroups with memory and pids.
const netns = netnsSkip();
const support: CgroupSupport = netns ? { mode: 'off', reason: 'no netns' } : detectCgroups(iso.prefix);
const cgroupSkip = netns || (support.mode === 'off' ? `cgroup memory/pids controllers unavailable: ${support.reason}` : false);
const bwrapSkip = netns || (!bwrapFeatures().tmpfsSize || !bwrapFeatures().disableUserns ? 'bubblewrap 0.8 or later (--size, --disable-userns) not installed' : false);
const seccompSkip = bwrapSkip || (process.arch !== 'x64' ? 'the seccomp filter is written for x86_64 only' : false);
const perlSkip = seccompSkip || (existsSync('/usr/bin/perl') ? false : 'perl not installed (Debian: perl-base)');

/** A server with endpoints that probe the sandbox from inside. */
const PROBE_APP = `
const http = require('http');
const fs = require('fs');
const cp = require('child_process');
const held = [];
const routes = {
  '/': () => 'ok',
  '/eat': () => {
    // Touched 4 MiB buffers until the kernel stops this.
    setInterval(() => { for (let i = 0; i < 4; i++) held.push(Buffer.alloc(1 << 20, 7)); }, 5);
    return 'eating';
  },
  '/fill': () => {
    let written = 0;
    const chunk = Buffer.alloc(1 << 16, 1);
    const fd = fs.openSync('/tmp/fill', 'w');
    let code = 'none';
    try { for (;;) { written += fs.writeSync(fd, chunk); } } catch (e) { code = e.code; }
    fs.closeSync(fd);
    const st = fs.statfsSync('/tmp');
    fs.unlinkSync('/tmp/fill');
    return JSON.stringify({ code, written, size: st.blocks * st.bsize });
  },
  '/files': () => {
    const fds = [];
    let code = 'none';
    try { for (let i = 0; i < 100000; i++) fds.push(fs.openSync('/dev/null', 'r')); } catch (e) { code = e.code; }
    for (const fd of fds) fs.closeSync(fd);
    const ulimit = cp.execFileSync('/bin/sh', ['-c', 'ulimit -n']).toString().trim();
    return JSON.stringify({ code, opened: fds.length, ulimit });
  },
  '/bomb': () => {
    // A classic fork bomb in its own shell, left running.
    cp.spawn('/bin/sh', ['-c', 'b() { b | b & }; b'], { stdio: 'ignore', detached: true }).unref();
    return 'bombing';
  },
  '/forks': (res) => {
    // Children held alive until one cannot be made: the count is what the pids limit leaves.
    const kids = [];
    const done = (code) => { for (const k of kids) k.kill('SIGKILL'); res.end(JSON.stringify({ code, spawned: kids.length })); };
    for (let i = 0; i < 1000; i++) {
      const k = cp.spawn('/bin/sleep', ['1000'], { stdio: 'ignore' });
      if (k.pid === undefined) { k.once('error', (e) => done(e.code)); return; }
      kids.push(k);
    }
    done('none');
  },
  '/escape': () => {
    const run = (argv) => { const r = cp.spawnSync(argv[0], argv.slice(1), { encoding: 'utf8' }); return r.error ? r.error.code : r.status + ' ' + (r.stderr || '').trim(); };
    return JSON.stringify({
      unshareUser: run(['unshare', '-U', 'true']),
      // ptrace(PTRACE_TRACEME) and keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING): '-1 <errno text>' when refused.
      ptrace: run(['perl', '-e', 'my $r = syscall(101, 0, 0, 0, 0); print STDERR $r, " ", ($r < 0 ? $! : "ok")']),
      keyctl: run(['perl', '-e', 'my $r = syscall(250, 0, -3, 0); print STDERR ($r < 0 ? "-1 $!" : "ok")']),
      child: run(['/bin/sh', '-c', 'echo hi from a child >&2']),
    });
  },
};
http.createServer((req, res) => {
  const f = routes[req.url];
  if (!f) { res.statusCode = 404; return res.end(); }
  try { const body = f(res); if (body !== undefined) res.end(body); } catch (e) { res.statusCode = 500; res.end(String(e)); }
}).listen(Number(process.env.PORT), () => console.log('probe up'));
`;

let dir = '';
let driver: ProcessDriver | null = null;
const exits = new Map<string, ExitInfo>();
let seq = 0;
const nextHost = (): string => `eph-c${process.pid.toString(16).padStart(6, '0').slice(-6)}${(seq++).toString(16)}.eph.test`;

before(async () => {
  if (netns) return;
  dir = await makeDir({ 'probe.js': PROBE_APP });
  driver = new ProcessDriver({ stateDir: join(dir, 'run'), ...iso, isolation: 'netns', stopGraceMs: 500, warmNamespaces: 0 });
  driver.onExit((h, info) => exits.set(h, info));
  await driver.recover();
});

after(async () => {
  await driver?.close();
  if (dir) await removeDir(dir);
  if (support.mode !== 'off') assert.deepEqual(groupNames(support, iso.prefix), [], 'no cgroup of this driver is left');
});

function limits(more: Partial<PlanLimits>): PlanLimits {
  return { ...DEFAULT_PLAN_LIMITS, ...more };
}

async function startProbe(l: PlanLimits): Promise<{ hostname: string; addr: HostPort }> {
  const hostname = nextHost();
  const addr = await driver!.start(procfileSpec(hostname, dir, 'exec node probe.js', dir, { limits: l }));
  await waitFor(`${hostname} to answer`, async () => (await httpGet(addr).catch(() => null))?.status === 200, 30_000);
  return { hostname, addr };
}

/** GETs `addr` back to back until stopped; counts answers and failures. */
function keepAsking(addr: HostPort): { stop: () => Promise<{ ok: number; failed: string[] }> } {
  let running = true;
  const failed: string[] = [];
  let ok = 0;
  const loop = (async () => {
    while (running) {
      try {
        const r = await httpGet(addr);
        if (r.status === 200 && r.body === 'ok') ok++;
        else failed.push(`${r.status} ${r.body}`);
      } catch (e) {
        failed.push(String(e));
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { ok, failed };
    },
  };
}

test('the start-up description names the cgroup mode', { skip: netns }, () => {
  assert.match(driver!.isolation, /limits: (cgroup v[12]|limits off \(.+\))/);
  if (support.mode !== 'off') assert.match(driver!.limits, new RegExp(`^cgroup ${support.mode}`));
});

test('an app that allocates past its memory limit is killed, says so, its sibling answers throughout, and it starts again', { skip: cgroupSkip }, async () => {
  const sibling = await startProbe(limits({}));
  const greedy = await startProbe(limits({ memoryBytes: 128 * 2 ** 20 }));
  const asking = keepAsking(sibling.addr);
  try {
    assert.equal((await httpGet(greedy.addr, '/eat')).body, 'eating');
    await waitFor('the greedy app to be killed', () => exits.has(greedy.hostname), 60_000);
  } finally {
    const seen = await asking.stop();
    assert.deepEqual(seen.failed, [], 'the sibling answered every request');
    assert.ok(seen.ok > 0);
  }
  const info = exits.get(greedy.hostname)!;
  assert.equal(info.requested, false);
  assert.equal(info.reason, 'killed: out of memory (limit 128 MiB)');
  assert.match(await readLog(join(dir, `${greedy.hostname}.log`)), /\[eph\] \S+ killed: out of memory \(limit 128 MiB\)\n$/);
  assert.equal(driver!.isRunning(sibling.hostname), true);

  // The next start is a fresh process that serves again.
  const again = await driver!.start(procfileSpec(greedy.hostname, dir, 'exec node probe.js', dir, { limits: limits({ memoryBytes: 128 * 2 ** 20 }) }));
  await waitFor('the restarted app to answer', async () => (await httpGet(again).catch(() => null))?.body === 'ok', 30_000);
  await driver!.stop(greedy.hostname);
  await driver!.stop(sibling.hostname);
});

test('a fork bomb stops at the pids limit: forks fail inside, the sibling answers, and stop ends it all', { skip: cgroupSkip }, async () => {
  const pidsMax = 48;
  const sibling = await startProbe(limits({}));
  const bomber = await startProbe(limits({ pids: pidsMax, cpus: 0.5 }));
  const group = support.mode === 'v1' ? join(support.mounts.pids!, `${iso.prefix}-${bomber.hostname}`) : join(support.mode === 'v2' ? support.root : '', `${iso.prefix}-${bomber.hostname}`);
  const current = (): number => Number(readFileSync(join(group, 'pids.current'), 'utf8'));
  const maxEvents = (): number => Number(/max (\d+)/.exec(readFileSync(join(group, 'pids.events'), 'utf8'))?.[1] ?? 0);
  // From inside: the app makes children until the kernel refuses one.
  const forks = JSON.parse((await httpGet(bomber.addr, '/forks')).body) as { code: string; spawned: number };
  assert.equal(forks.code, 'EAGAIN');
  assert.ok(forks.spawned > 0 && forks.spawned < pidsMax, `spawned ${forks.spawned}`);
  const refusedBefore = maxEvents();
  const asking = keepAsking(sibling.addr);
  try {
    assert.equal((await httpGet(bomber.addr, '/bomb')).body, 'bombing');
    await waitFor('forks of the bomb refused by the pids controller', () => maxEvents() > refusedBefore, 60_000);
    assert.ok(current() <= pidsMax, `pids.current ${current()} within ${pidsMax}`);
  } finally {
    const seen = await asking.stop();
    assert.deepEqual(seen.failed, [], 'the sibling answered every request');
    assert.ok(seen.ok > 0);
  }
  await driver!.stop(bomber.hostname);
  assert.equal(existsSync(group), false, 'the cgroup is gone with every process of the bomb');
  await driver!.stop(sibling.hostname);
});

test('/tmp fills up at the plan size', { skip: bwrapSkip }, async () => {
  const tmpBytes = 24 * 2 ** 20;
  const app = await startProbe(limits({ tmpBytes }));
  const r = JSON.parse((await httpGet(app.addr, '/fill')).body) as { code: string; written: number; size: number };
  assert.equal(r.code, 'ENOSPC');
  assert.equal(r.size, tmpBytes);
  assert.ok(r.written <= tmpBytes && r.written > tmpBytes - 2 ** 20, `wrote ${r.written} of ${tmpBytes}`);
  await driver!.stop(app.hostname);
});

test('the open files limit holds inside', { skip: netns }, async () => {
  const app = await startProbe(limits({ openFiles: 64 }));
  const r = JSON.parse((await httpGet(app.addr, '/files')).body) as { code: string; opened: number; ulimit: string };
  assert.equal(r.code, 'EMFILE');
  assert.equal(r.ulimit, '64');
  assert.ok(r.opened < 64, `opened ${r.opened}`);
  await driver!.stop(app.hostname);
});

test('the sandbox refuses nested user namespaces, ptrace and keyctl, while ordinary children run', { skip: perlSkip }, async () => {
  const app = await startProbe(limits({}));
  const r = JSON.parse((await httpGet(app.addr, '/escape')).body) as Record<string, string>;
  // EPERM is the seccomp filter's answer; without it bubblewrap's --disable-userns answers ENOSPC (next test).
  assert.match(r.unshareUser!, /^1 unshare: unshare failed: Operation not permitted/);
  assert.match(r.ptrace!, /^0 -1 Operation not permitted/);
  assert.match(r.keyctl!, /^0 -1 Operation not permitted/);
  assert.equal(r.child, '0 hi from a child');
  await driver!.stop(app.hostname);
});

test('without the syscall filter, bubblewrap still refuses nested user namespaces', { skip: bwrapSkip }, async () => {
  const app = await startProbe(limits({ syscalls: 'all' }));
  const r = JSON.parse((await httpGet(app.addr, '/escape')).body) as Record<string, string>;
  // --disable-userns sets the namespace count allowed inside to zero: the kernel answers ENOSPC.
  assert.match(r.unshareUser!, /^1 unshare: unshare failed: No space left on device/);
  await driver!.stop(app.hostname);
});

test('a plan that allows them lets the same calls through', { skip: perlSkip }, async () => {
  const app = await startProbe(limits({ syscalls: 'all', userns: true }));
  const r = JSON.parse((await httpGet(app.addr, '/escape')).body) as Record<string, string>;
  assert.equal(r.unshareUser, '0 ');
  assert.match(r.ptrace!, /^0 0 ok/);
  assert.equal(r.keyctl, '0 ok');
  await driver!.stop(app.hostname);
});

test('recover() kills what runs in a group left by a killed cloud and removes it', { skip: cgroupSkip }, async () => {
  const name = `${iso.prefix}-eph-deadbeef.eph.test`;
  const dirs = support.mode === 'v1' ? [join(support.mounts.memory!, name), join(support.mounts.pids!, name)] : [join(support.mode === 'v2' ? support.root : '', name)];
  for (const d of dirs) mkdirSync(d, { recursive: true });
  const sleeper = spawn('sleep', ['123471'], { stdio: 'ignore' });
  const gone = new Promise<string | null>((r) => sleeper.once('exit', (_c, s) => r(s)));
  try {
    for (const d of dirs) writeFileSync(join(d, 'cgroup.procs'), String(sleeper.pid));
    await driver!.recover();
    const deadline = new Promise<string>((r) => setTimeout(() => r('still running after 30 s'), 30_000).unref());
    assert.equal(await Promise.race([gone, deadline]), 'SIGKILL');
    for (const d of dirs) assert.equal(existsSync(d), false, `${d} removed`);
  } finally {
    sleeper.kill('SIGKILL');
    await gone;
    for (const d of dirs) if (existsSync(d)) rmdirSync(d);
  }
});
