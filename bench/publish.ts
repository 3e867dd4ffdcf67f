/**
 * Publish intake cost (issue: archive intake): a ~50 MB zip of incompressible
 * data plus a Procfile, timed through ImageStore.intake (stream to disk with
 * sha256, fsync, CRC-checked unpack, fsync of every file and directory, atomic
 * rename) against `sha256sum` + `unzip -q` of the same file as child
 * processes (no fsync, no archive copy), alternating, several runs; prints the
 * medians and their ratio.
 *
 *   node --import tsx bench/publish.ts [--mb 50] [--runs 5]
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeTree } from '../src/images/fs-util.ts';
import { ImageStore } from '../src/images/image-store.ts';
import { zipFrom, type ZipEntrySpec } from '../test/helpers/archives.ts';

const args = process.argv.slice(2);
const opt = (name: string, dflt: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const MB = opt('mb', 50);
const RUNS = opt('runs', 5);

for (const tool of ['sha256sum', 'unzip']) {
  if (spawnSync(tool, ['--help'], { stdio: 'ignore' }).error) {
    console.error(`${tool} is not installed`);
    process.exit(1);
  }
}

const dir = await mkdtemp(join(tmpdir(), 'eph-bench-publish-'));
process.on('exit', () => spawnSync('rm', ['-rf', dir]));
const zipPath = join(dir, 'app.zip');
// Several files, as a real app has, most of the bytes in a few big ones.
const entries: ZipEntrySpec[] = [{ name: 'Procfile', data: 'web: node server.js\n' }, { name: 'server.js', data: 'console.log("hi")\n' }];
for (let i = 0; i < 4; i++) entries.push({ name: `assets/blob${i}.bin`, data: randomBytes((MB * 1024 * 1024) / 4) });
const zip = await zipFrom(entries);
await writeFile(zipPath, zip);
console.log(`archive: ${(zip.length / 1024 / 1024).toFixed(1)} MiB, ${entries.length} entries`);

const store = new ImageStore({
  root: join(dir, 'data/images'),
  tmpDir: join(dir, 'data/tmp'),
  limits: { maxArchiveBytes: 2 * zip.length, maxUnpackedBytes: 2 * zip.length, maxEntries: 1000 },
});
await store.recover();

async function timeIntake(): Promise<number> {
  const t0 = process.hrtime.bigint();
  const r = await store.intake(createReadStream(zipPath, { highWaterMark: 64 * 1024 }));
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.reused) throw new Error('bench: intake reused a digest');
  await store.remove(r.digest);
  return ms;
}

async function timeTools(): Promise<number> {
  const out = join(dir, 'unzipped');
  const t0 = process.hrtime.bigint();
  const sum = spawnSync('sha256sum', [zipPath], { encoding: 'utf8' });
  const unzip = spawnSync('unzip', ['-q', '-o', zipPath, '-d', out]);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (sum.status !== 0 || unzip.status !== 0) throw new Error(`bench: sha256sum/unzip failed: ${sum.stderr}${unzip.stderr}`);
  await rm(out, { recursive: true, force: true });
  return ms;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

await timeIntake(); // warm-up: JIT, page cache
await timeTools();
const intake: number[] = [];
const tools: number[] = [];
for (let i = 0; i < RUNS; i++) {
  intake.push(await timeIntake());
  tools.push(await timeTools());
}
const mi = median(intake);
const mt = median(tools);
const fmt = (xs: number[]): string => xs.map((x) => x.toFixed(0)).join(' ');
console.log(`ImageStore.intake      median ${mi.toFixed(0)} ms  (runs: ${fmt(intake)})  ${((zip.length / 1024 / 1024) / (mi / 1000)).toFixed(0)} MiB/s`);
console.log(`sha256sum + unzip -q   median ${mt.toFixed(0)} ms  (runs: ${fmt(tools)})  ${((zip.length / 1024 / 1024) / (mt / 1000)).toFixed(0)} MiB/s`);
console.log(`ratio intake / tools:  ${(mi / mt).toFixed(2)}`);
await removeTree(dir);
