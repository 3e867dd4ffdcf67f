import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UsageError } from '../../src/cli/cli-error.ts';
import { parseSplitWeights } from '../../src/cli/split-weights.ts';

test('split weights HOST=N become targets, hostnames lower-cased', () => {
  assert.deepEqual(parseSplitWeights(['EPH-AAAA1111.eph.localhost=90', 'eph-bbbb2222.eph.localhost=10']), [
    { hostname: 'eph-aaaa1111.eph.localhost', weight: 90 },
    { hostname: 'eph-bbbb2222.eph.localhost', weight: 10 },
  ]);
  assert.deepEqual(parseSplitWeights(['a=0', 'b=100']), [
    { hostname: 'a', weight: 0 },
    { hostname: 'b', weight: 100 },
  ]);
});

test('bad split arguments are usage errors naming the argument', () => {
  const cases: [string[], RegExp][] = [
    [[], /expected HOST=WEIGHT arguments/],
    [['a'], /expected HOST=WEIGHT, got 'a'/],
    [['=5'], /expected HOST=WEIGHT, got '=5'/],
    [['a='], /expected HOST=WEIGHT, got 'a='/],
    [['a=1.5'], /the weight in 'a=1.5' must be a whole number/],
    [['a=-1'], /the weight in 'a=-1' must be a whole number/],
    [['a=101'], /the weight in 'a=101' must be a whole number from 0 to 100/],
    [['a=1e2'], /the weight in 'a=1e2'/],
    [['a=50', 'A=50'], /a is given twice/],
    [['a=0'], /at least one weight must be above 0/],
    [Array.from({ length: 17 }, (_, i) => `h${i}=1`), /at most 16 targets, got 17/],
  ];
  for (const [args, re] of cases) {
    assert.throws(
      () => parseSplitWeights(args),
      (e: unknown) => e instanceof UsageError && e.exitCode === 2 && re.test(e.message),
      `${JSON.stringify(args)} should fail with ${re}`,
    );
  }
});
