// Issue 8 item 5, tried as the attacker: someone who runs as the redis or
// postgres account (a compromised server) owns the appliance's directory and
// puts links there where the cloud, running as root, writes (redis.conf,
// server.pid, the restore's temporary file). The cloud must replace the link,
// never write or chown through it: the root-owned target stays as it was.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { findPgBin, findRedisServer, onPath } from '../../src/appliances/binaries.ts';
import { makePrivateDir, resolveRunAs } from '../../src/appliances/run-as.ts';
import type { RunAs } from '../../src/appliances/run-as.ts';
import { startCloudFixture } from '../cli/cloud.fixtures.ts';
import type { CloudFixture } from '../cli/cloud.fixtures.ts';
import { waitFor } from '../tunnel/fixtures.ts';

function missing(): string | false {
  if (process.getuid?.() !== 0) return 'needs root: the cloud switches to the redis/postgres accounts only as root';
  if (!onPath('ln') || !onPath('sh')) return 'coreutils (ln) is not installed';
  try {
    findRedisServer();
  } catch {
    return 'redis-server (Debian package redis-server) is not installed';
  }
  try {
    findPgBin();
  } catch {
    return 'PostgreSQL server binaries (Debian package postgresql) are not installed';
  }
  for (const account of ['redis', 'postgres']) {
    if (spawnSync('id', ['-u', account]).status !== 0) return `the ${account} account does not exist (created by its Debian package)`;
  }
  return false;
}
const SKIP = missing();

const cleanups: (() => unknown)[] = [];
let fx: CloudFixture;
let auth: string;
let victims: string;
const loops: ChildProcess[] = [];

before(async () => {
  if (SKIP) return;
  fx = await startCloudFixture((fn) => void cleanups.push(fn));
  auth = `Basic ${Buffer.from(`${fx.env.EPH_USER}:${fx.env.EPH_TOKEN}`).toString('base64')}`;
  victims = mkdtempSync(join(tmpdir(), `eph-victims-${process.pid}-`));
  // Searchable (not readable) by the accounts: the attacker makes links and a directory in here.
  chmodSync(victims, 0o711);
  cleanups.push(() => rmSync(victims, { recursive: true, force: true }));
});
after(async () => {
  for (const l of loops) stopLoop(l);
  for (const c of cleanups.reverse()) await c();
});

async function api(method: string, path: string, body?: Buffer): Promise<{ status: number; text: string; buf: Buffer }> {
  const res = await fetch(`${fx.cloud.apiUrl}${path}`, {
    method,
    headers: { authorization: auth, ...(body ? { 'content-type': 'application/octet-stream' } : {}), ...(method === 'POST' && !body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: new Uint8Array(body) } : method === 'POST' ? { body: '{}' } : {}),
  });
  const buf = Buffer.from(await res.arrayBuffer());
  return { status: res.status, text: buf.toString(), buf };
}

async function create(kind: string, name: string): Promise<void> {
  const r = await fetch(`${fx.cloud.apiUrl}/v1/appliances`, {
    method: 'POST',
    headers: { authorization: auth, 'content-type': 'application/json' },
    body: JSON.stringify({ kind, name }),
  });
  assert.equal(r.status, 201, await r.text());
}

/** A root-owned 0600 file with known content, outside the appliance: what the attacker aims at. */
function victim(name: string): { path: string; check(): void } {
  const path = join(victims, name);
  writeFileSync(path, `root's ${name}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
  return {
    path,
    check(): void {
      const st = lstatSync(path);
      assert.ok(st.isFile(), `${name} is still a plain file`);
      assert.equal(readFileSync(path, 'utf8'), `root's ${name}\n`, `${name}: content changed`);
      assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [0, 0, 0o600], `${name}: owner or mode changed`);
    },
  };
}

function applianceDir(name: string): string {
  return join(fx.dir, 'data', 'appliances', fx.user.id, name);
}

/** Runs `command` as the account, like the attacker would. */
function asAccount(who: RunAs, command: string, args: string[]): void {
  const r = spawnSync(command, args, { uid: who.uid, gid: who.gid, encoding: 'utf8' });
  assert.equal(r.status, 0, `${command} ${args.join(' ')} as ${who.name}: ${r.stderr}`);
}

/**
 * As the account, keeps `link` a symbolic link to `target` (ln -sfn in a
 * loop): whenever the cloud removes it, it comes back, as an attacker's
 * process would do while the cloud (re)starts the server.
 */
async function keepLinking(who: RunAs, target: string, link: string): Promise<ChildProcess> {
  const loop = spawn('sh', ['-c', 'while :; do ln -sfn "$1" "$2" 2>/dev/null; sleep 0.01; done', 'sh', target, link], {
    uid: who.uid,
    gid: who.gid,
    detached: true,
    stdio: 'ignore',
  });
  loops.push(loop);
  await waitFor(`the link ${link}`, () => {
    try {
      return lstatSync(link).isSymbolicLink();
    } catch {
      return false;
    }
  }, 30_000);
  return loop;
}

function stopLoop(loop: ChildProcess): void {
  try {
    if (loop.pid) process.kill(-loop.pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}

test('redis: redis.conf replaced by a link to a root file; stop + start through the API leave the target unchanged', { skip: SKIP }, async () => {
  const redis = resolveRunAs(['redis']);
  await create('redis', 'cache');
  const conf = victim('conf');
  assert.equal((await api('POST', '/v1/appliances/cache/stop')).status, 200);
  asAccount(redis, 'ln', ['-sfn', conf.path, join(applianceDir('cache'), 'redis.conf')]);
  const started = await api('POST', '/v1/appliances/cache/start');
  assert.equal(started.status, 200, started.text);
  assert.equal(JSON.parse(started.text).status, 'running');
  conf.check();
  // The cloud wrote its own file in place of the link, the redis account's and private.
  const st = lstatSync(join(applianceDir('cache'), 'redis.conf'));
  assert.ok(st.isFile());
  assert.deepEqual([st.uid, st.mode & 0o777], [redis.uid, 0o600]);
});

test('redis: server.pid kept a link to a root file while the cloud restarts the server; the target is unchanged', { skip: SKIP }, async () => {
  const redis = resolveRunAs(['redis']);
  const pid = victim('pid');
  assert.equal((await api('POST', '/v1/appliances/cache/stop')).status, 200);
  const loop = await keepLinking(redis, pid.path, join(applianceDir('cache'), 'server.pid'));
  try {
    const started = await api('POST', '/v1/appliances/cache/start');
    assert.equal(started.status, 200, started.text);
    pid.check();
    assert.equal((await api('POST', '/v1/appliances/cache/stop')).status, 200);
    pid.check();
  } finally {
    stopLoop(loop);
  }
  const again = await api('POST', '/v1/appliances/cache/start');
  assert.equal(again.status, 200, again.text);
  pid.check();
});

test("redis: restore's temporary file pre-made as a link to a root file; restore writes its own file, the target is unchanged", { skip: SKIP }, async () => {
  const redis = resolveRunAs(['redis']);
  const part = victim('part');
  const backup = await api('GET', '/v1/appliances/cache/backup');
  assert.equal(backup.status, 200, backup.text);
  asAccount(redis, 'ln', ['-sfn', part.path, join(applianceDir('cache'), 'restore.rdb.part')]);
  const restored = await api('POST', '/v1/appliances/cache/restore', backup.buf);
  assert.equal(restored.status, 200, restored.text);
  part.check();
});

test('postgres: server.pid kept a link to a root file while the cloud restarts the server; the target is unchanged', { skip: SKIP }, async () => {
  const postgres = resolveRunAs(['postgres']);
  await create('postgres', 'db');
  const pid = victim('pgpid');
  assert.equal((await api('POST', '/v1/appliances/db/stop')).status, 200);
  const loop = await keepLinking(postgres, pid.path, join(applianceDir('db'), 'server.pid'));
  try {
    const started = await api('POST', '/v1/appliances/db/start');
    assert.equal(started.status, 200, started.text);
    pid.check();
  } finally {
    stopLoop(loop);
  }
  assert.equal((await api('POST', '/v1/appliances/db/stop')).status, 200);
  pid.check();
});

test("a private subdirectory whose name the account made a link to a root directory: refused, the root directory's owner unchanged", { skip: SKIP }, async () => {
  const postgres = resolveRunAs(['postgres']);
  const rootDir = join(victims, 'rootdir');
  mkdirSync(rootDir, { mode: 0o700 });
  const home = join(victims, 'home');
  await makePrivateDir(home, postgres);
  asAccount(postgres, 'ln', ['-sfn', rootDir, join(home, 'run')]);
  await assert.rejects(makePrivateDir(join(home, 'run'), postgres), /is not a directory/);
  const st = lstatSync(rootDir);
  assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [0, 0, 0o700]);
});

/** Every regular file below `dir` (links are not followed). */
function filesBelow(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...filesBelow(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

test('secrets at rest: appliance directories are 0700 of their account, and no file in them holds a password in clear', { skip: SKIP }, async () => {
  for (const [name, account] of [['cache', 'redis'], ['db', 'postgres']] as const) {
    const who = resolveRunAs([account]);
    const st = lstatSync(applianceDir(name));
    assert.deepEqual([st.uid, st.mode & 0o777], [who.uid, 0o700], `${name}: directory owner and mode`);
    const password = (await fx.cloud.appliances.get(fx.user, name)).settings.password;
    assert.ok(password && password.length >= 16);
    const files = filesBelow(applianceDir(name));
    assert.ok(files.length > 0);
    for (const f of files) assert.ok(!readFileSync(f).includes(password), `${f} holds the ${name} password in clear`);
  }
  const conf = lstatSync(join(applianceDir('cache'), 'redis.conf'));
  assert.deepEqual([conf.uid, conf.mode & 0o777], [resolveRunAs(['redis']).uid, 0o600]);
});
