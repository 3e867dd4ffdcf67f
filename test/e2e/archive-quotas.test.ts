import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { zipFrom } from '../helpers/archives.ts';
import { startTestCloud, until, type ApiAnswer, type TestCloud, type TestUser } from '../helpers/cloud.ts';

/**
 * Per-plan limits at publish (issue 8 items 10 and 13), through both APIs:
 * the number of instances a user may have (409 INSTANCE_QUOTA_EXCEEDED),
 * the archive bytes their instances may keep (413 STORAGE_QUOTA_EXCEEDED),
 * also when two publishes race, and the 200-character imageName. A refused
 * publish stores nothing: no instance, no image, archive or metadata.
 */
let cloud: TestCloud;

before(async () => {
  cloud = await startTestCloud({
    plans: 'free=1,standard=10,duo=5,tiny=5,pair=5',
    planQuotas: 'free:instances=2;duo:instances=1;tiny:storage=300000,instances=50;pair:storage=200000',
  });
});
after(() => cloud?.close());

const PROCFILE = { name: 'Procfile', data: 'web: node server.js\n' };
/** A distinct app archive of about `bytes` bytes (stored, random padding). */
const appOf = (bytes: number): Promise<Buffer> => zipFrom([PROCFILE, { name: 'pad.bin', data: randomBytes(bytes), store: true }]);

type Api = 'compat' | 'v1';
function publish(api: Api, user: TestUser, archive: Buffer, name = 'app.zip'): Promise<ApiAnswer> {
  const headers = { 'content-type': 'application/zip', 'x-name': name };
  return cloud.api('POST', api === 'compat' ? cloud.compatBase(user) : '/v1/instances', { user, body: archive, headers });
}
const ok = (api: Api, r: ApiAnswer): void => assert.equal(r.status, api === 'compat' ? 200 : 201, r.text);
const storedFiles = (): string[] => readdirSync(join(cloud.dataDir, 'images')).sort();
const instancesOf = async (user: TestUser): Promise<number> => ((await cloud.api('GET', '/v1/instances', { user })).json as { instances: unknown[] }).instances.length;

type ErrorBody = { error: { code: string; message: string } };
function refused(r: ApiAnswer, status: number, code: string, message: RegExp): void {
  assert.equal(r.status, status, r.text);
  const err = (r.json as ErrorBody).error;
  assert.equal(err.code, code);
  assert.match(err.message, message);
}

test('instances per user: past the plan limit a publish is 409 naming plan and limit on both APIs, nothing stored; a delete makes room', async () => {
  const bob = await cloud.addUser('bob', 'free');
  const first = await publish('compat', bob, await appOf(1000));
  ok('compat', first);
  ok('v1', await publish('v1', bob, await appOf(1000)));
  const stored = storedFiles();
  for (const api of ['compat', 'v1'] as const) {
    const over = await publish(api, bob, await appOf(1000));
    refused(over, 409, 'INSTANCE_QUOTA_EXCEEDED', /plan 'free' allows 2 instances per user/);
  }
  assert.deepEqual(storedFiles(), stored, 'no image, archive or metadata of the refused publishes');
  assert.equal(await instancesOf(bob), 2);

  const gone = await cloud.api('DELETE', `/v1/instances/${first.json as string}`, { user: bob });
  assert.ok(gone.status === 200 || gone.status === 204, gone.text);
  ok('v1', await publish('v1', bob, await appOf(1000)));
  assert.equal(await instancesOf(bob), 2);
});

test('stored bytes per user: a publish past the plan limit is 413 naming it on both APIs, nothing stored; a smaller one still fits', async () => {
  const carol = await cloud.addUser('carol', 'tiny');
  ok('compat', await publish('compat', carol, await appOf(120_000)));
  const stored = storedFiles();
  for (const api of ['compat', 'v1'] as const) {
    const over = await publish(api, carol, await appOf(200_000));
    refused(over, 413, 'STORAGE_QUOTA_EXCEEDED', /plan 'tiny' allows 300000 bytes of stored archives per user \(1\d{5} in use\)/);
  }
  // Far past the limit (but under the archive limit): refused while reading, not after.
  refused(await publish('v1', carol, await appOf(3_000_000)), 413, 'STORAGE_QUOTA_EXCEEDED', /300000 bytes/);
  assert.deepEqual(storedFiles(), stored, 'no image, archive or metadata of the refused publishes');
  assert.equal(await instancesOf(carol), 1);
  ok('v1', await publish('v1', carol, await appOf(100_000)));
  assert.equal(await instancesOf(carol), 2);
});

/**
 * Publish A passes the early checks and starts uploading (its scratch file
 * appears), then B publishes completely, then A finishes: the limits are
 * checked again when A is recorded, so A is refused.
 */
async function race(user: TestUser, a: Buffer, b: Buffer): Promise<{ first: ApiAnswer; second: ApiAnswer }> {
  const tmp = join(cloud.dataDir, 'tmp');
  const scratch = (): string[] => readdirSync(tmp).filter((n) => n.startsWith('intake-') && n.endsWith('.archive'));
  let release = (): void => {};
  const released = new Promise<void>((r) => (release = r));
  async function* slow(): AsyncGenerator<Buffer> {
    yield a.subarray(0, 1000);
    await released;
    yield a.subarray(1000);
  }
  const already = scratch().length;
  const firstP = cloud.api('POST', cloud.compatBase(user), { user, body: slow(), headers: { 'content-type': 'application/zip', 'x-name': 'a.zip' } });
  try {
    await until('the first upload to reach the image store', () => scratch().length > already, 30_000);
    const second = await publish('v1', user, b);
    release();
    return { first: await firstP, second };
  } finally {
    release();
    await firstP.catch(() => undefined);
  }
}

test('instances per user: a publish that passed the early check is refused when another took the last place meanwhile', async () => {
  const eve = await cloud.addUser('eve', 'duo');
  const stored = storedFiles();
  const { first, second } = await race(eve, await appOf(50_000), await appOf(50_000));
  ok('v1', second);
  refused(first, 409, 'INSTANCE_QUOTA_EXCEEDED', /plan 'duo' allows 1 instance per user/);
  assert.equal(await instancesOf(eve), 1);
  assert.equal(storedFiles().length, stored.length + 3, `only the winner's image, archive and metadata: ${storedFiles().join(', ')}`);
});

test('stored bytes per user: two publishes that fit alone but not together get one instance and one 413, the loser leaves nothing', async () => {
  const dave = await cloud.addUser('dave', 'pair');
  const stored = storedFiles();
  const { first, second } = await race(dave, await appOf(120_000), await appOf(120_000));
  ok('v1', second);
  refused(first, 413, 'STORAGE_QUOTA_EXCEEDED', /plan 'pair' allows 200000 bytes/);
  assert.equal(await instancesOf(dave), 1);
  assert.equal(storedFiles().length, stored.length + 3, `only the winner's image, archive and metadata: ${storedFiles().join(', ')}`);
});

test('imageName: 201 characters are refused at publish (X-Name on both APIs, ?name= on /v1) with nothing stored; 200 are kept', async () => {
  const stored = storedFiles();
  const before = await instancesOf(cloud.alice);
  const long = 'n'.repeat(201);
  for (const api of ['compat', 'v1'] as const) {
    refused(await publish(api, cloud.alice, await appOf(1000), long), 400, 'INVALID_VALUE', /imageName must be at most 200 characters, got 201/);
  }
  const viaQuery = await cloud.api('POST', `/v1/instances?name=${long}`, { body: await appOf(1000), headers: { 'content-type': 'application/zip' } });
  refused(viaQuery, 400, 'INVALID_VALUE', /at most 200 characters/);
  assert.deepEqual(storedFiles(), stored);
  assert.equal(await instancesOf(cloud.alice), before);

  const exact = 'é'.repeat(200);
  const r = await publish('v1', cloud.alice, await appOf(1000), encodeURIComponent(exact));
  ok('v1', r);
  const host = (r.json as { hostname: string }).hostname;
  const name = await cloud.api('GET', `${cloud.compatBase()}/${host}/imageName`);
  assert.equal(name.json, exact);
});

test('imageName: the publish service itself refuses 201 characters before reading a byte of the upload (whatever the caller)', async () => {
  const { Readable } = await import('node:stream');
  const body = Readable.from([await appOf(1000)]);
  const user = await cloud.users.authenticate(cloud.alice.id, cloud.alice.token);
  assert.ok(user);
  await assert.rejects(cloud.instances.publish(user, body, 'x'.repeat(201)), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'INVALID_VALUE');
    assert.match(e.message, /at most 200 characters, got 201/);
    return true;
  });
  assert.equal(body.readableFlowing, null, 'the upload was never read');
});
