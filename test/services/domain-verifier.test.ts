import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import { after, before, test } from 'node:test';
import { DomainVerifier } from '../../src/services/domain-verifier.ts';
import { startTxtDnsServer, type TxtDnsServer } from './txt-dns-server.ts';

// A real node:dns Resolver asking a real (tiny) DNS server on loopback UDP.
let dns: TxtDnsServer;
let verifier: DomainVerifier;
before(async () => {
  dns = await startTxtDnsServer();
  const resolver = new Resolver({ timeout: 5000, tries: 3 });
  resolver.setServers([dns.address]);
  verifier = new DomainVerifier({ secret: Buffer.alloc(32, 7), resolver });
});
after(() => dns?.close());

test('the record is per user and per domain, stable, and named _ephemeric.<domain>', () => {
  const a = verifier.record('alice', 'example.org');
  assert.equal(a.record, '_ephemeric.example.org');
  assert.equal(a.type, 'TXT');
  assert.match(a.value, /^eph-verify-[A-Za-z0-9_-]{32}$/);
  assert.equal(verifier.record('alice', 'example.org').value, a.value);
  assert.notEqual(verifier.record('bob', 'example.org').value, a.value);
  assert.notEqual(verifier.record('alice', 'example.net').value, a.value);
  const other = new DomainVerifier({ secret: Buffer.alloc(32, 8), resolver: { resolveTxt: async () => [] } });
  assert.notEqual(other.record('alice', 'example.org').value, a.value, 'another cloud, another value');
});

test('no record: FORBIDDEN naming the record and value to publish', async () => {
  const want = verifier.record('alice', 'www.none.test');
  await assert.rejects(verifier.require('alice', 'www.none.test'), (e: Error & { code?: string; status?: number }) => {
    assert.equal(e.code, 'FORBIDDEN');
    assert.equal(e.status, 403);
    assert.ok(e.message.includes(want.record) && e.message.includes(want.value), e.message);
    return true;
  });
  assert.ok(dns.queries.includes('_ephemeric.www.none.test') && dns.queries.includes('_ephemeric.none.test'), 'the name and its parent were asked');
  assert.ok(!dns.queries.includes('_ephemeric.test'), 'a top-level domain proves nothing');
});

test("the tenant's value at the name or at a parent proves it; another tenant's value or a wrong one does not", async () => {
  dns.records.set('_ephemeric.shop.one.test', [[verifier.record('bob', 'shop.one.test').value], ['v=spf1 -all']]);
  assert.equal(await verifier.verified('alice', 'shop.one.test'), false, "bob's value is not alice's");
  dns.records.set('_ephemeric.shop.one.test', [['v=spf1 -all'], [verifier.record('alice', 'shop.one.test').value]]);
  assert.equal(await verifier.verified('alice', 'shop.one.test'), true);
  await verifier.require('alice', 'shop.one.test');
  // A parent's record, with the parent's value, covers names under it.
  dns.records.set('_ephemeric.two.test', [[verifier.record('alice', 'two.test').value]]);
  assert.equal(await verifier.verified('alice', 'a.b.two.test'), true);
  // The parent's name with the child's value is not the parent's value.
  dns.records.set('_ephemeric.three.test', [[verifier.record('alice', 'www.three.test').value]]);
  assert.equal(await verifier.verified('alice', 'www.three.test'), false);
});

test('a value split in several strings of one record is joined', async () => {
  const v = verifier.record('alice', 'split.test').value;
  dns.records.set('_ephemeric.split.test', [[v.slice(0, 10), v.slice(10)]]);
  assert.equal(await verifier.verified('alice', 'split.test'), true);
});

test('DNS failing (not answering) is 503 UNAVAILABLE with Retry-After, not a refusal', async () => {
  const broken = new DomainVerifier({
    secret: Buffer.alloc(32, 7),
    resolver: {
      resolveTxt: async () => {
        throw Object.assign(new Error('queryTxt ETIMEOUT'), { code: 'ETIMEOUT' });
      },
    },
  });
  await assert.rejects(broken.require('alice', 'x.test'), { code: 'UNAVAILABLE', status: 503, retryAfter: 30 });
});
