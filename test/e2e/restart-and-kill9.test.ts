import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { buildZip } from '../helpers/archives.ts';
import { driverIsolation } from '../helpers/driver-isolation.ts';
import { STANDIN_VM, until } from '../helpers/cloud.ts';
import { netnsUnavailableReason } from '../../src/runtime/process/process-driver.ts';

/**
 * The real `eph serve` as a child process: after kill -9 its instances die
 * with it (bubblewrap --die-with-parent), and the next start on the same data
 * dir repairs everything (instances asleep, no leftover namespace, pid records
 * or half-written uploads) and wakes them again on request. A clean restart
 * (SIGTERM) keeps users, instances and aliases.
 *
 * The server gets a namespace prefix and subnet of this process's own
 * (EPH_NETNS_PREFIX, EPH_SUBNET): its start-up recovery removes every
 * namespace of its prefix, and must not touch a real cloud's or another test's.
 */
const ISOLATION = driverIsolation('k');
const root = mkdtempSync(join(tmpdir(), 'eph-restart-'));
chmodSync(root, 0o755);
const data = join(root, 'data');
const children = new Set<ChildProcess>();

after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

function eph(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['bin/eph.js', ...args], { encoding: 'utf8', timeout: 20_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
  });
}

interface Server {
  child: ChildProcess;
  api: string;
  gate: string;
  agent: Agent;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
}

async function serve(apiPort: number, gatePort: number): Promise<Server> {
  const child = spawn(
    process.execPath,
    ['bin/eph.js', 'serve', '--data', data, '--api', `127.0.0.1:${apiPort}`, '--gate', `127.0.0.1:${gatePort}`, '--domain', 'eph.test', '--idle-timeout', '30m', '--json'],
    { env: { ...process.env, EPH_PHARO_VM: STANDIN_VM, EPH_NETNS_PREFIX: ISOLATION.prefix, EPH_SUBNET: ISOLATION.subnet }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.add(child);
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  const summary = await new Promise<{ api: string; gate: string }>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`eph serve did not start within 20 s: ${err}`)), 20_000);
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(JSON.parse(out.slice(0, nl)) as { api: string; gate: string });
      }
    });
    void exited.then(({ code }) => reject(new Error(`eph serve exited with ${code}: ${err}`)));
  });
  return { child, api: summary.api, gate: summary.gate, agent: new Agent(), exited, stderr: () => err };
}

interface Creds {
  userID: string;
  authToken: string;
}

async function call(s: Server, who: Creds, method: 'GET' | 'POST' | 'PUT', path: string, body?: Buffer | string, headers: Record<string, string> = {}) {
  const r = await request(`${s.api}/api/ephemerics/user/${who.userID}${path}`, {
    method,
    dispatcher: s.agent,
    headers: { authorization: `Basic ${Buffer.from(`${who.userID}:${who.authToken}`).toString('base64')}`, ...headers },
    ...(body !== undefined ? { body } : {}),
  });
  const text = await r.body.text();
  return { status: r.statusCode, json: JSON.parse(text) as unknown, text };
}

async function visit(s: Server, host: string) {
  const r = await request(`${s.gate}/`, { headers: { host }, dispatcher: s.agent });
  return { status: r.statusCode, body: await r.body.text() };
}

const nsOf = (hostname: string) => `${ISOLATION.prefix}-${hostname.slice(4, 12)}`;
const namespaces = () => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0]!).filter(Boolean);
const pidsIn = (ns: string): number[] => {
  try {
    return execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
  } catch {
    return [];
  }
};
/** Running or sleeping; a zombie (dead, waiting for init to reap it) does not count. */
const alive = (pid: number): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
};

const noNetns = netnsUnavailableReason();
const skip = noNetns === null ? false : `network namespaces unavailable here (${noNetns})`;
let s: Server;
let alice: Creds;
let h: string;
let sleeper: string;
let ns: string;
let ports: [number, number];

test('kill -9 of eph serve: the running instance dies with it (bubblewrap --die-with-parent)', { skip, timeout: 30_000 }, async () => {
  ports = [await freePort(), await freePort()];
  alice = JSON.parse(await eph(['users', 'add', 'alice', '--plan', 'standard', '--json', '--data', data])) as Creds;
  const zip = await buildZip('examples/node-app');

  s = await serve(...ports);
  const pub = await call(s, alice, 'POST', '', zip, { 'content-type': 'application/zip', 'x-name': 'node-app.zip' });
  assert.equal(pub.status, 200, pub.text);
  h = pub.json as string;
  sleeper = (await call(s, alice, 'POST', '', zip, { 'content-type': 'application/zip', 'x-name': 'sleeper.zip' })).json as string;
  assert.equal((await call(s, alice, 'PUT', `/${h}/alias`, '"www.restart.example"', { 'content-type': 'application/json' })).status, 200);
  assert.equal((await call(s, alice, 'PUT', `/${h}/isRunning`, 'true', { 'content-type': 'application/json' })).json, true);
  assert.equal((await visit(s, 'www.restart.example')).body, 'hello from node-app\n');

  ns = nsOf(h);
  assert.ok(namespaces().includes(ns), `namespace ${ns} exists while the instance runs`);
  const appPids = pidsIn(ns);
  assert.ok(appPids.length > 0, 'the app runs in its namespace');
  assert.ok(readdirSync(join(data, 'run')).some((f) => f.startsWith(ns)), 'a pid record is kept for recovery');

  s.child.kill('SIGKILL');
  assert.deepEqual(await s.exited, { code: null, signal: 'SIGKILL' });
  await s.agent.close();
  await until('the app processes to die with the server', () => appPids.every((p) => !alive(p)), 5000);
  // What a crash leaves: the namespace (nobody deleted it) and, say, a half-written upload.
  assert.ok(namespaces().includes(ns), 'the namespace outlives the killed server');
  writeFileSync(join(data, 'tmp', 'intake-crashed-upload.part'), Buffer.alloc(4096, 1));
});

test('the next start on the same data dir repairs: instances listed asleep, no leftover namespace, tmp or pid files; a request wakes it', { skip, timeout: 30_000 }, async () => {
  s = await serve(...ports);
  const list = (await call(s, alice, 'GET', '')).json as { ephemerics: { hostname: string; isRunning: boolean; alias: string | null }[] };
  const byHost = new Map(list.ephemerics.map((e) => [e.hostname, e]));
  assert.equal(byHost.get(h)?.isRunning, false);
  assert.equal(byHost.get(h)?.alias, 'www.restart.example');
  assert.equal(byHost.get(sleeper)?.isRunning, false);
  assert.equal(namespaces().includes(ns), false, 'the old namespace was removed at start-up');
  assert.deepEqual(readdirSync(join(data, 'tmp')), [], 'no leftover tmp files');
  assert.deepEqual(readdirSync(join(data, 'run')), [], 'no leftover pid records');

  const woken = await visit(s, h);
  assert.equal(woken.status, 200);
  assert.equal(woken.body, 'hello from node-app\n');
  assert.equal((await call(s, alice, 'GET', `/${h}/isRunning`)).json, true);
});

test('a clean restart (SIGTERM) stops the instances and keeps users, instances and aliases', { skip, timeout: 30_000 }, async () => {
  const pids = pidsIn(ns);
  assert.ok(pids.length > 0, 'running before the stop');
  s.child.kill('SIGTERM');
  assert.deepEqual(await s.exited, { code: 0, signal: null }, s.stderr());
  await s.agent.close();
  assert.ok(pids.every((p) => !alive(p)), 'a clean stop stops the instances');
  assert.equal(namespaces().includes(ns), false, 'and removes their namespaces');

  s = await serve(...ports);
  const again = (await call(s, alice, 'GET', '')).json as { ephemerics: { hostname: string; isRunning: boolean; alias: string | null; imageName: string }[] };
  assert.deepEqual(
    again.ephemerics.map((e) => [e.hostname, e.alias, e.imageName, e.isRunning]).sort(),
    [
      [h, 'www.restart.example', 'node-app.zip', false],
      [sleeper, null, 'sleeper.zip', false],
    ].sort(),
    'the same credentials work; instances and aliases are kept',
  );
  assert.equal((await visit(s, 'www.restart.example')).body, 'hello from node-app\n', 'the alias still routes and wakes');
  s.child.kill('SIGTERM');
  assert.equal((await s.exited).code, 0);
  await s.agent.close();
});
