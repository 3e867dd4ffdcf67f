import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ExitInfo } from '../../../src/runtime/driver.ts';
import { ProcessDriver } from '../../../src/runtime/process/process-driver.ts';
import { listNamespaces } from '../../../src/runtime/process/netns.ts';
import { makeDir, netnsSkip, pidsWithArg, procfileSpec, readLog, removeDir, waitFor } from './helpers.ts';

const skip = netnsSkip();
let dir = '';
let driver: ProcessDriver;
const exits = new Map<string, ExitInfo>();

before(async () => {
  if (skip) return;
  dir = await makeDir({});
  driver = new ProcessDriver({ stateDir: join(dir, 'run'), prefix: 'tex', subnet: '10.214.2.0/24', isolation: 'netns' });
  driver.onExit((h, info) => exits.set(h, info));
});

after(async () => {
  if (skip) return;
  await driver.close();
  await removeDir(dir);
});

test('an app that crashes is reported with requested=false, its exit line is in the log, and nothing it started survives', { skip }, async () => {
  const h = 'eph-b2000001.eph.test';
  // The background sleep (marked by its odd duration) must die with the app.
  await driver.start(procfileSpec(h, dir, 'sleep 123458 & echo about to crash; sleep 0.2; exit 3', dir));
  await waitFor('the exit report', () => exits.has(h));
  assert.deepEqual(exits.get(h), { code: 3, signal: null, requested: false });
  assert.equal(driver.isRunning(h), false);
  const log = await readLog(join(dir, `${h}.log`));
  assert.match(log, /about to crash\n/);
  assert.match(log, /\[eph\] \S+ exited with code 3\n$/);
  assert.deepEqual(await pidsWithArg('123458'), []);
  assert.ok(!(await listNamespaces()).includes('tex-b2000001'));
});

test('the log stays within maxLogBytes and keeps the newest output', { skip }, async () => {
  const h = 'eph-b2000002.eph.test';
  const max = 4096;
  const chatty = 'i=0; while [ $i -lt 3000 ]; do echo "line $i of a chatty app ......................"; i=$((i+1)); done';
  await driver.start(procfileSpec(h, dir, chatty, dir, { maxLogBytes: max }));
  await waitFor('the exit report', () => exits.has(h));
  const path = join(dir, `${h}.log`);
  const text = await readLog(path);
  assert.ok((await stat(path)).size <= max, `log is ${(await stat(path)).size} bytes`);
  assert.match(text, /^\[eph\] earlier output dropped/);
  assert.match(text, /line 2999 of a chatty app/);
  assert.doesNotMatch(text, /line 0 of/);
  assert.match(text, /exited with code 0\n$/);
});

test('an app that ignores SIGTERM in its sandbox is killed after the grace period, with nothing left behind', { skip }, async () => {
  const quick = new ProcessDriver({ stateDir: join(dir, 'run-quick'), prefix: 'teq', subnet: '10.214.6.0/24', isolation: 'netns', stopGraceMs: 300 });
  const h = 'eph-b2000003.eph.test';
  await quick.start(procfileSpec(h, dir, `exec node -e "process.on('SIGTERM', () => console.log('ignoring TERM')); console.log('up 123462'); setInterval(() => {}, 1000)"`, dir));
  const log = join(dir, `${h}.log`);
  await waitFor('the app to start', async () => /up 123462\n/.test(await readLog(log)));
  const t0 = Date.now();
  await quick.stop(h);
  assert.ok(Date.now() - t0 >= 250, 'waited for the grace period');
  assert.match(await readLog(log), /ignoring TERM\n[^]*\(stop requested\)\n$/);
  assert.deepEqual(await pidsWithArg('123462'), []);
  assert.ok(!(await listNamespaces()).includes('teq-b2000003'));
  await quick.close();
});
