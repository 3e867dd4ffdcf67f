import { EphError } from './errors.ts';
import { parseSize } from './config.ts';
import type { Plan } from './types.ts';
import { applyPlanSpec } from './plan-spec.ts';

/** What one user of a plan may keep stored; an absent number is not limited. */
export interface PlanQuotas {
  /** Instances (running or not) a user may have. */
  maxInstances?: number;
  /** Bytes of archives a user's instances may keep stored: the sum of each instance's archive size. */
  maxStoredBytes?: number;
  /** Config vars per instance (`eph config set`). */
  maxConfigVars?: number;
  /** Bytes of one config var's value. */
  maxConfigValueBytes?: number;
  /** Bytes of all config vars of one instance, names and values. */
  maxConfigBytes?: number;
}

/** Config var limits every plan gets unless set otherwise (`vars`, `var-size`, `config-size`). */
export const CONFIG_VAR_DEFAULTS: PlanQuotas = { maxConfigVars: 64, maxConfigValueBytes: 32 * 1024, maxConfigBytes: 256 * 1024 };

/**
 * Quotas of the embedded plans; a plan defined with `--plans` that is not
 * named here gets {@link DEFAULT_QUOTAS}. Generous enough for real use,
 * small enough that one account cannot fill the data disk.
 */
export const PLAN_QUOTA_DEFAULTS: Readonly<Record<string, PlanQuotas>> = {
  free: { maxInstances: 20, maxStoredBytes: 2 * 2 ** 30, ...CONFIG_VAR_DEFAULTS },
  standard: { maxInstances: 200, maxStoredBytes: 20 * 2 ** 30, ...CONFIG_VAR_DEFAULTS },
};
export const DEFAULT_QUOTAS: PlanQuotas = { maxInstances: 200, maxStoredBytes: 20 * 2 ** 30, ...CONFIG_VAR_DEFAULTS };

const KEYS = ['instances', 'storage', 'vars', 'var-size', 'config-size'] as const;
const FIELDS: Record<(typeof KEYS)[number], keyof PlanQuotas> = {
  instances: 'maxInstances',
  storage: 'maxStoredBytes',
  vars: 'maxConfigVars',
  'var-size': 'maxConfigValueBytes',
  'config-size': 'maxConfigBytes',
};

/**
 * Applies `PLAN:key=value,...;PLAN:...` (`*` for every plan) on top of the
 * defaults. Keys: `instances` (a count), `storage` (a size like 5GiB),
 * `vars` (config vars per instance), `var-size` (bytes of one value),
 * `config-size` (bytes of all of an instance's vars); each also `off` (not
 * limited by the plan).
 *
 * @example withPlanQuotas('--plan-quotas', plans, 'free:instances=5,storage=500MB;*:storage=off')
 * @throws EphError INVALID_CONFIG naming the bad part.
 */
export function withPlanQuotas(flag: string, plans: Plan[], raw: string | undefined): Plan[] {
  const byPlan = new Map<string, PlanQuotas>(plans.map((p) => [p.name, { ...(PLAN_QUOTA_DEFAULTS[p.name] ?? DEFAULT_QUOTAS) }]));
  applyPlanSpec(
    flag,
    byPlan,
    raw,
    KEYS,
    (targets, key, value) => {
      const field = FIELDS[key];
      const counted = key === 'instances' || key === 'vars';
      const n = value === 'off' ? undefined : counted ? count(flag, key, value) : parseSize(`${flag} ${key}`, value);
      for (const t of targets) {
        if (n === undefined) delete t[field];
        else t[field] = n;
      }
    },
    { refuseEmptyValue: true },
  );
  return plans.map((p) => ({ ...p, quotas: byPlan.get(p.name)! }));
}

function count(flag: string, key: string, value: string): number {
  if (!/^\d+$/.test(value)) throw new EphError('INVALID_CONFIG', `${flag}: ${key} expects a whole number or off, got '${value}'`);
  return Number(value);
}
