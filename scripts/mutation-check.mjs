#!/usr/bin/env node
// Re-applies the recorded deliberate breakages of src/ (scripts/mutations/*.json), one at a time, runs the
// tests each entry names, and requires them to fail: a mutation that no test notices is a hole in the suite.
//
//   node scripts/mutation-check.mjs [--json] [--stale] [ID|ISSUE ...]
//
// An entry: {"id", "issue", "file", "find", "replace", "tests": [...]}; `find` must occur exactly once in
// `file`. --stale only checks that every entry still applies to today's code (fast; run it in CI-like checks).
// The file is restored after each run, also on Ctrl-C. It edits src/ in place: run it on a quiet checkout.
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const json = args.includes('--json');
const staleOnly = args.includes('--stale');
const wanted = args.filter((a) => !a.startsWith('--'));

const dir = join('scripts', 'mutations');
const entries = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .flatMap((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')).map((e) => ({ ...e, source: f })));
const selected = entries.filter(
  (e) => wanted.length === 0 || wanted.includes(e.id) || wanted.includes(String(e.issue)),
);

let restore = null;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    restore?.();
    process.exit(130);
  });
}

function occurrences(text, find) {
  let n = 0;
  for (let i = text.indexOf(find); i !== -1; i = text.indexOf(find, i + 1)) n++;
  return n;
}

const results = [];
for (const e of selected) {
  const original = readFileSync(e.file, 'utf8');
  const n = occurrences(original, e.find);
  if (n !== 1) {
    results.push({ id: e.id, issue: e.issue, outcome: 'stale', detail: `find occurs ${n} times in ${e.file}` });
    continue;
  }
  if (staleOnly) {
    results.push({ id: e.id, issue: e.issue, outcome: 'applies' });
    continue;
  }
  restore = () => writeFileSync(e.file, original);
  writeFileSync(e.file, original.replace(e.find, e.replace));
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=dot', ...e.tests], {
    encoding: 'utf8',
    env: { ...process.env, EPH_TEST: '1' },
    timeout: 600_000,
  });
  restore();
  restore = null;
  const caught = r.status !== 0;
  results.push({ id: e.id, issue: e.issue, outcome: caught ? 'caught' : 'MISSED', seconds: Math.round((Date.now() - t0) / 1000) });
  if (!json) console.log(`${caught ? 'caught ' : 'MISSED '} ${e.id} (issue ${e.issue}, ${e.file})`);
}

const bad = results.filter((r) => r.outcome === 'stale' || r.outcome === 'MISSED');
if (json) console.log(JSON.stringify({ total: results.length, bad: bad.length, results }, null, 2));
else {
  for (const r of results.filter((x) => x.outcome === 'stale')) console.log(`stale   ${r.id}: ${r.detail}`);
  console.log(`${results.length} entries, ${results.length - bad.length} ${staleOnly ? 'apply' : 'caught'}, ${bad.length} not`);
}
process.exit(bad.length === 0 ? 0 : 1);
