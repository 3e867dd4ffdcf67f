import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectCgroups } from '../../src/runtime/process/cgroups.ts';
import { netnsUnavailableReason } from '../../src/runtime/process/process-driver.ts';
import { driverIsolation } from '../helpers/driver-isolation.ts';
import { procfileApp, startTestCloud, until, type TestCloud } from '../helpers/cloud.ts';

/**
 * Per-plan limits through a whole cloud: an app of a plan with a 128 MiB
 * memory limit allocates past it; the kernel kills it, the API's lastError and
 * the instance's log say why, another instance answers through the gate all
 * along, and the next visit starts the greedy one again. `eph serve` names the
 * cgroup mode on its start-up line.
 */

// Decided before the tests: root with namespaces and bubblewrap, then cgroups with memory and pids.
const noNetns = netnsUnavailableReason();
const cgroups = noNetns === null ? detectCgroups(`lx${process.pid.toString(36)}`.slice(0, 6)) : null;
const skip = noNetns !== null ? `network namespaces unavailable (${noNetns})` : cgroups?.mode === 'off' ? `cgroup memory/pids controllers unavailable: ${cgroups.reason}` : false;

let cloud: TestCloud;

before(async () => {
  if (skip) return;
  cloud = await startTestCloud({ planLimits: 'standard:memory=128MiB' });
});
after(() => cloud?.close());

const show = (h: string) => cloud.instance(h);

const GREEDY = `
import { createServer } from 'node:http';
const held = [];
const boot = Math.random().toString(36).slice(2, 10);
createServer((req, res) => {
  if (req.url === '/eat') {
    // 4 MiB of touched memory every 5 ms until the kernel steps in.
    setInterval(() => { for (let i = 0; i < 4; i++) held.push(Buffer.alloc(1 << 20, 7)); }, 5);
    console.log('eating');
  }
  res.end('boot ' + boot);
}).listen(Number(process.env.PORT));
`;
const SIBLING = `
import { createServer } from 'node:http';
createServer((req, res) => res.end('sibling ok')).listen(Number(process.env.PORT));
`;

test('an app past its memory limit is killed with the reason in lastError and its log; its sibling keeps answering; the next visit restarts it', { skip, timeout: 180_000 }, async () => {
  const greedy = await cloud.publish(await procfileApp(GREEDY), { name: 'greedy' });
  const sibling = await cloud.publish(await procfileApp(SIBLING), { name: 'sibling' });
  assert.equal((await cloud.visit(sibling)).body, 'sibling ok');
  const first = await cloud.visit(greedy);
  assert.equal(first.status, 200, first.body);

  // The sibling is asked through the gate back to back while the greedy one dies.
  let polling = true;
  const failures: string[] = [];
  let answers = 0;
  const poller = (async () => {
    while (polling) {
      const r = await cloud.visit(sibling).catch((e: unknown) => ({ status: 0, body: String(e) }));
      if (r.status === 200 && r.body === 'sibling ok') answers++;
      else failures.push(`${r.status} ${r.body}`);
      await new Promise((res) => setTimeout(res, 20));
    }
  })();
  try {
    assert.equal((await cloud.visit(greedy, '/eat')).status, 200);
    const view = await until('the greedy app to be killed', async () => {
      const v = await show(greedy);
      return !v.isRunning && v.lastError ? v : null;
    }, 60_000);
    assert.equal(view.lastError, 'killed: out of memory (limit 128 MiB) (crashed; restarts on the next request)');
    assert.equal(view.state, 'asleep');
  } finally {
    polling = false;
    await poller;
  }
  assert.deepEqual(failures, [], 'the sibling answered every request');
  assert.ok(answers > 0);
  assert.equal((await show(sibling)).isRunning, true);

  const log = await cloud.api('GET', `/v1/instances/${greedy}/logs`);
  assert.match(log.text, /eating\n/);
  assert.match(log.text, /killed: out of memory \(limit 128 MiB\)/);

  const again = await cloud.visit(greedy);
  assert.equal(again.status, 200, again.body);
  assert.notEqual(again.body, first.body, 'served by a new process');
  assert.equal((await show(greedy)).lastError, null);
});

test('eph serve names the cgroup mode on its start-up line, and refuses a bad --plan-limits with one line', { skip, timeout: 60_000 }, async () => {
  const root = mkdtempSync(join(tmpdir(), 'eph-limits-serve-'));
  chmodSync(root, 0o755);
  const iso = driverIsolation('m');
  const run = (extra: string[]) => {
    const child = spawn(
      process.execPath,
      ['bin/eph.js', 'serve', '--data', join(root, 'data'), '--api', '127.0.0.1:0', '--gate', '127.0.0.1:0', '--domain', 'eph.test', ...extra],
      { env: { ...process.env, EPH_NETNS_PREFIX: iso.prefix, EPH_SUBNET: iso.subnet }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let err = '';
    child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    started.push({ child, exited });
    return { child, exited, err: () => err };
  };
  const started: { child: ReturnType<typeof spawn>; exited: Promise<number | null> }[] = [];
  try {
    const bad = run(['--plan-limits', 'standard:memory=lots']);
    const deadline = new Promise<string>((r) => setTimeout(() => r('still running after 30 s'), 30_000).unref());
    assert.equal(await Promise.race([bad.exited, deadline]), 1);
    assert.match(bad.err(), /^eph: --plan-limits memory: expected a size like 50MB, got 'lots'\n$/);

    const good = run(['--plan-limits', 'free:memory=256MiB,pids=64']);
    try {
      const line = await until('the isolation line', () => /ephemeric: isolation: .*\n/.exec(good.err())?.[0], 30_000);
      const mode = cgroups!.mode === 'v2' ? 'cgroup v2 at ' : 'cgroup v1 \\(memory';
      assert.match(line, new RegExp(`limits: ${mode}`));
    } finally {
      good.child.kill('SIGTERM');
      await good.exited;
    }
  } finally {
    for (const s of started) {
      if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
      await s.exited;
    }
    rmSync(root, { recursive: true, force: true });
  }
});
