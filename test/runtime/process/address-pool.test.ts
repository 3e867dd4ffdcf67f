import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AddressPool } from '../../../src/runtime/process/address-pool.ts';

test('blocks are /30s handed out lowest first, freed blocks are reused, addresses in use on the host are skipped', () => {
  const pool = new AddressPool('10.213.0.0/16');
  const a = pool.allocate(new Set());
  const b = pool.allocate(new Set());
  assert.deepEqual(a, { index: 0, hostIp: '10.213.0.1', nsIp: '10.213.0.2', prefixLength: 30 });
  assert.deepEqual([b.hostIp, b.nsIp], ['10.213.0.5', '10.213.0.6']);
  pool.release(a);
  assert.equal(pool.allocate(new Set()).index, 0);
  assert.equal(pool.allocate(new Set(['10.213.0.9'])).hostIp, '10.213.0.13');
  assert.equal(pool.size, 3);
});

test('an exhausted range is UNAVAILABLE; a malformed range is INVALID_CONFIG with a hint', () => {
  const pool = new AddressPool('10.1.2.0/29');
  pool.allocate(new Set());
  pool.allocate(new Set());
  assert.throws(() => pool.allocate(new Set()), { code: 'UNAVAILABLE' });
  assert.throws(() => new AddressPool('10.1.2.3/24'), { code: 'INVALID_CONFIG', message: /did you mean 10\.1\.2\.0\/24/ });
  assert.throws(() => new AddressPool('10.1.2.0'), { code: 'INVALID_CONFIG' });
  assert.throws(() => new AddressPool('10.1.2.0/31'), { code: 'INVALID_CONFIG' });
});
