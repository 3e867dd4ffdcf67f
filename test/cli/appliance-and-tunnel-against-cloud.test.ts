import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { onPath } from '../../src/appliances/binaries.ts';
import type { ApplianceView } from '../../src/cli/appliance-view.ts';
import { startCloudFixture } from './cloud.fixtures.ts';
import { eph, outputWatcher, spawnEph, stopChild } from './run-eph.ts';

/** Sends RESP commands through host:port and collects replies until `done` matches. */
function redisTalk(port: number, commands: string, done: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port }, () => s.write(commands));
    let got = '';
    s.setEncoding('utf8');
    s.on('data', (c: string) => {
      got += c;
      if (done.test(got)) {
        s.end();
        resolve(got);
      }
    });
    s.on('error', reject);
    s.on('close', () => reject(new Error(`closed after ${JSON.stringify(got)}`)));
    s.setTimeout(10_000, () => s.destroy(new Error(`no reply matching ${done}; got ${JSON.stringify(got)}`)));
  });
}

// Decided before the test runs, from the machine alone: the appliance needs redis-server.
const NO_REDIS = onPath('redis-server') || process.env.EPH_REDIS_SERVER ? false : 'redis-server is not installed (Debian package redis-server)';

test('appliance create, stunnel-conf, tunnel (RESP round trip through TLS-PSK), backup, restore, rm: redis on the real cloud', { skip: NO_REDIS }, async (t) => {
  const cleanups: (() => Promise<void>)[] = [];
  t.after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });
  const fx = await startCloudFixture((fn) => cleanups.push(fn));

  const pskFile = join(fx.dir, 'psk.txt');
  const created = await eph(['appliance', 'create', 'redis', 'cache', '--psk-file', pskFile, '--wait', '--json'], { env: fx.env, timeoutMs: 60_000 });
  assert.equal(created.code, 0, created.stderr);
  const a = JSON.parse(created.stdout) as ApplianceView & { psk: string };
  assert.equal(a.kind, 'redis');
  assert.equal(a.status, 'running');
  assert.match(a.public, /^[^:]+:\d+$/);
  assert.match(a.url, /^redis:\/\/default:[^@]+@127\.0\.0\.1:6379\/0$/);
  // The key file is the user's secret: readable by its owner only.
  assert.equal(statSync(pskFile).mode & 0o777, 0o600);

  const conf = await eph(['appliance', 'stunnel-conf', 'cache'], { env: fx.env });
  assert.equal(conf.code, 0, conf.stderr);
  assert.equal(conf.stdout, `[cache]\nclient = yes\naccept = 127.0.0.1:6379\nconnect = ${a.public}\nPSKsecrets = psk.txt\n`);

  const tunnel = spawnEph(['tunnel', 'cache', '--local', '127.0.0.1:0', '--psk', pskFile, '--json'], { env: fx.env });
  cleanups.push(async () => void (await stopChild(tunnel, 'SIGKILL')));
  const info = JSON.parse((await outputWatcher(tunnel.stdout).waitFor(/^\{.*\}\n/))[0]) as { local: string; url: string };
  const port = Number(info.local.split(':').pop());
  const password = decodeURIComponent(new URL(info.url).password);
  const auth = `*2\r\n$4\r\nAUTH\r\n$${Buffer.byteLength(password)}\r\n${password}\r\n`;
  const set = `*3\r\n$3\r\nSET\r\n$5\r\ngreet\r\n$5\r\nhello\r\n`;
  assert.equal(await redisTalk(port, `${auth}${set}*1\r\n$4\r\nSAVE\r\n`, /(\+OK\r\n){3}/), '+OK\r\n+OK\r\n+OK\r\n');

  const backup = await eph(['appliance', 'backup', 'cache'], { env: fx.env });
  assert.equal(backup.code, 0, backup.stderr);
  assert.equal(backup.stdoutBytes.subarray(0, 5).toString(), 'REDIS', 'an RDB file');

  assert.equal(await redisTalk(port, `${auth}*2\r\n$3\r\nDEL\r\n$5\r\ngreet\r\n`, /\+OK\r\n:1\r\n/), '+OK\r\n:1\r\n');
  const restored = await eph(['appliance', 'restore', 'cache'], { env: fx.env, input: backup.stdoutBytes, timeoutMs: 60_000 });
  assert.equal(restored.code, 0, restored.stderr);
  assert.equal(restored.stdout, 'restored cache\n');
  // The restore may restart the server: a new connection through the same tunnel reads the value back.
  assert.equal(await redisTalk(port, `${auth}*2\r\n$3\r\nGET\r\n$5\r\ngreet\r\n`, /\$5\r\nhello\r\n/), '+OK\r\n$5\r\nhello\r\n');
  assert.deepEqual(await stopChild(tunnel), { code: 0, signal: null });

  const removed = await eph(['appliance', 'rm', 'cache'], { env: fx.env, timeoutMs: 60_000 });
  assert.equal(removed.code, 0, removed.stderr);
  const ls = await eph(['appliance', 'ls', '--json'], { env: fx.env });
  assert.deepEqual(JSON.parse(ls.stdout), { appliances: [] });
});
