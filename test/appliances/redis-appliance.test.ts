import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { Readable } from 'node:stream';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ApplianceRecord } from '../../src/core/types.ts';
import { findRedisServer, onPath } from '../../src/appliances/binaries.ts';
import { waitFor } from '../tunnel/fixtures.ts';
import type { Cloud } from './fixtures.ts';
import { listeningAddresses, startCloud, tunnelTo } from './fixtures.ts';

let NO_REDIS: string | false = false;
try {
  findRedisServer();
  if (!onPath('redis-cli')) NO_REDIS = 'redis-cli (redis-tools) is not installed';
} catch {
  NO_REDIS = 'redis-server is not installed';
}

const cleanups: (() => unknown)[] = [];
const shared = { after: (fn: () => unknown): void => void cleanups.push(fn) };
let cloud: Cloud;
let rec: ApplianceRecord;

/** redis-cli through a fresh client tunnel; the password from the URL, via REDISCLI_AUTH (not argv). */
async function cli(r: ApplianceRecord, url: string, ...args: string[]): Promise<string> {
  const tunnel = await tunnelTo(shared, r);
  // The appliance's URL as given, only the port moved to this test's tunnel.
  const u = new URL(url);
  u.port = String(tunnel.address.port);
  return new Promise((resolve, reject) => {
    const child = spawn('redis-cli', ['-u', u.href, '--no-auth-warning', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out.trim());
      else reject(new Error(`redis-cli exited ${code}: ${err}`));
    });
  });
}

before(async () => {
  if (NO_REDIS) return;
  cloud = await startCloud(shared);
  rec = await cloud.appliances.create(cloud.user, 'redis', 'cache');
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

test('create redis: running, password in the url, bound to 127.0.0.1 only', { skip: NO_REDIS }, () => {
  const v = cloud.appliances.view(rec);
  assert.equal(v.status, 'running');
  assert.match(v.url, /^redis:\/\/default:[A-Za-z0-9_-]{32}@127\.0\.0\.1:6379\/0$/);
  assert.deepEqual(listeningAddresses(rec.port), ['127.0.0.1']);
  assert.deepEqual(listeningAddresses(rec.publicPort), ['127.0.0.1']);
});

test('SET and GET through the TLS-PSK tunnel with redis-cli', { skip: NO_REDIS }, async () => {
  const url = cloud.appliances.view(rec).url;
  assert.equal(await cli(rec, url, 'SET', 'greeting', 'hello through the tunnel'), 'OK');
  assert.equal(await cli(rec, url, 'GET', 'greeting'), 'hello through the tunnel');
});

test('a client without the password is refused by redis itself', { skip: NO_REDIS }, async () => {
  const out = await cli(rec, 'redis://default:wrong@127.0.0.1:6379/0', 'GET', 'greeting').catch((e: Error) => e.message);
  assert.match(out, /WRONGPASS|NOAUTH|invalid/i);
});

test("the tenant cannot change the platform's settings: CONFIG, DEBUG, MODULE, REPLICAOF, MIGRATE, ACL, SHUTDOWN are refused (redis-cli through the tunnel)", { skip: NO_REDIS }, async () => {
  const url = cloud.appliances.view(rec).url;
  // Another tenant's appliance: its public port is what an attacker would try to take.
  const victim = await cloud.appliances.create(cloud.other, 'static', 'victim');
  const attempts: string[][] = [
    ['CONFIG', 'SET', 'port', String(victim.publicPort)],
    ['CONFIG', 'SET', 'bind', '0.0.0.0'],
    ['CONFIG', 'SET', 'protected-mode', 'no'],
    ['CONFIG', 'SET', 'dir', '/'],
    ['CONFIG', 'SET', 'dbfilename', 'authorized_keys'],
    ['CONFIG', 'GET', '*'],
    ['CONFIG', 'REWRITE'],
    ['DEBUG', 'SLEEP', '0'],
    ['MODULE', 'LOAD', '/tmp/evil.so'],
    ['REPLICAOF', '127.0.0.1', String(victim.publicPort)],
    ['SLAVEOF', '127.0.0.1', String(victim.publicPort)],
    ['MIGRATE', '127.0.0.1', String(victim.publicPort), 'k', '0', '1000'],
    ['ACL', 'SETUSER', 'default', '+@all'],
    ['ACL', 'SETUSER', 'eph-platform', 'on', '>mine'],
    ['SHUTDOWN', 'NOSAVE'],
    ['MONITOR'],
  ];
  for (const args of attempts) {
    const out = await cli(rec, url, ...args);
    // DEBUG and MODULE are also switched off in redis.conf, which Redis checks before the ACL.
    assert.match(out, /^(NOPERM |ERR (DEBUG|MODULE) command not allowed)/, `${args.join(' ')} answered ${JSON.stringify(out)}`);
  }
  // Still where the platform put it, and a tenant's ordinary work goes on.
  assert.deepEqual(listeningAddresses(rec.port), ['127.0.0.1']);
  assert.equal(await cli(rec, url, 'SET', 'after', 'still mine'), 'OK');
  assert.equal(await cli(rec, url, 'GET', 'after'), 'still mine');
  assert.equal(await cli(rec, url, 'SAVE'), 'OK');
  assert.equal(await cli(rec, url, 'ACL', 'WHOAMI'), 'default');
  const victimView = await cloud.appliances.get(cloud.other, 'victim');
  assert.equal(victimView.status, 'running');
  await cloud.appliances.stop(cloud.other, 'victim');
  assert.equal((await cloud.appliances.start(cloud.other, 'victim')).status, 'running');
  await cloud.appliances.remove(cloud.other, 'victim');
});

test('redis.conf is 0600, owned by the server account, and holds no password in clear', { skip: NO_REDIS }, () => {
  const conf = join(cloud.dir, 'appliances', cloud.user.id, 'cache', 'redis.conf');
  const st = statSync(conf);
  assert.equal(st.mode & 0o777, 0o600);
  if (process.getuid?.() === 0) assert.equal(st.uid, Number(execFileSync('id', ['-u', 'redis'], { encoding: 'utf8' }).trim()));
  const text = readFileSync(conf, 'utf8');
  assert.ok(!text.includes(String(rec.settings.password)), 'the tenant password is in clear');
  assert.doesNotMatch(text, /requirepass/);
  assert.match(text, /^user default reset on #[0-9a-f]{64} /m);
});

test('data survives stop and start (append-only file)', { skip: NO_REDIS }, async () => {
  const url = cloud.appliances.view(rec).url;
  assert.equal(await cli(rec, url, 'RPUSH', 'list', 'a', 'b', 'c'), '3');
  await cloud.appliances.stop(cloud.user, 'cache');
  assert.deepEqual(listeningAddresses(rec.port), []);
  rec = await cloud.appliances.start(cloud.user, 'cache');
  assert.equal(await cli(rec, url, 'LRANGE', 'list', '0', '-1'), 'a\nb\nc');
  assert.equal(await cli(rec, url, 'GET', 'greeting'), 'hello through the tunnel');
});

test('backup is an RDB file; restore replaces the data and survives a restart', { skip: NO_REDIS }, async () => {
  const url = cloud.appliances.view(rec).url;
  const { stream, filename } = await cloud.appliances.backup(cloud.user, 'cache');
  assert.equal(filename, 'cache.rdb');
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  const rdb = Buffer.concat(chunks);
  assert.equal(rdb.subarray(0, 5).toString(), 'REDIS');
  await cli(rec, url, 'FLUSHALL');
  await cli(rec, url, 'SET', 'later', 'gone after restore');
  await cloud.appliances.restore(cloud.user, 'cache', Readable.from([rdb]));
  assert.equal(await cli(rec, url, 'GET', 'greeting'), 'hello through the tunnel');
  assert.equal(await cli(rec, url, 'EXISTS', 'later'), '0');
  // The append-only file was rebuilt from the restored data: it survives a stop.
  await cloud.appliances.stop(cloud.user, 'cache');
  rec = await cloud.appliances.start(cloud.user, 'cache');
  assert.equal(await cli(rec, url, 'LRANGE', 'list', '0', '-1'), 'a\nb\nc');
});

test('restore refuses what is not an RDB file and keeps the data', { skip: NO_REDIS }, async () => {
  const url = cloud.appliances.view(rec).url;
  await assert.rejects(cloud.appliances.restore(cloud.user, 'cache', Readable.from([Buffer.from('not redis at all')])), { code: 'INVALID_VALUE' });
  assert.equal(await cli(rec, url, 'GET', 'greeting'), 'hello through the tunnel');
});

test('a server that dies on its own marks the appliance failed with its reason; start brings it back', { skip: NO_REDIS }, async () => {
  const pid = Number(readFileSync(join(cloud.dir, 'appliances', cloud.user.id, 'cache', 'server.pid'), 'utf8'));
  process.kill(pid, 'SIGKILL');
  let failed: ApplianceRecord | undefined;
  const deadline = Date.now() + 10_000;
  while (failed?.status !== 'failed') {
    assert.ok(Date.now() < deadline, 'the crash was not recorded within 10 s');
    await new Promise((r) => setTimeout(r, 20));
    failed = await cloud.appliances.get(cloud.user, 'cache');
  }
  assert.match(failed.lastError ?? '', /^the redis server exited unexpectedly/);
  assert.deepEqual(listeningAddresses(rec.publicPort), []);
  await assert.rejects(cloud.appliances.backup(cloud.user, 'cache'), { code: 'CONFLICT' });
  rec = await cloud.appliances.start(cloud.user, 'cache');
  assert.equal(rec.lastError, null);
  assert.equal(await cli(rec, cloud.appliances.view(rec).url, 'GET', 'greeting'), 'hello through the tunnel');
});

test('data survives a restart of the cloud', { skip: NO_REDIS }, async () => {
  await cloud.appliances.close();
  await waitFor('redis to stop', () => listeningAddresses(rec.port).length === 0);
  const again = await cloud.restart();
  const reloaded = await again.get(cloud.user, 'cache');
  assert.equal(reloaded.status, 'running');
  assert.equal(await cli(reloaded, again.view(reloaded).url, 'GET', 'greeting'), 'hello through the tunnel');
  await again.remove(cloud.user, 'cache');
  assert.deepEqual(listeningAddresses(reloaded.port), []);
});
