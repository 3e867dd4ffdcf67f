/**
 * CLI start-up against its peer, `node -e 0`, in the same run: paired, alternating runs of
 * `eph --version` and `eph ls` (against a real cloud on loopback) and of `node -e 0`; prints medians and
 * the ratios. Goal (issue 9): both within 2× of `node -e 0`. Build first (`npm run build`): a bundle older
 * than the sources makes bin/eph.js fall back to compiling them, which this bench reports.
 *
 *   node bin/run-ts.js bench/cli-startup.ts [--runs 21]
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { startTestCloud } from '../test/helpers/cloud.ts';

const args = process.argv.slice(2);
const RUNS = (() => {
  const i = args.indexOf('--runs');
  return i >= 0 ? Number(args[i + 1]) : 21;
})();
const EPH = resolve('bin/eph.js');

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** Wall time of one run. Not spawnSync: the cloud that answers `eph ls` runs in this process. */
function timed(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(process.execPath, argv, { env, stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`${argv.join(' ')} exited ${code}`));
      else resolvePromise(Number(process.hrtime.bigint() - t0) / 1e6);
    });
  });
}

const cloud = await startTestCloud();
try {
  const env = { ...process.env, EPH_URL: cloud.apiUrl, EPH_USER: cloud.alice.id, EPH_TOKEN: cloud.alice.token };
  const rows: Record<string, number[]> = { 'node -e 0': [], 'eph --version': [], 'eph ls': [] };
  for (let i = 0; i < RUNS; i++) {
    rows['node -e 0']!.push(await timed(['-e', '0'], env));
    rows['eph --version']!.push(await timed([EPH, '--version'], env));
    rows['eph ls']!.push(await timed([EPH, 'ls', '--json'], env));
  }
  const base = median(rows['node -e 0']!);
  console.log(`runs: ${RUNS} each, alternating`);
  for (const [name, xs] of Object.entries(rows)) {
    console.log(`${name.padEnd(14)} median ${median(xs).toFixed(1).padStart(7)} ms   ${(median(xs) / base).toFixed(2)}× node -e 0`);
  }
} finally {
  await cloud.close();
}
