import type { GateTarget } from '../core/types.ts';
import { UsageError } from './cli-error.ts';

/** Most targets one split may have (the route service's own limit). */
export const MAX_SPLIT_TARGETS = 16;

/**
 * Reads `eph gate split` arguments `HOST=WEIGHT`: whole weights 0–100, each
 * host once, at least one weight above 0. Refuses locally, before anything
 * is sent, with a message naming the bad argument.
 *
 * @example
 * parseSplitWeights(['eph-1a2b3c4d.eph.localhost=90', 'eph-5e6f7a8b.eph.localhost=10'])
 * // [{ hostname: 'eph-1a2b3c4d.eph.localhost', weight: 90 }, { hostname: 'eph-5e6f7a8b.eph.localhost', weight: 10 }]
 */
export function parseSplitWeights(args: readonly string[]): GateTarget[] {
  if (args.length === 0) throw new UsageError('split: expected HOST=WEIGHT arguments, e.g. eph-aaaa1111=90 eph-bbbb2222=10');
  if (args.length > MAX_SPLIT_TARGETS) throw new UsageError(`split: at most ${MAX_SPLIT_TARGETS} targets, got ${args.length}`);
  const seen = new Set<string>();
  const targets = args.map((arg) => {
    const eq = arg.lastIndexOf('=');
    const hostname = eq > 0 ? arg.slice(0, eq).trim().toLowerCase() : '';
    const raw = eq > 0 ? arg.slice(eq + 1).trim() : '';
    if (!hostname || !raw) throw new UsageError(`split: expected HOST=WEIGHT, got '${arg}'`);
    if (!/^\d+$/.test(raw) || Number(raw) > 100) {
      throw new UsageError(`split: the weight in '${arg}' must be a whole number from 0 to 100`);
    }
    if (seen.has(hostname)) throw new UsageError(`split: ${hostname} is given twice`);
    seen.add(hostname);
    return { hostname, weight: Number(raw) };
  });
  if (targets.every((t) => t.weight === 0)) throw new UsageError('split: at least one weight must be above 0');
  return targets;
}
