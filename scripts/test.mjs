#!/usr/bin/env node
// `npm test`: provisions the system packages the tests need (scripts/provision.mjs; EPH_NO_PROVISION=1 skips
// it), lints (Biome; EPH_SKIP_LINT=1 skips), type-checks, then runs every test/**/*.test.ts with node's test runner (tsx compiles on load), two
// files at a time. At the end it lists what was skipped and why, grouped by reason.
//
// A file that failed is run once more, alone: a failure that repeats fails the run; one that does not is
// printed as FLAKY at the end (and the run passes), so that one timing accident on a loaded CI machine does
// not throw away a submission, while a flaky test stays visible and is to be fixed.
// EPH_NO_RETRY=1 turns the second run off.
// Usage: npm test [-- PATH_FILTER ...]  e.g. npm test -- test/images
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

function find(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...find(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = find('test')
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const started = Date.now();
if (filters.length === 0) {
  spawnSync(process.execPath, ['scripts/provision.mjs'], { stdio: 'inherit' });
  if (!process.env.EPH_SKIP_LINT) {
    // Biome (biome.json): errors fail the run, warnings are shown.
    const lint = spawnSync('npx', ['biome', 'lint', '--max-diagnostics=50'], { stdio: 'inherit' });
    if (lint.status !== 0) process.exit(lint.status ?? 1);
  }
  if (!process.env.EPH_SKIP_TYPECHECK) {
    const tsc = spawnSync('npx', ['tsc', '--noEmit', '-p', '.'], { stdio: 'inherit' });
    if (tsc.status !== 0) process.exit(tsc.status ?? 1);
  }
}

const work = mkdtempSync(join(tmpdir(), 'eph-test-summary-'));

/** Runs the files; returns the JSON records of every finished test. */
function runFiles(list, concurrency, tag) {
  const summary = join(work, `${tag}.jsonl`);
  const r = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      '--test',
      `--test-concurrency=${concurrency}`,
      '--test-timeout=240000',
      '--test-reporter=spec',
      '--test-reporter-destination=stdout',
      '--test-reporter=./scripts/test-summary-reporter.mjs',
      `--test-reporter-destination=${summary}`,
      ...list,
    ],
    { stdio: 'inherit', env: { ...process.env, EPH_TEST: '1' } },
  );
  let records = [];
  try {
    records = readFileSync(summary, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
  } catch {
    // no summary: the runner itself failed; treat every file as failed
  }
  return { status: r.status ?? 1, records };
}

const rel = (f) => (f ? relative(process.cwd(), f) : '(unknown file)');
const testFiles = new Set(files.map(rel));
/**
 * The test files to run again for a failure: its own file, or, when the test was declared in a shared
 * suite module (test/runtime/driver.conformance.ts…), every test file that imports that module.
 */
function testFilesFor(file) {
  if (testFiles.has(file)) return [file];
  const base = file.split('/').pop().replace(/\.ts$/, '');
  const importers = [...testFiles].filter((t) => readFileSync(t, 'utf8').includes(`${base}.ts'`));
  return importers.length > 0 ? importers : [...testFiles];
}
const first = runFiles(files, 2, 'all');
let failedFiles = [...new Set(first.records.filter((r) => r.outcome === 'fail').flatMap((r) => testFilesFor(rel(r.file))))];
if (first.status !== 0 && failedFiles.length === 0) failedFiles = files.map(rel);

let status = first.status;
const flaky = [];
if (status !== 0 && failedFiles.length > 0 && !process.env.EPH_NO_RETRY && failedFiles.length <= 5) {
  console.log(`\n== ${failedFiles.length} file(s) failed; running each once more, alone: ${failedFiles.join(' ')}`);
  status = 0;
  for (const f of failedFiles) {
    const again = runFiles([f], 1, `retry-${failedFiles.indexOf(f)}`);
    if (again.status === 0) flaky.push(f);
    else status = again.status || 1;
  }
}

const skips = new Map();
for (const r of first.records) {
  if (r.outcome !== 'skip') continue;
  const list = skips.get(r.skip) ?? [];
  list.push(`${rel(r.file)}: ${r.name}`);
  skips.set(r.skip, list);
}
const counts = { pass: 0, fail: 0, skip: 0 };
for (const r of first.records) counts[r.outcome]++;
console.log('\n== summary');
console.log(`tests: ${counts.pass} passed, ${counts.fail} failed, ${counts.skip} skipped (first run), ${files.length} files, ${Math.round((Date.now() - started) / 1000)} s`);
if (skips.size > 0) {
  console.log('skipped, by reason:');
  for (const [reason, list] of skips) console.log(`  ${list.length} × ${reason}\n${list.slice(0, 3).map((x) => `      ${x}`).join('\n')}${list.length > 3 ? `\n      … and ${list.length - 3} more` : ''}`);
}
if (flaky.length > 0) {
  console.log(`FLAKY (failed once, passed when run again alone; fix these): ${flaky.join(' ')}`);
}
console.log(status === 0 ? 'result: PASS' : 'result: FAIL');
rmSync(work, { recursive: true, force: true });
process.exit(status);
