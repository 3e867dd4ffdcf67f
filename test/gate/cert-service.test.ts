import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connect } from 'node:tls';
import { createServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { checkCertPair } from '../../src/gate/cert-check.ts';
import { CertService, type DomainHolders } from '../../src/gate/cert-service.ts';
import type { CertStore, StoredCert } from '../../src/store/cert-store.ts';
import { tlsServerOptions, selfSignedCert } from '../../src/gate/tls.ts';
import { makeTestCa, type Issued, type TestCa } from '../helpers/certs.ts';

let ca: TestCa;
let www: Issued;
let wild: Issued;
let other: Issued;
before(async () => {
  ca = await makeTestCa();
  [www, wild, other] = await Promise.all([
    ca.issue(['www.example.test', 'example.test']),
    ca.issue(['*.example.test']),
    ca.issue(['shop.other.test']),
  ]);
});
after(() => ca?.close());

/** In-memory CertStore: the SQL ones are checked by the store conformance suite. */
class MemoryCerts implements CertStore {
  readonly rows = new Map<string, StoredCert>();
  async putCert(c: StoredCert) {
    this.rows.set(c.domain, { ...c });
  }
  async getCert(d: string) {
    const c = this.rows.get(d);
    return c ? { ...c } : null;
  }
  async listCerts(userId?: string) {
    return [...this.rows.values()].filter((c) => userId === undefined || c.userId === userId).sort((a, b) => a.domain.localeCompare(b.domain));
  }
  async deleteCert(d: string) {
    this.rows.delete(d);
  }
}

function world() {
  const held = new Map<string, string>([
    ['www.example.test', 'alice'],
    ['api.example.test', 'alice'],
    ['shop.other.test', 'bob'],
  ]);
  const holders: DomainHolders = {
    holderOf: async (d) => held.get(d) ?? null,
    holdersUnder: async (p) => new Set([...held].filter(([d]) => d.endsWith(`.${p}`) && !d.slice(0, -p.length - 1).includes('.')).map(([, u]) => u)),
  };
  const store = new MemoryCerts();
  const certs = new CertService({ store, holders, reservedDomain: 'eph.test', clock: { now: () => Date.now() } });
  return { held, store, certs };
}

test('checkCertPair accepts a matching pair and reports expiry and names', () => {
  const f = checkCertPair('www.example.test', www.cert, www.key, Date.now());
  assert.deepEqual(f.names, ['www.example.test', 'example.test']);
  assert.ok(f.notAfter > Date.now() + 29 * 86_400_000);
  assert.match(f.issuer, /Eph Test CA/);
});

test('checkCertPair refuses, with the reason: wrong domain, foreign key, expired, not PEM, wildcard slot without the wildcard', () => {
  const now = Date.now();
  assert.throws(() => checkCertPair('shop.example.test', www.cert, www.key, now), { code: 'INVALID_VALUE', message: /does not cover shop\.example\.test \(it is for www\.example\.test, example\.test\)/ });
  assert.throws(() => checkCertPair('www.example.test', www.cert, other.key, now), { code: 'INVALID_VALUE', message: /key does not match/ });
  assert.throws(() => checkCertPair('www.example.test', www.cert, www.key, now + 400 * 86_400_000), { code: 'INVALID_VALUE', message: /expired on \d{4}-/ });
  assert.throws(() => checkCertPair('www.example.test', 'hello', www.key, now), { code: 'INVALID_VALUE', message: /PEM certificate/ });
  assert.throws(() => checkCertPair('www.example.test', www.cert, 'nope', now), { code: 'INVALID_VALUE', message: /PEM private key/ });
  assert.throws(() => checkCertPair('www.example.test', '-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n', www.key, now), { code: 'INVALID_VALUE', message: /cannot be read/ });
  assert.throws(() => checkCertPair('*.example.test', www.cert, www.key, now), { code: 'INVALID_VALUE', message: /does not cover \*\.example\.test/ });
  // A wildcard certificate covers a name one level under it.
  assert.equal(checkCertPair('api.example.test', wild.cert, wild.key, now).names[0], '*.example.test');
});

test('put: only for domains the user holds (404 nobody, 409 another user), then served by SNI, exact before wildcard', async () => {
  const { certs } = world();
  await assert.rejects(certs.put('alice', 'nobody.example.test', www.cert, www.key), { code: 'NOT_FOUND' });
  await assert.rejects(certs.put('alice', 'shop.other.test', other.cert, other.key), { code: 'CONFLICT' });
  await assert.rejects(certs.put('alice', '*.eph.test', wild.cert, wild.key), { code: 'INVALID_HOSTNAME' });
  assert.equal(certs.sni('www.example.test'), null);

  const v = await certs.put('alice', 'WWW.Example.Test.', www.cert, www.key);
  assert.equal(v.domain, 'www.example.test');
  assert.equal(v.active, true);
  assert.equal(typeof v.expires, 'string');
  assert.equal('key' in v, false, 'the key is never shown');
  await certs.put('alice', '*.example.test', wild.cert, wild.key);
  const exact = certs.sni('www.example.test');
  const byWildcard = certs.sni('api.example.test');
  assert.ok(exact && byWildcard && exact !== byWildcard);
  assert.equal(certs.sni('a.b.example.test'), null, 'a wildcard covers one label only');
  assert.deepEqual((await certs.list('alice')).map((c) => c.domain), ['*.example.test', 'www.example.test']);
  assert.deepEqual(await certs.list('bob'), []);

  await assert.rejects(certs.remove('bob', 'www.example.test'), { code: 'NOT_FOUND' });
  await certs.remove('alice', 'www.example.test');
  assert.equal(certs.sni('www.example.test'), byWildcard, 'after removal the wildcard serves the name');
});

test('a domain that changes hands stops carrying its former owner\'s certificate after refresh', async () => {
  const { certs, held } = world();
  await certs.put('alice', 'www.example.test', www.cert, www.key);
  held.set('www.example.test', 'bob');
  await certs.refresh();
  assert.equal(certs.sni('www.example.test'), null);
  assert.equal((await certs.list('alice'))[0]!.active, false);
  held.set('www.example.test', 'alice');
  await certs.refresh();
  assert.ok(certs.sni('www.example.test'));
});

test('a real TLS handshake gets the uploaded certificate by SNI and the default one otherwise', async (t) => {
  const { certs } = world();
  await certs.put('alice', 'www.example.test', www.cert, www.key);
  const fallback = await selfSignedCert('eph.test');
  const server = createServer(tlsServerOptions({ defaultCert: fallback, sni: (n) => certs.sni(n) }), (s: TLSSocket) => s.end('ok'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as AddressInfo).port;
  const peer = (servername: string) =>
    new Promise<{ subject: string; authorized: boolean }>((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port, servername, ca: [www.ca], rejectUnauthorized: false }, () => {
        const c = s.getPeerCertificate();
        resolve({ subject: String(c.subject.CN), authorized: s.authorized });
        s.destroy();
      });
      s.on('error', reject);
    });
  assert.deepEqual(await peer('www.example.test'), { subject: 'www.example.test', authorized: true });
  const dflt = await peer('eph-12345678.eph.test');
  assert.equal(dflt.subject, '*.eph.test');
  assert.equal(dflt.authorized, false);
});
