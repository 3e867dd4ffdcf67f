import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Store } from '../../src/store/store.ts';
import type { Instance, User } from '../../src/core/types.ts';
import { runRouteStoreConformance } from '../gate/route-store.conformance.ts';

/** What every Store back end must do; run by sqlite.test.ts and postgres.test.ts. */
export function runStoreConformance(name: string, makeStore: () => Promise<Store>): void {
  const user = (id: string): User => ({ id, name: `name-${id}`, plan: 'free', tokenHash: 'salt:hash', createdAt: 1_700_000_000_000 });
  const inst = (hostname: string, userId: string, digest = 'd1'): Instance => ({
    hostname,
    userId,
    imageDigest: digest,
    imageName: 'app.zip',
    alias: null,
    state: 'asleep',
    createdAt: 1_700_000_000_123,
    accessAt: 1_700_000_000_456,
    lastError: null,
    upstream: null,
  });
  const image = (digest: string) => ({ digest, size: 10, kind: 'procfile' as const, entry: 'node server.js', createdAt: 1 });

  test(`${name}: users round-trip and names are unique`, async (t) => {
    const s = await makeStore();
    t.after(() => s.close());
    await s.createUser(user('u1'));
    assert.deepEqual(await s.getUser('u1'), user('u1'));
    assert.deepEqual(await s.getUserByName('name-u1'), user('u1'));
    assert.equal(await s.getUser('nope'), null);
    await assert.rejects(s.createUser({ ...user('u2'), name: 'name-u1' }), { code: 'CONFLICT' });
    assert.equal((await s.listUsers()).length, 1);
  });

  test(`${name}: instances keep their fields, times as numbers`, async (t) => {
    const s = await makeStore();
    t.after(() => s.close());
    await s.createUser(user('u1'));
    await s.putImage(image('d1'));
    await s.putImage(image('d1')); // twice: stored once
    assert.equal((await s.listImages()).length, 1);
    await s.insertInstance(inst('eph-00000001.x', 'u1'));
    const got = await s.getInstance('eph-00000001.x');
    assert.deepEqual(got, inst('eph-00000001.x', 'u1'));
    await s.updateInstance('eph-00000001.x', { state: 'running', upstream: '10.0.0.2:8080', accessAt: 1_800_000_000_000 });
    const upd = await s.getInstance('eph-00000001.x');
    assert.equal(upd?.state, 'running');
    assert.equal(upd?.upstream, '10.0.0.2:8080');
    assert.equal(upd?.accessAt, 1_800_000_000_000);
    assert.equal(await s.imageRefs('d1'), 1);
  });

  test(`${name}: setting an alias held by another instance moves it`, async (t) => {
    const s = await makeStore();
    t.after(() => s.close());
    await s.createUser(user('u1'));
    await s.putImage(image('d1'));
    await s.insertInstance(inst('eph-00000001.x', 'u1'));
    await s.insertInstance(inst('eph-00000002.x', 'u1'));
    assert.deepEqual(await s.setAlias('eph-00000001.x', 'www.example.org'), { movedFrom: null });
    assert.equal((await s.findInstance('www.example.org'))?.hostname, 'eph-00000001.x');
    assert.deepEqual(await s.setAlias('eph-00000002.x', 'www.example.org'), { movedFrom: 'eph-00000001.x' });
    assert.equal((await s.getInstance('eph-00000001.x'))?.alias, null);
    assert.equal((await s.findInstance('www.example.org'))?.hostname, 'eph-00000002.x');
    await s.setAlias('eph-00000002.x', null);
    assert.equal(await s.findInstance('www.example.org'), null);
  });

  test(`${name}: deleting the last instance of an image reports it orphaned`, async (t) => {
    const s = await makeStore();
    t.after(() => s.close());
    await s.createUser(user('u1'));
    await s.putImage(image('d1'));
    await s.insertInstance(inst('eph-00000001.x', 'u1'));
    await s.insertInstance(inst('eph-00000002.x', 'u1'));
    assert.deepEqual(await s.deleteInstance('eph-00000001.x'), { imageOrphaned: false });
    assert.deepEqual(await s.deleteInstance('eph-00000002.x'), { imageOrphaned: true });
    assert.deepEqual(await s.deleteInstance('eph-00000002.x'), { imageOrphaned: false });
    assert.deepEqual(await s.listInstances('u1'), []);
  });

  test(`${name}: lists are per user`, async (t) => {
    const s = await makeStore();
    t.after(() => s.close());
    await s.createUser(user('u1'));
    await s.createUser(user('u2'));
    await s.putImage(image('d1'));
    await s.insertInstance(inst('eph-00000001.x', 'u1'));
    await s.insertInstance(inst('eph-00000002.x', 'u2'));
    assert.deepEqual((await s.listInstances('u1')).map((i) => i.hostname), ['eph-00000001.x']);
    assert.equal((await s.listInstances()).length, 2);
  });

  test(`${name}: appliances round-trip`, async (t) => {
    const s = await makeStore();
    t.after(() => s.close());
    await s.createUser(user('u1'));
    const a = {
      userId: 'u1',
      name: 'mydb',
      kind: 'postgres' as const,
      status: 'running' as const,
      port: 5433,
      publicPort: 15432,
      settings: { role: 'r', password: 'p' },
      psk: { alice: '0123456789abcdef0123' },
      lastError: null,
      createdAt: 1_700_000_000_000,
    };
    await s.putAppliance(a);
    assert.deepEqual(await s.getAppliance('u1', 'mydb'), a);
    await s.putAppliance({ ...a, status: 'stopped' });
    assert.equal((await s.getAppliance('u1', 'mydb'))?.status, 'stopped');
    assert.equal((await s.listAppliances('u1')).length, 1);
    await s.deleteAppliance('u1', 'mydb');
    assert.equal(await s.getAppliance('u1', 'mydb'), null);
  });

  test(`${name}: gate certificates round-trip, replace per domain, list per user`, async (t) => {
    const s = await makeStore();
    t.after(() => s.close());
    await s.createUser(user('u1'));
    await s.createUser(user('u2'));
    const c = { domain: 'www.example.org', userId: 'u1', cert: 'CERT-PEM', key: 'KEY-PEM', notAfter: 1_900_000_000_000, updatedAt: 1_700_000_000_000 };
    await s.putCert(c);
    await s.putCert({ ...c, domain: '*.example.net', userId: 'u2' });
    assert.deepEqual(await s.getCert('www.example.org'), c);
    await s.putCert({ ...c, cert: 'CERT2', updatedAt: 1_700_000_000_001 });
    assert.equal((await s.getCert('www.example.org'))?.cert, 'CERT2');
    assert.deepEqual((await s.listCerts('u1')).map((x) => x.domain), ['www.example.org']);
    assert.deepEqual((await s.listCerts()).map((x) => x.domain), ['*.example.net', 'www.example.org']);
    await s.deleteCert('www.example.org');
    assert.equal(await s.getCert('www.example.org'), null);
    assert.equal((await s.listCerts()).length, 1);
  });

  test(`${name}: automatic HTTPS: domains per user, a certificate installed with its status at once, challenges expire, the account`, async (t) => {
    const s = await makeStore();
    t.after(() => s.close());
    await s.createUser(user('u1'));
    await s.createUser(user('u2'));
    const a = { domain: 'www.example.org', userId: 'u1', status: 'pending' as const, lastError: null, failures: 0, nextAt: 1_700_000_000_000, updatedAt: 1_700_000_000_000 };
    await s.putAcmeDomain(a);
    await s.putAcmeDomain({ ...a, domain: 'shop.example.net', userId: 'u2', status: 'failed', lastError: 'order failed: refused', failures: 2 });
    assert.deepEqual(await s.getAcmeDomain('www.example.org'), a);
    assert.deepEqual((await s.listAcmeDomains('u2')).map((x) => [x.domain, x.status, x.lastError, x.failures]), [['shop.example.net', 'failed', 'order failed: refused', 2]]);
    const c = { domain: 'www.example.org', userId: 'u1', cert: 'CERT-PEM', key: 'KEY-PEM', notAfter: 1_900_000_000_000, updatedAt: 1_700_000_000_001 };
    await s.saveAcmeIssued(c, { ...a, status: 'valid', nextAt: 1_800_000_000_000 });
    assert.deepEqual(await s.getCert('www.example.org'), { ...c, source: 'acme' });
    assert.equal((await s.getAcmeDomain('www.example.org'))?.status, 'valid');
    await s.deleteAcmeDomain('www.example.org');
    assert.deepEqual((await s.listAcmeDomains()).map((x) => x.domain), ['shop.example.net']);
    await s.putAcmeChallenge({ token: 'old', keyAuthorization: 'old.k', expiresAt: 100 });
    await s.putAcmeChallenge({ token: 'tok', keyAuthorization: 'tok.k', expiresAt: 1_000 });
    await s.putAcmeChallenge({ token: 'next', keyAuthorization: 'next.k', expiresAt: 1_000 });
    assert.deepEqual(await s.getAcmeChallenge('tok'), { token: 'tok', keyAuthorization: 'tok.k', expiresAt: 1_000 });
    await s.deleteAcmeChallenge('tok', 500);
    assert.equal(await s.getAcmeChallenge('tok'), null);
    assert.equal(await s.getAcmeChallenge('old'), null, 'expired ones go too');
    assert.equal((await s.getAcmeChallenge('next'))?.keyAuthorization, 'next.k');
    assert.equal(await s.getAcmeAccount('https://acme.example/dir'), null);
    await s.putAcmeAccount({ directory: 'https://acme.example/dir', sealedKey: 'v1:sealed', url: null });
    await s.putAcmeAccount({ directory: 'https://acme.example/dir', sealedKey: 'v1:sealed', url: 'https://acme.example/acct/1' });
    assert.deepEqual(await s.getAcmeAccount('https://acme.example/dir'), { directory: 'https://acme.example/dir', sealedKey: 'v1:sealed', url: 'https://acme.example/acct/1' });
  });

  test(`${name}: config vars change several at once, per instance, and go with the instance`, async (t) => {
    const s = await makeStore();
    t.after(() => s.close());
    await s.createUser(user('u1'));
    await s.putImage(image('d1'));
    await s.insertInstance(inst('eph-00000001.x', 'u1'));
    await s.insertInstance(inst('eph-00000002.x', 'u1'));
    const v = (hostname: string, n: string, sealed: string, secret = false) => ({ hostname, name: n, sealed, secret, size: n.length + 5, updatedAt: 1_700_000_000_000 });
    await s.changeConfigVars('eph-00000001.x', [v('eph-00000001.x', 'B', 'v1:bb'), v('eph-00000001.x', 'A', 'v1:aa', true)], []);
    await s.changeConfigVars('eph-00000002.x', [v('eph-00000002.x', 'A', 'v1:other')], []);
    assert.deepEqual(await s.listConfigVars('eph-00000001.x'), [v('eph-00000001.x', 'A', 'v1:aa', true), v('eph-00000001.x', 'B', 'v1:bb')]);
    // Replace one, delete another, add a third: one transaction.
    await s.changeConfigVars('eph-00000001.x', [v('eph-00000001.x', 'A', 'v1:a2'), v('eph-00000001.x', 'C', 'v1:cc')], ['B', 'NOT_THERE']);
    assert.deepEqual((await s.listConfigVars('eph-00000001.x')).map((x) => [x.name, x.sealed, x.secret]), [['A', 'v1:a2', false], ['C', 'v1:cc', false]]);
    assert.deepEqual((await s.listConfigVars('eph-00000002.x')).map((x) => x.sealed), ['v1:other']);
    await s.deleteInstance('eph-00000001.x');
    assert.deepEqual(await s.listConfigVars('eph-00000001.x'), []);
    assert.equal((await s.listConfigVars('eph-00000002.x')).length, 1);
  });

  test(`${name}: an attachment and its config var are written and deleted together`, async (t) => {
    const s = await makeStore();
    t.after(() => s.close());
    await s.createUser(user('u1'));
    await s.putImage(image('d1'));
    await s.insertInstance(inst('eph-00000001.x', 'u1'));
    const a = { hostname: 'eph-00000001.x', userId: 'u1', appliance: 'mydb', varName: 'DATABASE_URL', identity: 'attach-1', sealedKey: 'v1:k', localPort: 5432, createdAt: 1_700_000_000_000 };
    const cv = { hostname: 'eph-00000001.x', name: 'DATABASE_URL', sealed: 'v1:url', secret: true, size: 40, updatedAt: 1_700_000_000_000 };
    await s.putAttachment(a, cv);
    assert.deepEqual(await s.listAttachments('eph-00000001.x'), [a]);
    assert.deepEqual(await s.listAttachments(), [a]);
    assert.deepEqual(await s.listConfigVars('eph-00000001.x'), [cv]);
    await assert.rejects(s.putAttachment(a, { ...cv, name: 'OTHER' }), { code: 'CONFLICT' });
    assert.deepEqual((await s.listConfigVars('eph-00000001.x')).map((x) => x.name), ['DATABASE_URL'], 'a refused attachment leaves no var');
    await s.deleteAttachment('eph-00000001.x', 'mydb');
    assert.deepEqual(await s.listAttachments(), []);
    assert.deepEqual(await s.listConfigVars('eph-00000001.x'), []);
    await s.putAttachment(a, cv);
    await s.deleteInstance('eph-00000001.x');
    assert.deepEqual(await s.listAttachments(), []);
  });

  runRouteStoreConformance(name, async () => {
    const s = await makeStore();
    // Routes reference users: the suite uses arbitrary user ids, so relax nothing but create them on demand.
    const save = s.saveRoute.bind(s);
    s.saveRoute = async (domain, route, change) => {
      if (route && !(await s.getUser(route.userId))) {
        // Concurrent saves may race to create the same user: one wins, the rest find it.
        await s.createUser({ ...user(route.userId), name: `n-${route.userId}` }).catch((e: { code?: string }) => {
          if (e.code !== 'CONFLICT') throw e;
        });
      }
      return save(domain, route, change);
    };
    return s;
  });
}
