import { EphError } from './errors.ts';
import { parseSize } from './config.ts';
import type { Plan } from './types.ts';

/** What one user of a plan may keep stored; an absent number is not limited. */
export interface PlanQuotas {
  /** Instances (running or not) a user may have. */
  maxInstances?: number;
  /** Bytes of archives a user's instances may keep stored: the sum of each instance's archive size. */
  maxStoredBytes?: number;
}

/**
 * Quotas of the embedded plans; a plan defined with `--plans` that is not
 * named here gets {@link DEFAULT_QUOTAS}. Generous enough for real use,
 * small enough that one account cannot fill the data disk.
 */
export const PLAN_QUOTA_DEFAULTS: Readonly<Record<string, PlanQuotas>> = {
  free: { maxInstances: 20, maxStoredBytes: 2 * 2 ** 30 },
  standard: { maxInstances: 200, maxStoredBytes: 20 * 2 ** 30 },
};
export const DEFAULT_QUOTAS: PlanQuotas = { maxInstances: 200, maxStoredBytes: 20 * 2 ** 30 };

const KEYS = ['instances', 'storage'] as const;

/**
 * Applies `PLAN:key=value,...;PLAN:...` (`*` for every plan) on top of the
 * defaults. Keys: `instances` (a count), `storage` (a size like 5GiB); both
 * also `off` (not limited).
 *
 * @example withPlanQuotas('--plan-quotas', plans, 'free:instances=5,storage=500MB;*:storage=off')
 * @throws EphError INVALID_CONFIG naming the bad part.
 */
export function withPlanQuotas(flag: string, plans: Plan[], raw: string | undefined): Plan[] {
  const byPlan = new Map<string, PlanQuotas>(plans.map((p) => [p.name, { ...(PLAN_QUOTA_DEFAULTS[p.name] ?? DEFAULT_QUOTAS) }]));
  const spec = (raw ?? '').trim();
  const parts = spec === '' ? [] : spec.split(';').map((p) => p.trim()).filter(Boolean);
  // `*` first, so that a plan's own part wins whatever the order.
  parts.sort((a, b) => Number(!a.startsWith('*:')) - Number(!b.startsWith('*:')));
  for (const part of parts) {
    const m = /^([a-z][a-z0-9_-]*|\*):(.+)$/.exec(part);
    if (!m) throw new EphError('INVALID_CONFIG', `${flag}: expected PLAN:key=value[,key=value][;PLAN:...], got '${part}'`);
    const one = byPlan.get(m[1]!);
    if (m[1] !== '*' && one === undefined) throw new EphError('INVALID_CONFIG', `${flag}: unknown plan '${m[1]}' (plans: ${[...byPlan.keys()].join(', ')})`);
    const targets = one === undefined ? [...byPlan.values()] : [one];
    for (const kv of m[2]!.split(',')) {
      const [key, value] = kv.split('=').map((s) => s.trim());
      if (!key || value === undefined || value === '' || !(KEYS as readonly string[]).includes(key)) {
        throw new EphError('INVALID_CONFIG', `${flag}: expected key=value with key one of ${KEYS.join(', ')}, got '${kv}'`);
      }
      const field = key === 'instances' ? 'maxInstances' : 'maxStoredBytes';
      const n = value === 'off' ? undefined : key === 'instances' ? count(flag, value) : parseSize(`${flag} storage`, value);
      for (const t of targets) {
        if (n === undefined) delete t[field];
        else t[field] = n;
      }
    }
  }
  return plans.map((p) => ({ ...p, quotas: byPlan.get(p.name)! }));
}

function count(flag: string, value: string): number {
  if (!/^\d+$/.test(value)) throw new EphError('INVALID_CONFIG', `${flag}: instances expects a whole number or off, got '${value}'`);
  return Number(value);
}
