import { EphError } from './errors.ts';
import { parseSize } from './config.ts';
import type { Plan, PlanLimits } from './types.ts';
import { applyPlanSpec } from './plan-spec.ts';

/**
 * Limits every plan gets unless `--plan-limits` says otherwise: enough for a
 * Node or Pharo web app, small enough that a 2-core, few-GiB host survives a
 * tenant's fork bomb or memory leak.
 */
export const DEFAULT_PLAN_LIMITS: PlanLimits = {
  memoryBytes: 512 * 2 ** 20,
  cpus: 1,
  pids: 256,
  openFiles: 1024,
  tmpBytes: 256 * 2 ** 20,
  syscalls: 'filtered',
  userns: false,
};

const KEYS = ['memory', 'cpus', 'pids', 'files', 'tmp', 'syscalls', 'userns'] as const;

/**
 * Applies `PLAN:key=value,...;PLAN:...` (`*` for every plan) on top of
 * {@link DEFAULT_PLAN_LIMITS}. Keys: memory, tmp (sizes like 256MiB), cpus
 * (cores, e.g. 0.5), pids, files (counts), each also `off`; syscalls
 * (filtered|all), userns (off|on).
 *
 * @example withPlanLimits('--plan-limits', plans, 'free:memory=256MiB,pids=64;*:tmp=64MiB')
 * @throws EphError INVALID_CONFIG naming the bad part.
 */
export function withPlanLimits(flag: string, plans: Plan[], raw: string | undefined): Plan[] {
  const byPlan = new Map<string, PlanLimits>(plans.map((p) => [p.name, { ...DEFAULT_PLAN_LIMITS }]));
  applyPlanSpec(flag, byPlan, raw, KEYS, (targets, key, value) => {
    for (const t of targets) setLimit(flag, t, key, value);
  });
  return plans.map((p) => ({ ...p, limits: byPlan.get(p.name)! }));
}

function setLimit(flag: string, t: PlanLimits, key: (typeof KEYS)[number], value: string): void {
  const bad = (what: string): EphError => new EphError('INVALID_CONFIG', `${flag}: ${key} expects ${what}, got '${value}'`);
  const count = (min: number): number | undefined => {
    if (value === 'off') return undefined;
    if (!/^\d+$/.test(value) || Number(value) < min) throw bad(`a whole number of at least ${min}, or off`);
    return Number(value);
  };
  const size = (min: number): number | undefined => {
    if (value === 'off') return undefined;
    const n = parseSize(`${flag} ${key}`, value);
    if (n < min) throw bad(`a size of at least ${min / 2 ** 20} MiB, or off`);
    return n;
  };
  switch (key) {
    case 'memory':
      assign(t, 'memoryBytes', size(16 * 2 ** 20));
      break;
    case 'tmp':
      assign(t, 'tmpBytes', size(2 ** 20));
      break;
    case 'cpus': {
      if (value === 'off') {
        delete t.cpus;
        break;
      }
      const n = Number(value);
      if (!/^\d+(\.\d+)?$/.test(value) || n < 0.01) throw bad('a number of cores like 0.5, or off');
      t.cpus = n;
      break;
    }
    case 'pids':
      // Fewer than 8 and bwrap, sh and the app itself cannot start.
      assign(t, 'pids', count(8));
      break;
    case 'files':
      assign(t, 'openFiles', count(16));
      break;
    case 'syscalls':
      if (value !== 'filtered' && value !== 'all') throw bad('filtered or all');
      t.syscalls = value;
      break;
    case 'userns':
      if (value !== 'on' && value !== 'off') throw bad('on or off');
      t.userns = value === 'on';
      break;
  }
}

function assign(t: PlanLimits, key: 'memoryBytes' | 'tmpBytes' | 'pids' | 'openFiles', v: number | undefined): void {
  if (v === undefined) delete t[key];
  else t[key] = v;
}

/** `256 MiB`, `1.5 GiB`: how limits read in logs and errors. */
export function formatBytes(n: number): string {
  if (n >= 2 ** 30 && n % 2 ** 30 === 0) return `${n / 2 ** 30} GiB`;
  if (n >= 2 ** 20) return `${Math.round((n / 2 ** 20) * 10) / 10} MiB`;
  return `${n} bytes`;
}
