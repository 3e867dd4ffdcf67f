import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { procfileApp, startTestCloud, type TestCloud, type TestUser } from '../helpers/cloud.ts';
import { startTxtDnsServer, type TxtDnsServer } from './txt-dns-server.ts';

// `eph serve --verify-domains` with EPH_DNS_SERVERS pointed at a tiny DNS server on loopback: the
// cloud's real resolver asks it for `_ephemeric.<domain>` TXT records.
let dns: TxtDnsServer;
let cloud: TestCloud;
let bob: TestUser;
let inst: string;
let bobInst: string;
type ErrorBody = { error: { code: string; message: string } };
type Verification = { domain: string; record: string; type: string; value: string | null; required: boolean; verified: boolean | null };

before(async () => {
  dns = await startTxtDnsServer();
  cloud = await startTestCloud({ verifyDomains: true }, { env: { EPH_DNS_SERVERS: dns.address } });
  bob = await cloud.addUser('bob');
  const app = await procfileApp('process.exit(0)\n');
  inst = await cloud.publish(app);
  bobInst = await cloud.publish(app, { user: bob });
});
after(async () => {
  await cloud?.close();
  await dns?.close();
});

async function verification(domain: string, user?: TestUser): Promise<Verification> {
  const r = await cloud.api('GET', `/v1/names/${domain}/verification`, user ? { user } : {});
  assert.equal(r.status, 200, r.text);
  return r.json as Verification;
}

test('an unproven domain is refused with 403 naming the TXT record, on both APIs, and nothing changes', async () => {
  const want = await verification('www.proof.test');
  assert.equal(want.required, true);
  assert.equal(want.verified, false);
  assert.equal(want.record, '_ephemeric.www.proof.test');
  const v1 = await cloud.api('PATCH', `/v1/instances/${inst}`, { body: { alias: 'WWW.Proof.Test.' } });
  assert.equal(v1.status, 403, v1.text);
  assert.equal((v1.json as ErrorBody).error.code, 'FORBIDDEN');
  assert.ok((v1.json as ErrorBody).error.message.includes(`_ephemeric.www.proof.test with the value ${want.value}`), v1.text);
  const compat = await cloud.api('PUT', `${cloud.compatBase()}/${inst}/alias`, { body: 'www.proof.test' });
  assert.equal(compat.status, 403, compat.text);
  const route = await cloud.api('PUT', '/v1/gate/routes/www.proof.test', { body: { hostname: inst, skipHealth: true } });
  assert.equal(route.status, 403, route.text);
  assert.equal((await cloud.api('GET', `${cloud.compatBase()}/${inst}/alias`)).json, null);
  assert.equal(cloud.table.get('www.proof.test'), undefined);
  assert.ok(dns.queries.includes('_ephemeric.www.proof.test'), 'the cloud asked DNS');
});

test('once the record holds the value the API showed, the claim passes; another user with the same record does not', async () => {
  const want = await verification('www.proof.test');
  dns.records.set(want.record, [[want.value!]]);
  assert.equal((await verification('www.proof.test')).verified, true);
  const r = await cloud.api('PATCH', `/v1/instances/${inst}`, { body: { alias: 'www.proof.test' } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(cloud.table.get('www.proof.test')?.targets, [{ hostname: inst, weight: 1 }]);
  // Bob sees another value for the same domain; alice's record does not prove it for him.
  const his = await verification('www.proof.test', bob);
  assert.notEqual(his.value, want.value);
  assert.equal(his.verified, false);
  // Alice holds it now: 409 whatever DNS says.
  const stolen = await cloud.api('PATCH', `/v1/instances/${bobInst}`, { user: bob, body: { alias: 'www.proof.test' } });
  assert.equal(stolen.status, 409, stolen.text);
});

test("a parent domain's record (with the parent's value) proves the names under it, for gate routes too", async () => {
  const route = await cloud.api('PUT', '/v1/gate/routes/api.parent.test', { body: { hostname: inst, skipHealth: true } });
  assert.equal(route.status, 403, route.text);
  const parent = await verification('parent.test');
  dns.records.set(parent.record, [[parent.value!]]);
  const again = await cloud.api('PUT', '/v1/gate/routes/api.parent.test', { body: { hostname: inst, skipHealth: true } });
  assert.equal(again.status, 200, again.text);
  assert.deepEqual(cloud.table.get('api.parent.test')?.targets, [{ hostname: inst, weight: 100 }]);
});

test('the verification endpoint refuses platform names, localhost and IP literals like claims do', async () => {
  assert.equal((await cloud.api('GET', '/v1/names/x.eph.test/verification')).status, 409);
  assert.equal((await cloud.api('GET', '/v1/names/localhost/verification')).status, 400);
  assert.equal((await cloud.api('GET', '/v1/names/127.0.0.1/verification')).status, 400);
  assert.equal((await cloud.api('GET', '/v1/names/www.proof.test/verification', { user: null })).status, 401);
});
