import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AuthFailureLimiter, sourceKey } from '../../src/services/auth-failures.ts';

/** A limiter on a hand-moved clock: refills are checked without waiting. */
function limiter(source: number, user: number, windowMs = 60_000, maxTracked = 100) {
  let now = 1_000_000;
  const l = new AuthFailureLimiter({ perSource: { burst: source, windowMs }, perUser: { burst: user, windowMs }, maxTracked }, () => now);
  return { l, advance: (ms: number) => (now += ms) };
}

test('a source over its limit waits for one token; Retry-After rounds up to whole seconds', () => {
  const { l, advance } = limiter(3, 100);
  for (let i = 0; i < 3; i++) {
    assert.equal(l.check('10.0.0.1', 'u1'), null);
    l.failed('10.0.0.1', 'u1');
  }
  // 3 per minute: one token every 20 s.
  assert.deepEqual(l.check('10.0.0.1', 'u1'), { retryAfterS: 20, by: 'source' });
  assert.deepEqual(l.check('10.0.0.1', 'u2'), { retryAfterS: 20, by: 'source' }, 'whatever user it claims');
  advance(19_500);
  assert.deepEqual(l.check('10.0.0.1', 'u1'), { retryAfterS: 1, by: 'source' });
  advance(500);
  assert.equal(l.check('10.0.0.1', 'u1'), null, 'one token back after 20 s');
  assert.equal(l.check('10.0.0.2', 'u1'), null, 'another source is not concerned');
});

test('a user over its limit is refused to sources with failures, not to clean ones', () => {
  const { l, advance } = limiter(100, 4);
  for (let i = 0; i < 4; i++) l.failed(`10.0.1.${i}`, 'victim');
  assert.deepEqual(l.check('10.0.1.0', 'victim'), { retryAfterS: 15, by: 'user' });
  assert.equal(l.check('10.0.9.9', 'victim'), null, 'a source that never failed');
  assert.equal(l.check('10.0.1.0', 'someone-else'), null);
  advance(60_000);
  assert.equal(l.check('10.0.1.0', 'victim'), null, 'refilled');
});

test('memory stays within maxTracked, evicting the least recently charged', () => {
  const { l } = limiter(2, 2, 60_000, 10);
  for (let i = 0; i < 1000; i++) l.failed(`10.1.${i >> 8}.${i & 255}`, `invented-${i}`);
  assert.deepEqual(l.tracked, { sources: 10, users: 10 });
});

test('source keys: IPv4 as is (also IPv4-mapped), IPv6 by its /64', () => {
  assert.equal(sourceKey('192.0.2.7'), '192.0.2.7');
  assert.equal(sourceKey('::ffff:192.0.2.7'), '192.0.2.7');
  assert.equal(sourceKey('2001:db8:1:2::1'), sourceKey('2001:db8:1:2:ffff:1:2:3'));
  assert.equal(sourceKey('2001:0db8:0001:0002::1'), '2001:db8:1:2::/64');
  assert.notEqual(sourceKey('2001:db8:1:2::1'), sourceKey('2001:db8:1:3::1'));
  assert.equal(sourceKey('::1'), '0:0:0:0::/64');
});
