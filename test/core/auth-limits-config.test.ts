import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_AUTH_LIMITS, loadConfig } from '../../src/core/config.ts';

test('auth limits: defaults, FAILURES/DURATION from the environment, off', () => {
  assert.deepEqual(loadConfig({}, {}).authLimits, DEFAULT_AUTH_LIMITS);
  const c = loadConfig({}, { EPH_AUTH_LIMIT_SOURCE: '5/30s', EPH_AUTH_LIMIT_USER: 'off', EPH_AUTH_TRACKED: '500' }).authLimits;
  assert.deepEqual(c, { perSource: { burst: 5, windowMs: 30_000 }, perUser: null, maxTracked: 500 });
});

test('auth limits: a malformed setting is refused at start-up, naming the variable and the expected shape', () => {
  for (const [name, value, pattern] of [
    ['EPH_AUTH_LIMIT_SOURCE', 'lots', /EPH_AUTH_LIMIT_SOURCE: expected FAILURES\/DURATION like 20\/1m, or off, got 'lots'/],
    ['EPH_AUTH_LIMIT_USER', '0/1m', /EPH_AUTH_LIMIT_USER: expected FAILURES\/DURATION/],
    ['EPH_AUTH_LIMIT_USER', '10/soon', /EPH_AUTH_LIMIT_USER: expected a duration like 30m, got 'soon'/],
    ['EPH_AUTH_LIMIT_SOURCE', '10/0s', /EPH_AUTH_LIMIT_SOURCE: the duration must be above zero/],
    ['EPH_AUTH_TRACKED', '0', /EPH_AUTH_TRACKED: expected a number of entries like 10000, got '0'/],
  ] as const) {
    assert.throws(() => loadConfig({}, { [name]: value }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'INVALID_CONFIG');
      assert.match(e.message, pattern);
      return true;
    });
  }
});
