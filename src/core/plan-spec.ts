import { EphError } from './errors.ts';

/**
 * Reads a per-plan setting `PLAN:key=value[,key=value][;PLAN:...]` (`*` for every plan) and hands each
 * pair to `apply` with the settings it targets. `*` parts are applied first, so a plan's own part wins
 * whatever the order. Shared by --plan-limits and --plan-quotas.
 *
 * @throws EphError INVALID_CONFIG naming the bad part, an unknown plan or an unknown key.
 */
export function applyPlanSpec<T, K extends string>(
  flag: string,
  byPlan: Map<string, T>,
  raw: string | undefined,
  keys: readonly K[],
  apply: (targets: T[], key: K, value: string) => void,
  opts: { refuseEmptyValue?: boolean } = {},
): void {
  const spec = (raw ?? '').trim();
  const parts = spec === '' ? [] : spec.split(';').map((p) => p.trim()).filter(Boolean);
  parts.sort((a, b) => Number(!a.startsWith('*:')) - Number(!b.startsWith('*:')));
  for (const part of parts) {
    const m = /^([a-z][a-z0-9_-]*|\*):(.+)$/.exec(part);
    if (!m) throw new EphError('INVALID_CONFIG', `${flag}: expected PLAN:key=value[,key=value][;PLAN:...], got '${part}'`);
    const one = byPlan.get(m[1]!);
    if (m[1] !== '*' && one === undefined) throw new EphError('INVALID_CONFIG', `${flag}: unknown plan '${m[1]}' (plans: ${[...byPlan.keys()].join(', ')})`);
    const targets = one === undefined ? [...byPlan.values()] : [one];
    for (const kv of m[2]!.split(',')) {
      const [key, value] = kv.split('=').map((s) => s.trim());
      if (!key || value === undefined || (opts.refuseEmptyValue && value === '') || !(keys as readonly string[]).includes(key)) {
        throw new EphError('INVALID_CONFIG', `${flag}: expected key=value with key one of ${keys.join(', ')}, got '${kv}'`);
      }
      apply(targets, key as K, value);
    }
  }
}
