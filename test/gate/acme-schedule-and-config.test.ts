/**
 * The arithmetic of automatic HTTPS: when a renewal falls due, the per-user
 * order limit's sliding window, and the start-up options (`--acme-*`,
 * EPH_ACME_*) refused with a precise message.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../../src/core/config.ts';
import { AcmeOrderLimit } from '../../src/gate/acme-order-limit.ts';
import { LETS_ENCRYPT_DIRECTORY, renewalTime } from '../../src/gate/acme-service.ts';

const DAY = 86_400_000;

test('renewal is due when a third of the lifetime remains (day 60 of a 90-day certificate)', () => {
  const nb = Date.UTC(2026, 0, 1);
  assert.equal(renewalTime(nb, nb + 90 * DAY, nb), nb + 60 * DAY);
  // A 6-day certificate: renewed on day 4.
  assert.equal(renewalTime(nb, nb + 6 * DAY, nb + 1000), nb + 4 * DAY);
});

test('a certificate issued when the clock is past its renewal point is not due again before a tenth of its lifetime', () => {
  const nb = Date.UTC(2026, 0, 1);
  const now = nb + 70 * DAY; // e.g. a clock ahead of the directory's
  assert.equal(renewalTime(nb, nb + 90 * DAY, now), now + 9 * DAY);
});

test('the order limit: max starts per window per user, then the wait until the oldest leaves the window', () => {
  const limit = new AcmeOrderLimit(3, 60_000);
  const t = 1_000_000;
  for (let i = 0; i < 3; i++) {
    assert.equal(limit.waitMs('alice', t + i * 1000), 0);
    limit.record('alice', t + i * 1000);
  }
  assert.equal(limit.waitMs('alice', t + 5000), 55_000, 'until the first start is a minute old');
  assert.equal(limit.waitMs('bob', t + 5000), 0, 'per user');
  assert.equal(limit.waitMs('alice', t + 60_001), 0);
  limit.record('alice', t + 60_001);
  assert.equal(limit.waitMs('alice', t + 60_002), 998, 'the second start (t + 1 s) leaves the window next');
});

const base = { data: '/nonexistent', gateTls: '127.0.0.1:0' };

test('automatic HTTPS is off unless asked; on, it defaults to Let\'s Encrypt and 10 orders per hour', () => {
  assert.equal(loadConfig(base, {}).acme, null);
  const on = loadConfig({ ...base, acmeEmail: 'ops@example.org' }, {});
  assert.deepEqual(on.acme, { directoryUrl: LETS_ENCRYPT_DIRECTORY, email: 'ops@example.org', caFile: null, byDefault: false, ordersPerHour: 10 });
  const env = loadConfig(base, { EPH_ACME_DEFAULT: '1', EPH_ACME_DIRECTORY: 'https://127.0.0.1:14000/dir', EPH_ACME_CA_FILE: 'ca.pem', EPH_ACME_ORDERS_PER_HOUR: '3' });
  assert.deepEqual(env.acme, { directoryUrl: 'https://127.0.0.1:14000/dir', email: null, caFile: 'ca.pem', byDefault: true, ordersPerHour: 3 });
  assert.equal(loadConfig({ ...base, acmeDefault: true }, {}).acme?.byDefault, true);
});

test('bad automatic HTTPS options are refused at start with the reason', () => {
  const refused = (flags: Record<string, unknown>, env: NodeJS.ProcessEnv, re: RegExp) =>
    assert.throws(() => loadConfig({ ...base, ...flags }, env), (e: Error & { code?: string }) => e.code === 'INVALID_CONFIG' && re.test(e.message));
  refused({ gateTls: undefined, acmeDefault: true }, {}, /needs the HTTPS gate \(--gate-tls/);
  refused({ acmeDirectory: 'http://insecure.example/dir' }, {}, /--acme-directory: expected an https:\/\/ URL/);
  refused({ acmeEmail: 'not an address' }, {}, /--acme-email: expected an e-mail address/);
  refused({ acmeEmail: 'ops@example.org' }, { EPH_ACME_ORDERS_PER_HOUR: '0' }, /EPH_ACME_ORDERS_PER_HOUR: expected a number/);
});
