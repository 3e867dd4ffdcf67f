import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig } from '../../src/core/config.ts';
import { CONFIG_VAR_DEFAULTS, withPlanQuotas } from '../../src/core/plan-quotas.ts';

const CV = CONFIG_VAR_DEFAULTS;

const plans = [
  { name: 'free', maxRunning: 1 },
  { name: 'standard', maxRunning: 10 },
  { name: 'team', maxRunning: 20 },
];
const quotasOf = (spec?: string) => Object.fromEntries(withPlanQuotas('--plan-quotas', plans, spec).map((p) => [p.name, p.quotas]));

test('defaults: free 20 instances and 2 GiB, standard and unnamed plans 200 instances and 20 GiB', () => {
  assert.deepEqual(quotasOf(), {
    free: { maxInstances: 20, maxStoredBytes: 2 * 2 ** 30, ...CV },
    standard: { maxInstances: 200, maxStoredBytes: 20 * 2 ** 30, ...CV },
    team: { maxInstances: 200, maxStoredBytes: 20 * 2 ** 30, ...CV },
  });
});

test("PLAN:key=value parts, '*' first whatever the order, 'off' removes a limit", () => {
  const q = quotasOf('free:instances=5,storage=500MB;*:storage=off,instances=7');
  assert.deepEqual(q.free, { maxInstances: 5, maxStoredBytes: 500_000_000, ...CV });
  assert.deepEqual(q.standard, { maxInstances: 7, ...CV });
  assert.deepEqual(q.team, { maxInstances: 7, ...CV });
});

test('config var limits: vars, var-size and config-size per plan, off removes them', () => {
  const q = quotasOf('free:vars=8,var-size=1KiB,config-size=4KiB;standard:vars=off');
  assert.deepEqual(q.free, { maxInstances: 20, maxStoredBytes: 2 * 2 ** 30, maxConfigVars: 8, maxConfigValueBytes: 1024, maxConfigBytes: 4096 });
  assert.equal(q.standard?.maxConfigVars, undefined);
  assert.equal(q.standard?.maxConfigValueBytes, CV.maxConfigValueBytes);
  assert.throws(() => quotasOf('free:vars=lots'), /--plan-quotas: vars expects a whole number or off, got 'lots'/);
  assert.throws(() => quotasOf('free:var-size=big'), /--plan-quotas var-size: expected a size/);
});

test('bad specs stop start-up naming the flag and the part', () => {
  assert.throws(() => quotasOf('gold:instances=1'), /--plan-quotas: unknown plan 'gold' \(plans: free, standard, team\)/);
  assert.throws(() => quotasOf('free:memory=1GiB'), /--plan-quotas: expected key=value with key one of instances, storage, vars, var-size, config-size, got 'memory=1GiB'/);
  assert.throws(() => quotasOf('free:instances=many'), /--plan-quotas: instances expects a whole number or off, got 'many'/);
  assert.throws(() => quotasOf('free:storage=lots'), /--plan-quotas storage: expected a size/);
  assert.throws(() => quotasOf('instances=3'), /--plan-quotas: expected PLAN:key=value/);
});

test('loadConfig takes EPH_PLAN_QUOTAS, and the planQuotas flag over it', () => {
  const env = { EPH_PLANS: 'free=1,pro=5', EPH_PLAN_QUOTAS: 'pro:instances=9' };
  assert.deepEqual(loadConfig({}, env).plans.map((p) => [p.name, p.quotas?.maxInstances]), [['free', 20], ['pro', 9]]);
  assert.deepEqual(loadConfig({ planQuotas: 'pro:instances=3' }, env).plans.map((p) => [p.name, p.quotas?.maxInstances]), [['free', 20], ['pro', 3]]);
});
