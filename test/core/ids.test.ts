import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isInstanceHostname, newInstanceLabel, normalizeHost } from '../../src/core/ids.ts';

test('instance labels are eph- and 8 lowercase hex digits, and differ', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const l = newInstanceLabel();
    assert.match(l, /^eph-[0-9a-f]{8}$/);
    seen.add(l);
  }
  assert.ok(seen.size > 195);
  assert.ok(isInstanceHostname('eph-0a1b2c3d.eph.localhost', 'eph.localhost'));
  assert.ok(!isInstanceHostname('eph-0a1b2c3.eph.localhost', 'eph.localhost'));
  assert.ok(!isInstanceHostname('www.eph.localhost', 'eph.localhost'));
});

test('hosts are normalised: case, trailing dot and port; malformed ones refused', () => {
  assert.equal(normalizeHost('WWW.Example.ORG.'), 'www.example.org');
  assert.equal(normalizeHost('www.example.org:8080'), 'www.example.org');
  assert.equal(normalizeHost('bad host'), null);
  assert.equal(normalizeHost('-bad.example.org'), null);
  assert.equal(normalizeHost(''), null);
  assert.equal(normalizeHost('a..b'), null);
  assert.equal(normalizeHost('x.org:99x'), null);
});
