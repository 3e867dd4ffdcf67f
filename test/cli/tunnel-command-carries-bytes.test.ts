import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { startPskEndpoint } from '../../src/tunnel/psk-server.ts';
import { startEcho } from '../tunnel/fixtures.ts';
import { startRecordedApi } from './recorded-api.ts';
import { outputWatcher, spawnEph, stopChild } from './run-eph.ts';

const KEY = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff';

/** Sends `payload` through host:port, returns what came back once the far side ends. */
function roundTrip(port: number, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port }, () => s.end(payload));
    const got: Buffer[] = [];
    s.on('data', (c: Buffer) => got.push(c));
    s.on('close', () => resolve(Buffer.concat(got)));
    // A refused tunnel cuts the local connection: that is an answer too (no bytes).
    s.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? undefined : reject(e)));
    s.setTimeout(10_000, () => s.destroy(new Error('round trip timed out')));
  });
}

/** A real TLS-PSK endpoint (ours) before a TCP echo, announced by a recorded-shape appliance API. */
async function setUp(t: TestContext) {
  const echo = await startEcho(t);
  const ep = await startPskEndpoint({
    listen: { host: '127.0.0.1', port: 0 },
    target: { host: '127.0.0.1', port: echo.port },
    identities: () => new Map([['laptop', KEY]]),
  });
  t.after(() => ep.close());
  const api = await startRecordedApi(t);
  api.on('GET /v1/appliances/mydb', () => ({
    json: { name: 'mydb', kind: 'postgres', status: 'running', public: `127.0.0.1:${ep.address.port}`, url: 'postgres://eph_mydb:pw@127.0.0.1:5432/mydb' },
  }));
  const dir = await mkdtemp(join(tmpdir(), 'eph-cli-tunnel-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return { echo, ep, api, dir };
}

test('eph tunnel carries bytes to the appliance endpoint over TLS-PSK and stops cleanly on SIGTERM (recorded-shape API server, real endpoint)', async (t) => {
  const { echo, ep, api, dir } = await setUp(t);
  const psk = join(dir, 'psk.txt');
  await writeFile(psk, `laptop:${KEY}\n`);
  const child = spawnEph(['tunnel', 'mydb', '--local', '127.0.0.1:0', '--psk', psk, '--json'], { env: api.env });
  t.after(() => stopChild(child, 'SIGKILL'));
  const out = outputWatcher(child.stdout);
  const line = (await out.waitFor(/^\{.*\}\n/))[0];
  const info = JSON.parse(line) as { local: string; remote: string; identity: string; url: string };
  assert.equal(info.remote, `127.0.0.1:${ep.address.port}`);
  assert.equal(info.identity, 'laptop');
  const port = Number(info.local.split(':').pop());
  assert.equal(info.url, `postgres://eph_mydb:pw@127.0.0.1:${port}/mydb`, 'the client URL points at the tunnel');

  const payload = Buffer.alloc(256 * 1024, 'pg');
  const [a, b] = await Promise.all([roundTrip(port, payload), roundTrip(port, Buffer.from('second connection'))]);
  assert.ok(a.equals(payload), 'bytes came back unchanged through the tunnel');
  assert.equal(b.toString(), 'second connection');
  assert.equal(echo.bytes(), payload.length + 'second connection'.length);

  const end = await stopChild(child, 'SIGTERM');
  assert.deepEqual(end, { code: 0, signal: null }, 'SIGTERM closes the tunnel and exits 0');
});

test('eph tunnel with a wrong key: local connections are closed and the refusal is reported on stderr (recorded-shape API server, real endpoint)', async (t) => {
  const { echo, api, dir } = await setUp(t);
  const psk = join(dir, 'psk.txt');
  await writeFile(psk, `laptop:${'ff'.repeat(32)}\n`);
  const child = spawnEph(['tunnel', 'mydb', '--local', '127.0.0.1:0', '--psk', psk, '--json'], { env: api.env });
  t.after(() => stopChild(child, 'SIGKILL'));
  const info = JSON.parse((await outputWatcher(child.stdout).waitFor(/^\{.*\}\n/))[0]) as { local: string };
  const back = await roundTrip(Number(info.local.split(':').pop()), Buffer.from('hello?'));
  assert.equal(back.length, 0);
  assert.equal(echo.accepted(), 0, 'nothing reached the service');
  await outputWatcher(child.stderr).waitFor(/^eph: tunnel mydb: .+\n/m);
  assert.equal(child.exitCode, null, 'the tunnel keeps running for the next connection');
});

test('eph tunnel refuses a malformed psk.txt before contacting anything', async (t) => {
  const { api, dir } = await setUp(t);
  const psk = join(dir, 'psk.txt');
  await writeFile(psk, 'laptop\n');
  const child = spawnEph(['tunnel', 'mydb', '--psk', psk], { env: api.env });
  const err = outputWatcher(child.stderr);
  const end = await new Promise<number | null>((r) => child.once('close', (code) => r(code)));
  assert.equal(end, 1);
  assert.equal(err.text(), 'eph: psk.txt line 1: expected IDENTITY:KEY with a key of at least 16 characters\n');
  assert.deepEqual(api.requests, []);
});
