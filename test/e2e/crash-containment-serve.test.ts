import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { buildZip } from '../helpers/archives.ts';
import { driverIsolation } from '../helpers/driver-isolation.ts';
import { STANDIN_VM } from '../helpers/cloud.ts';

/**
 * Issue 15 item 3: real `eph serve` processes on one data directory. The
 * second refuses to start with one line naming the first's pid and a non-zero
 * exit, before its start-up recovery could touch the first's instances; after
 * kill -9 of the first, the lock is gone with it and the next start succeeds.
 */
const ISOLATION = driverIsolation('l');
// The server on another data directory needs a prefix of its own: its start-up recovery deletes every namespace of its prefix.
const OTHER = driverIsolation('l');
const root = mkdtempSync(join(tmpdir(), 'eph-lock-'));
chmodSync(root, 0o755);
const data = join(root, 'data');
const children = new Set<ChildProcess>();

after(async () => {
  const killed = [...children].filter((c) => c.exitCode === null && c.signalCode === null);
  for (const c of killed) c.kill('SIGKILL');
  await Promise.all(killed.map((c) => new Promise((r) => c.once('exit', r))));
  // A server killed here leaves its spare namespaces behind.
  if (process.getuid?.() === 0 && spawnSync('ip', ['netns', 'list']).status === 0) {
    for (const line of execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n')) {
      const ns = line.split(' ')[0]!;
      if (ns.startsWith(`${ISOLATION.prefix}-`) || ns.startsWith(`${OTHER.prefix}-`)) spawnSync('ip', ['netns', 'delete', ns]);
    }
  }
  rmSync(root, { recursive: true, force: true });
});

function eph(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['bin/eph.js', ...args], { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
  });
}

interface Run {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
  /** The start-up summary, or null when the process exited first. */
  up: Promise<{ api: string; gate: string } | null>;
}

function serve(dataDir: string, iso = ISOLATION): Run {
  const child = spawn(
    process.execPath,
    ['bin/eph.js', 'serve', '--data', dataDir, '--api', '127.0.0.1:0', '--gate', '127.0.0.1:0', '--domain', 'eph.test', '--json'],
    { env: { ...process.env, EPH_PHARO_VM: STANDIN_VM, EPH_NETNS_PREFIX: iso.prefix, EPH_SUBNET: iso.subnet }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.add(child);
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  const up = new Promise<{ api: string; gate: string } | null>((resolve) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      // The summary line, printed once the signal handlers are in place (the log's "is up" line may come first).
      for (const line of out.split('\n').slice(0, -1)) {
        const j = JSON.parse(line) as { api?: string; gate?: string; msg?: string };
        if (j.api && j.gate && j.msg === undefined) resolve({ api: j.api, gate: j.gate });
      }
    });
    void exited.then(() => resolve(null));
  });
  return { child, exited, stderr: () => err, up };
}

async function started(run: Run): Promise<{ api: string; gate: string }> {
  const s = await run.up;
  assert.ok(s, `eph serve did not start: ${run.stderr()}`);
  return s;
}

const agent = new Agent();
async function visit(gate: string, host: string): Promise<{ status: number; body: string }> {
  const r = await request(`${gate}/`, { headers: { host }, dispatcher: agent });
  return { status: r.statusCode, body: await r.body.text() };
}

test('a second eph serve on the same data directory refuses with one line and leaves the first untouched; after kill -9 of the first the next one starts', { timeout: 180_000 }, async () => {
  const alice = JSON.parse(await eph(['users', 'add', 'alice', '--plan', 'standard', '--json', '--data', data])) as { userID: string; authToken: string };
  const first = serve(data);
  const a = await started(first);
  const auth = `Basic ${Buffer.from(`${alice.userID}:${alice.authToken}`).toString('base64')}`;
  const pub = await request(`${a.api}/api/ephemerics/user/${alice.userID}`, {
    method: 'POST',
    headers: { authorization: auth, 'content-type': 'application/zip', 'x-name': 'app.zip' },
    body: await buildZip('examples/node-app'),
    dispatcher: agent,
  });
  const host = JSON.parse(await pub.body.text()) as string;
  assert.equal(pub.statusCode, 200, host);
  assert.equal((await visit(a.gate, host)).status, 200);

  const second = serve(data);
  assert.equal(await second.up, null, 'the second server must not start');
  const { code } = await second.exited;
  assert.notEqual(code, 0);
  const lines = second.stderr().trim().split('\n');
  assert.equal(lines.length, 1, second.stderr());
  assert.match(lines[0]!, new RegExp(`^eph: data directory \\S+ is in use by another eph serve \\(pid ${first.child.pid}\\)`));
  // The refused server's start-up recovery did not run: the first one's instance still answers.
  assert.equal((await visit(a.gate, host)).status, 200);
  assert.equal(first.child.exitCode, null);

  // Another data directory is not held by the first.
  const other = serve(join(root, 'other'), OTHER);
  await started(other);
  other.child.kill('SIGTERM');
  assert.deepEqual(await other.exited, { code: 0, signal: null }, other.stderr());
  assert.equal((await visit(a.gate, host)).status, 200, 'the first server still serves');

  // kill -9: no clean-up ran, yet the lock went with the process.
  first.child.kill('SIGKILL');
  await first.exited;
  const third = serve(data);
  const c = await started(third);
  assert.equal((await visit(c.gate, host)).status, 200, 'the instance wakes under the new server');
  third.child.kill('SIGTERM');
  assert.equal((await third.exited).code, 0, third.stderr());
});
