import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { after, before, test } from 'node:test';
import { startTestCloud, until, type TestCloud } from '../helpers/cloud.ts';
import { makeTestCa, type Issued, type TestCa } from '../helpers/certs.ts';
import { versionApp } from './gate-apps.ts';

/**
 * HTTPS on the real gate (--gate-tls on 127.0.0.1:0): a certificate uploaded
 * through /v1 (made with the real openssl by a test CA) served by SNI, the
 * self-signed development certificate for everything else, and the
 * HTTP→HTTPS redirect of a route.
 */
let cloud: TestCloud;
let ca: TestCa;
let www: Issued;
let inst: string;
let tlsPort: number;

before(async () => {
  ca = await makeTestCa();
  www = await ca.issue(['www.example.test']);
  cloud = await startTestCloud({ gateTls: '127.0.0.1:0' });
  tlsPort = Number(new URL(cloud.gateTlsUrl!).port);
  inst = await cloud.publish(await versionApp('v1'));
  const r = await cloud.api('PUT', '/v1/gate/routes/www.example.test', { body: { hostname: inst, httpsRedirect: true } });
  assert.equal(r.status, 200, r.text);
});
after(async () => {
  await cloud?.close();
  await ca?.close();
});

interface TlsAnswer {
  status: number;
  body: string;
  authorized: boolean;
  subject: string;
  issuer: string;
}

/** GET over HTTPS to the gate with SNI `servername` (also the Host), trusting only the test CA. */
function viaTls(servername: string, path = '/'): Promise<TlsAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port: tlsPort, path, servername, headers: { host: servername }, ca: [ca.ca], rejectUnauthorized: false, agent: false },
      (res) => {
        const socket = res.socket as TLSSocket;
        const peer = socket.getPeerCertificate();
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body, authorized: socket.authorized, subject: String(peer.subject.CN), issuer: String(peer.issuer.CN) }),
        );
      },
    );
    req.setTimeout(20_000, () => req.destroy(new Error('HTTPS request timed out')));
    req.on('error', reject);
    req.end();
  });
}

test('uploads are checked: not routed 404, another user\'s domain 409, a certificate for another name 400 with the reason', async () => {
  const unrouted = await cloud.api('PUT', '/v1/gate/certs/shop.example.test', { body: { cert: www.cert, key: www.key } });
  assert.equal(unrouted.status, 404, unrouted.text);
  const bob = await cloud.addUser('bob');
  const bobs = await cloud.publish(await versionApp('bob'), { user: bob });
  assert.equal((await cloud.api('PUT', '/v1/gate/routes/bob.example.test', { user: bob, body: { hostname: bobs, skipHealth: true } })).status, 200);
  const theirs = await cloud.api('PUT', '/v1/gate/certs/bob.example.test', { body: { cert: www.cert, key: www.key } });
  assert.equal(theirs.status, 409, theirs.text);
  const wrongName = await cloud.api('PUT', '/v1/gate/certs/bob.example.test', { user: bob, body: { cert: www.cert, key: www.key } });
  assert.equal(wrongName.status, 400);
  assert.match((wrongName.json as { error: { message: string } }).error.message, /does not cover bob\.example\.test \(it is for www\.example\.test\)/);
  // An alias counts as a domain the user routes: past the ownership check, the certificate itself is judged.
  assert.equal((await cloud.api('PATCH', `/v1/instances/${inst}`, { body: { alias: 'alias.example.test' } })).status, 200);
  const alias = await cloud.api('PUT', '/v1/gate/certs/alias.example.test', { body: { cert: www.cert, key: www.key } });
  assert.equal(alias.status, 400, alias.text);
  assert.match(alias.text, /does not cover alias\.example\.test/);
  const noKey = await cloud.api('PUT', '/v1/gate/certs/www.example.test', { body: { cert: www.cert } });
  assert.equal(noKey.status, 400);
});

test('the uploaded certificate is served by SNI for www.example.test and verifies against its CA', async () => {
  const before = await viaTls('www.example.test');
  assert.equal(before.subject, '*.eph.test', 'before the upload: the self-signed one');
  assert.equal(before.authorized, false);

  const up = await cloud.api('PUT', '/v1/gate/certs/www.example.test', { body: { cert: www.cert, key: www.key } });
  assert.equal(up.status, 200, up.text);
  const view = up.json as { domain: string; notAfter: number; active: boolean; names: string[] };
  assert.equal(view.domain, 'www.example.test');
  assert.deepEqual(view.names, ['www.example.test']);
  assert.equal(view.active, true);

  const r = await viaTls('www.example.test');
  assert.deepEqual(r, { status: 200, body: 'v1', authorized: true, subject: 'www.example.test', issuer: 'Eph Test CA' });
  const list = await cloud.api('GET', '/v1/gate/certs');
  const certs = (list.json as { certs: Array<{ domain: string; notAfter: number; expires: string }> }).certs;
  assert.deepEqual(certs.map((c) => c.domain), ['www.example.test']);
  assert.ok(certs[0]!.notAfter > Date.now() + 20 * 86_400_000);
});

test('an instance hostname over HTTPS gets the self-signed *.eph.test certificate', async () => {
  const r = await viaTls(inst);
  assert.equal(r.status, 200);
  assert.equal(r.body, 'v1');
  assert.equal(r.subject, '*.eph.test');
  assert.equal(r.issuer, '*.eph.test', 'self-signed');
  assert.equal(r.authorized, false, 'not from the test CA');
});

test('plain HTTP to a route with httpsRedirect gets 308 to the HTTPS port; other hosts are served over HTTP', async () => {
  const r = await cloud.visit('www.example.test', '/a/b?c=d');
  assert.equal(r.status, 308);
  assert.equal(r.headers.location, `https://www.example.test:${tlsPort}/a/b?c=d`);
  const plain = await cloud.visit(inst);
  assert.equal(plain.status, 200);
  assert.equal(plain.body, 'v1');
  // The redirect's target really answers.
  const followed = await viaTls('www.example.test', '/a/b?c=d');
  assert.equal(followed.status, 200);
});

test('a domain that changes hands stops carrying the certificate; it is served again once the domain is back', async () => {
  assert.equal((await cloud.api('DELETE', '/v1/gate/routes/www.example.test')).status, 200);
  await until('the gate to stop serving the uploaded certificate', async () => (await viaTls('www.example.test')).subject === '*.eph.test');
  const listed = (await cloud.api('GET', '/v1/gate/certs')).json as { certs: Array<{ domain: string; active: boolean }> };
  assert.deepEqual(listed.certs.map((c) => [c.domain, c.active]), [['www.example.test', false]]);
  assert.equal((await cloud.api('PUT', '/v1/gate/routes/www.example.test', { body: { hostname: inst } })).status, 200);
  await until('the certificate to be served again', async () => (await viaTls('www.example.test')).authorized);
});

test('deleting the certificate puts the default one back', async () => {
  const del = await cloud.api('DELETE', '/v1/gate/certs/www.example.test');
  assert.equal(del.status, 200, del.text);
  assert.equal((await viaTls('www.example.test')).subject, '*.eph.test');
  assert.equal((await cloud.api('DELETE', '/v1/gate/certs/www.example.test')).status, 404);
});
