import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { buildZip } from '../helpers/archives.ts';
import { startTestCloud, type TestCloud, type TestUser } from '../helpers/cloud.ts';

/**
 * One user never sees, starts, stops, renames, aliases or deletes another
 * user's instance: the answer is 404 exactly as for a host that does not
 * exist (existence is not revealed), and another user's alias is a 409.
 */
let cloud: TestCloud;
let alice: TestUser;
let bob: TestUser;
let a: string;
let b: string;
const ALIAS = 'www.alice-shop.example';

before(async () => {
  cloud = await startTestCloud();
  const zip = await buildZip('examples/node-app');
  alice = cloud.alice;
  bob = await cloud.addUser('bob');
  a = await cloud.publish(zip, { user: alice, name: 'alice-app' });
  b = await cloud.publish(zip, { user: bob, name: 'bob-app' });
  const r = await cloud.api('PUT', `${cloud.compatBase(alice)}/${a}/alias`, { user: alice, body: ALIAS });
  assert.equal(r.status, 200, r.text);
});
after(() => cloud?.close());

type ErrorBody = { error: { code: string; message: string } };

/** A 404 that says no more than the one for a host that never existed. */
async function assertHidden(method: 'GET' | 'PUT' | 'PATCH' | 'POST' | 'DELETE', path: (host: string) => string, host: string, body?: unknown): Promise<void> {
  const init = { user: bob, ...(body !== undefined ? { body } : {}) };
  const theirs = await cloud.api(method, path(host), init);
  const ghost = 'eph-00000000.eph.test';
  const none = await cloud.api(method, path(ghost), init);
  assert.equal(theirs.status, 404, `${method} ${path(host)}: ${theirs.text}`);
  assert.equal(none.status, 404, none.text);
  const e1 = (theirs.json as ErrorBody).error;
  const e2 = (none.json as ErrorBody).error;
  assert.equal(e1.code, 'NOT_FOUND');
  assert.equal(e1.code, e2.code);
  assert.equal(e1.message.replace(host, 'HOST'), e2.message.replace(ghost, 'HOST'), 'same message as for a host that does not exist');
}

for (const [label, host] of [
  ['hostname', () => a],
  ['alias', () => ALIAS],
] as const) {
  test(`compat API: B gets 404 on GET/PUT/DELETE of A's instance by ${label}`, async () => {
    const base = (h: string) => `${cloud.compatBase(bob)}/${h}`;
    await assertHidden('GET', base, host());
    await assertHidden('GET', (h) => `${base(h)}/isRunning`, host());
    await assertHidden('GET', (h) => `${base(h)}/colour`, host());
    await assertHidden('PUT', (h) => `${base(h)}/isRunning`, host(), true);
    await assertHidden('PUT', (h) => `${base(h)}/alias`, host(), 'stolen.example');
    await assertHidden('PUT', (h) => `${base(h)}/imageName`, host(), 'stolen');
    await assertHidden('DELETE', base, host());
  });

  test(`/v1 API: B gets 404 on show/patch/start/stop/logs/delete of A's instance by ${label}`, async () => {
    const base = (h: string) => `/v1/instances/${h}`;
    await assertHidden('GET', base, host());
    await assertHidden('PATCH', base, host(), { imageName: 'stolen' });
    await assertHidden('POST', (h) => `${base(h)}/start`, host());
    await assertHidden('POST', (h) => `${base(h)}/stop`, host());
    await assertHidden('GET', (h) => `${base(h)}/logs`, host());
    await assertHidden('DELETE', base, host());
  });
}

test("A's instance is untouched by all of that: not started, same name and alias", async () => {
  const r = await cloud.api('GET', `${cloud.compatBase(alice)}/${a}`, { user: alice });
  assert.equal(r.status, 200);
  const i = r.json as { isRunning: boolean; imageName: string; alias: string | null };
  assert.deepEqual({ isRunning: i.isRunning, imageName: i.imageName, alias: i.alias }, { isRunning: false, imageName: 'alice-app', alias: ALIAS });
  assert.equal(cloud.driver.isRunning(a), false);
});

test("B cannot take A's alias (409) and A keeps it", async () => {
  const r = await cloud.api('PUT', `${cloud.compatBase(bob)}/${b}/alias`, { user: bob, body: ALIAS });
  assert.equal(r.status, 409, r.text);
  assert.equal((r.json as ErrorBody).error.code, 'CONFLICT');
  const v1 = await cloud.api('PATCH', `/v1/instances/${b}`, { user: bob, body: { alias: ALIAS } });
  assert.equal(v1.status, 409, v1.text);
  assert.equal((await cloud.api('GET', `${cloud.compatBase(alice)}/${a}/alias`, { user: alice })).json, ALIAS);
  assert.equal((await cloud.api('GET', `${cloud.compatBase(bob)}/${b}/alias`, { user: bob })).json, null);
});

test("B cannot use A's hostname as an alias either (409)", async () => {
  const r = await cloud.api('PUT', `${cloud.compatBase(bob)}/${b}/alias`, { user: bob, body: a });
  assert.equal(r.status, 409, r.text);
});

test("B's lists do not show A's instance (compat and /v1)", async () => {
  const compat = await cloud.api('GET', cloud.compatBase(bob), { user: bob });
  assert.deepEqual(
    (compat.json as { ephemerics: { hostname: string }[] }).ephemerics.map((e) => e.hostname),
    [b],
  );
  const v1 = await cloud.api('GET', '/v1/instances', { user: bob });
  assert.deepEqual(
    (v1.json as { instances: { hostname: string }[] }).instances.map((e) => e.hostname),
    [b],
  );
  const mine = await cloud.api('GET', cloud.compatBase(alice), { user: alice });
  assert.deepEqual(
    (mine.json as { ephemerics: { hostname: string }[] }).ephemerics.map((e) => e.hostname),
    [a],
  );
});

test("B's credentials on A's user path are 401 (Basic and ?auth=)", async () => {
  const basic = await cloud.api('GET', cloud.compatBase(alice), { user: bob });
  assert.equal(basic.status, 401, basic.text);
  assert.equal((basic.json as ErrorBody).error.code, 'UNAUTHORIZED');
  const q = await cloud.api('GET', `${cloud.compatBase(alice)}?auth=${bob.token}`, { user: null });
  assert.equal(q.status, 401, q.text);
  const put = await cloud.api('PUT', `${cloud.compatBase(alice)}/${a}/isRunning`, { user: bob, body: true });
  assert.equal(put.status, 401, put.text);
  const del = await cloud.api('DELETE', `${cloud.compatBase(alice)}/${a}`, { user: bob });
  assert.equal(del.status, 401, del.text);
  const post = await cloud.api('POST', cloud.compatBase(alice), { user: bob, body: Buffer.from('x'), headers: { 'content-type': 'application/zip' } });
  assert.equal(post.status, 401, post.text);
  assert.equal(cloud.driver.isRunning(a), false);
  assert.equal((await cloud.api('GET', `${cloud.compatBase(alice)}/${a}`, { user: alice })).status, 200, 'still there');
});

test("B cannot map a gate domain to A's instance (404) nor take A's alias as a gate domain", async () => {
  const map = await cloud.api('PUT', '/v1/gate/routes/bob.example', { user: bob, body: { hostname: a, skipHealth: true } });
  assert.equal(map.status, 404, map.text);
  assert.equal((map.json as ErrorBody).error.code, 'NOT_FOUND');
  const steal = await cloud.api('PUT', `/v1/gate/routes/${ALIAS}`, { user: bob, body: { hostname: b, skipHealth: true } });
  assert.equal(steal.status, 409, steal.text);
  assert.equal((await cloud.api('GET', '/v1/gate/routes', { user: bob })).text.includes(a), false);
});

test("control: A can do all of it to A's own instance", async () => {
  const on = await cloud.api('PUT', `${cloud.compatBase(alice)}/${ALIAS}/isRunning`, { user: alice, body: true });
  assert.equal(on.status, 200, on.text);
  assert.equal((await cloud.visit(ALIAS)).status, 200);
  const del = await cloud.api('DELETE', `${cloud.compatBase(alice)}/${a}`, { user: alice });
  assert.equal(del.status, 200, del.text);
  // Now the alias is free for B.
  const r = await cloud.api('PUT', `${cloud.compatBase(bob)}/${b}/alias`, { user: bob, body: ALIAS });
  assert.equal(r.status, 200, r.text);
});
