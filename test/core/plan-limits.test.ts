import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../src/core/config.ts';
import { DEFAULT_PLAN_LIMITS, formatBytes, withPlanLimits } from '../../src/core/plan-limits.ts';
import type { Plan } from '../../src/core/types.ts';

const PLANS: Plan[] = [
  { name: 'free', maxRunning: 1 },
  { name: 'pro', maxRunning: 10 },
];
const limitsOf = (plans: Plan[], name: string) => plans.find((p) => p.name === name)!.limits!;

test('every plan gets the default limits when nothing is said', () => {
  const plans = withPlanLimits('--plan-limits', PLANS, undefined);
  assert.deepEqual(limitsOf(plans, 'free'), DEFAULT_PLAN_LIMITS);
  assert.deepEqual(limitsOf(plans, 'pro'), DEFAULT_PLAN_LIMITS);
  assert.equal(DEFAULT_PLAN_LIMITS.syscalls, 'filtered');
  assert.equal(DEFAULT_PLAN_LIMITS.userns, false);
});

test('a plan line wins over `*` whatever the order; off lifts a limit', () => {
  const plans = withPlanLimits('--plan-limits', PLANS, 'free:memory=256MiB,cpus=0.5,pids=64,files=512,tmp=32MiB;*:memory=1GiB,tmp=off;pro:syscalls=all,userns=on');
  assert.deepEqual(limitsOf(plans, 'free'), { memoryBytes: 256 * 2 ** 20, cpus: 0.5, pids: 64, openFiles: 512, tmpBytes: 32 * 2 ** 20, syscalls: 'filtered', userns: false });
  const pro = limitsOf(plans, 'pro');
  assert.equal(pro.memoryBytes, 2 ** 30);
  assert.equal(pro.tmpBytes, undefined);
  assert.equal(pro.syscalls, 'all');
  assert.equal(pro.userns, true);
});

test('bad specs are refused with a message naming the part', () => {
  const bad: [string, RegExp][] = [
    ['free:memory=lots', /--plan-limits memory: expected a size like 50MB, got 'lots'/],
    ['free:memory=1MiB', /memory expects a size of at least 16 MiB/],
    ['gold:memory=1GiB', /unknown plan 'gold' \(plans: free, pro\)/],
    ['free:colour=red', /key one of memory, cpus, pids, files, tmp, syscalls, userns/],
    ['free:pids=2', /pids expects a whole number of at least 8/],
    ['free:cpus=-1', /cpus expects a number of cores/],
    ['free:syscalls=some', /syscalls expects filtered or all/],
    ['free:userns=yes', /userns expects on or off/],
    ['memory=1GiB', /expected PLAN:key=value/],
  ];
  for (const [spec, message] of bad) {
    assert.throws(() => withPlanLimits('--plan-limits', PLANS, spec), (e: Error & { code?: string }) => e.code === 'INVALID_CONFIG' && message.test(e.message), spec);
  }
});

test('loadConfig reads --plan-limits and EPH_PLAN_LIMITS (the flag wins)', () => {
  const fromEnv = loadConfig({}, { EPH_PLAN_LIMITS: 'free:pids=99' });
  assert.equal(fromEnv.plans.find((p) => p.name === 'free')!.limits!.pids, 99);
  const fromFlag = loadConfig({ planLimits: 'free:pids=42' }, { EPH_PLAN_LIMITS: 'free:pids=99' });
  assert.equal(fromFlag.plans.find((p) => p.name === 'free')!.limits!.pids, 42);
});

test('sizes read as people write them', () => {
  assert.equal(formatBytes(256 * 2 ** 20), '256 MiB');
  assert.equal(formatBytes(2 ** 30), '1 GiB');
  assert.equal(formatBytes(1.5 * 2 ** 30), '1536 MiB');
});
