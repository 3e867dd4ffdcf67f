import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import type { ApplianceRecord } from '../../src/core/types.ts';
import { startPskClient } from '../../src/tunnel/psk-client.ts';
import { generatePskKey } from '../../src/tunnel/psk-file.ts';
import type { Cloud } from './fixtures.ts';
import { startCloud, tunnelTo } from './fixtures.ts';

const cleanups: (() => unknown)[] = [];
const shared = { after: (fn: () => unknown): void => void cleanups.push(fn) };
let cloud: Cloud;
let rec: ApplianceRecord;

before(async () => {
  cloud = await startCloud(shared);
  // A static appliance: the cheapest kind with a real service behind its endpoint.
  rec = await cloud.appliances.create(cloud.user, 'static', 'files');
  const files = await cloud.appliances.staticFiles(cloud.user, 'files');
  const { Readable } = await import('node:stream');
  await files.put('ping.txt', Readable.from(['pong\n']), true);
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** GET /ping.txt through a client tunnel using `identity:key`; null when the tunnel is refused. */
async function ping(identity: string, key: string): Promise<string | null> {
  const client = await startPskClient({ local: { host: '127.0.0.1', port: 0 }, remote: { host: '127.0.0.1', port: rec.publicPort }, identity, key });
  try {
    const res = await request(`http://127.0.0.1:${client.address.port}/ping.txt`, { headersTimeout: 5000 });
    return await res.body.text();
  } catch {
    return null;
  } finally {
    await client.close();
  }
}

test('the first identity made at creation works at once', async () => {
  const [identity, key] = Object.entries(rec.psk)[0]!;
  assert.equal(identity, 'files-client');
  assert.match(key, /^[0-9a-f]{64}$/);
  assert.equal(await ping(identity, key), 'pong\n');
  assert.deepEqual(await cloud.appliances.pskIdentities(cloud.user, 'files'), ['files-client']);
});

test('a malformed psk.txt is rejected with its line number and changes nothing', async () => {
  const text = `# laptop\nlaptop:${generatePskKey()}\nphone:short\n`;
  await assert.rejects(cloud.appliances.setPsk(cloud.user, 'files', text), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'INVALID_VALUE');
    assert.match(e.message, /^psk\.txt line 3: /);
    return true;
  });
  await assert.rejects(cloud.appliances.setPsk(cloud.user, 'files', 'no colon here\n'), /psk\.txt line 1: expected IDENTITY:KEY/);
  assert.deepEqual(await cloud.appliances.pskIdentities(cloud.user, 'files'), ['files-client']);
});

test('replacing identities: revoked ones are refused on the next connection and cut when live; new ones work', { timeout: 20_000 }, async () => {
  const [oldId, oldKey] = Object.entries(rec.psk)[0]!;
  // A live connection of the identity about to be revoked.
  const tunnel = await tunnelTo(shared, rec);
  const live = connect(tunnel.address.port, '127.0.0.1');
  const closed = new Promise<void>((r) => live.once('close', () => r()));
  live.on('error', () => undefined);
  await new Promise<void>((r) => live.once('connect', () => r()));
  live.write('GET /ping.txt HTTP/1.1\r\nHost: x\r\n\r\n');
  await new Promise<void>((r) => live.once('data', () => r()));

  const asciiKey = 'a long enough ascii key';
  const hexKey = generatePskKey();
  const ids = await cloud.appliances.setPsk(cloud.user, 'files', `laptop:${hexKey}\nci:${asciiKey}\n`);
  assert.deepEqual(ids, ['laptop', 'ci']);
  await closed;
  assert.equal(await ping(oldId, oldKey), null);
  assert.equal(await ping('laptop', hexKey), 'pong\n');
  assert.equal(await ping('ci', asciiKey), 'pong\n');
  assert.equal(await ping('ci', 'a wrong but long ascii key'), null);
  // Persisted: another service over the same store accepts exactly the new ones.
  const stored = await cloud.store.getAppliance(cloud.user.id, 'files');
  assert.deepEqual(stored?.psk, { laptop: hexKey, ci: asciiKey });
});

test('stunnel.conf has exactly the documented shape, with the kind\'s default local port', async () => {
  const conf = await cloud.appliances.stunnelConf(cloud.user, 'files');
  assert.equal(conf, `[files]\nclient = yes\naccept = 127.0.0.1:8000\nconnect = 127.0.0.1:${rec.publicPort}\nPSKsecrets = psk.txt\n`);
});

test('names and kinds are checked; duplicates are 409; another user gets 404', async () => {
  for (const bad of ['Files', '1st', 'a_b', 'x'.repeat(32), '']) {
    await assert.rejects(cloud.appliances.create(cloud.user, 'static', bad), { code: 'INVALID_VALUE' });
  }
  await assert.rejects(cloud.appliances.create(cloud.user, 'mysql', 'db'), /expected one of postgres, redis, static, mongo/);
  await assert.rejects(cloud.appliances.create(cloud.user, 'static', 'files'), { code: 'CONFLICT' });
  await assert.rejects(cloud.appliances.setPsk(cloud.other, 'files', `x:${generatePskKey()}\n`), { code: 'NOT_FOUND' });
  await assert.rejects(cloud.appliances.stunnelConf(cloud.other, 'files'), { code: 'NOT_FOUND' });
  await assert.rejects(cloud.appliances.remove(cloud.other, 'files'), { code: 'NOT_FOUND' });
});
