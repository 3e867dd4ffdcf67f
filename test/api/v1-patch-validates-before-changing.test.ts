import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { buildZip } from '../helpers/archives.ts';
import { startTestCloud, type TestCloud, type TestUser } from '../helpers/cloud.ts';

/**
 * `PATCH /v1/instances/<host>` changes several properties at once: a refused
 * field must leave every other one unchanged. Each case sets a valid alias
 * next to the bad field, then reads the alias back through the other API
 * (the compatibility API), so that a half-applied PATCH cannot go unseen.
 */
let cloud: TestCloud;
let zip: Buffer;

before(async () => {
  cloud = await startTestCloud();
  zip = await buildZip('examples/node-app');
});
after(() => cloud?.close());

async function compatAlias(hostname: string, user: TestUser = cloud.alice): Promise<unknown> {
  const r = await cloud.api('GET', `${cloud.compatBase(user)}/${hostname}/alias`, { user });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

async function refused(hostname: string, body: unknown, status: number, code: string, user: TestUser = cloud.alice): Promise<void> {
  const r = await cloud.api('PATCH', `/v1/instances/${hostname}`, { user, body });
  assert.equal(r.status, status, r.text);
  assert.equal((r.json as { error: { code: string } }).error.code, code);
}

test('an unknown field is refused (400) and nothing changes', async () => {
  const h = await cloud.publish(zip, { name: 'before' });
  await refused(h, { alias: 'unknown-field.example.org', colour: 'red' }, 400, 'BAD_REQUEST');
  await refused(h, { imageName: 'after', isRunning: true }, 400, 'BAD_REQUEST');
  assert.equal(await compatAlias(h), null);
  const v = (await cloud.api('GET', `/v1/instances/${h}`)).json as { imageName: string; state: string };
  assert.equal(v.imageName, 'before');
  assert.equal(v.state, 'asleep');
});

test('a bad running value leaves the alias unchanged', async () => {
  const h = await cloud.publish(zip);
  for (const running of ['yes', 1, null, 'true']) {
    await refused(h, { alias: 'bad-running.example.org', running }, 400, 'INVALID_VALUE');
  }
  assert.equal(await compatAlias(h), null);
});

test('an over-long or empty imageName leaves the alias unchanged', async () => {
  const h = await cloud.publish(zip);
  await refused(h, { alias: 'long-name.example.org', imageName: 'x'.repeat(201) }, 400, 'INVALID_VALUE');
  await refused(h, { alias: 'long-name.example.org', imageName: '' }, 400, 'INVALID_VALUE');
  assert.equal(await compatAlias(h), null);
});

test("running: true past the plan's limit is refused before the alias changes", async () => {
  const frank = await cloud.addUser('frank', 'free');
  const first = await cloud.publish(zip, { user: frank });
  const second = await cloud.publish(zip, { user: frank });
  const on = await cloud.api('PATCH', `/v1/instances/${first}`, { user: frank, body: { running: true } });
  assert.equal(on.status, 200, on.text);
  try {
    await refused(second, { alias: 'over-quota.example.org', running: true }, 409, 'QUOTA_EXCEEDED', frank);
    assert.equal(await compatAlias(second, frank), null);
    // The same PATCH without running is fine.
    const ok = await cloud.api('PATCH', `/v1/instances/${second}`, { user: frank, body: { alias: 'over-quota.example.org' } });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(await compatAlias(second, frank), 'over-quota.example.org');
  } finally {
    await cloud.api('PATCH', `/v1/instances/${first}`, { user: frank, body: { running: false } });
  }
});

test('a valid PATCH changes every field it names, seen through the compatibility API', async () => {
  const h = await cloud.publish(zip);
  const r = await cloud.api('PATCH', `/v1/instances/${h}`, { body: { alias: 'patched.example.org', imageName: 'Patched' } });
  assert.equal(r.status, 200, r.text);
  assert.equal(await compatAlias(h), 'patched.example.org');
  assert.equal((await cloud.api('GET', `${cloud.compatBase()}/${h}/imageName`)).json, 'Patched');
});
