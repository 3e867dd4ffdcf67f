import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { ExitInfo } from '../../../src/runtime/driver.ts';
import { ProcessDriver } from '../../../src/runtime/process/process-driver.ts';
import { waitReady } from '../../../src/runtime/ready.ts';
import { SERVER_CJS, httpGet, makeDir, pidsWithArg, procfileSpec, readLog, removeDir, waitFor } from './helpers.ts';

// Port mode needs neither root nor namespaces: these run everywhere.
let app = '';
let driver: ProcessDriver;
const exits = new Map<string, ExitInfo>();

before(async () => {
  app = await makeDir({ 'server.cjs': SERVER_CJS });
  driver = new ProcessDriver({ stateDir: join(app, 'run'), prefix: 'tpm', isolation: 'port' });
  driver.onExit((h, info) => exits.set(h, info));
});

after(async () => {
  await driver.close();
  await removeDir(app);
});

test('port mode: each instance gets its own loopback port in PORT and says so in isolation', async () => {
  assert.equal(driver.mode, 'port');
  assert.match(driver.isolation, /^port per instance/);
  const up1 = await driver.start(procfileSpec('eph-c3000001.t', app, 'sleep 123461 & exec node server.cjs', app));
  const up2 = await driver.start(procfileSpec('eph-c3000002.t', app, 'node server.cjs', app));
  assert.equal(up1.host, '127.0.0.1');
  assert.notEqual(up1.port, up2.port);
  await waitReady(up1, 5000);
  await waitReady(up2, 5000);
  assert.match((await httpGet(up1)).body, new RegExp(`^hello port=${up1.port} `));
  assert.match((await httpGet(up2)).body, new RegExp(`^hello port=${up2.port} `));
});

test('port mode: start() of a running instance answers the same upstream', async () => {
  const a = await driver.start(procfileSpec('eph-c3000002.t', app, 'node server.cjs', app));
  const b = await driver.start(procfileSpec('eph-c3000002.t', app, 'node server.cjs', app));
  assert.deepEqual(a, b);
});

test('port mode: stop kills the whole process group, background children included', async () => {
  assert.equal((await pidsWithArg('123461')).length, 1);
  await driver.stop('eph-c3000001.t');
  assert.deepEqual(exits.get('eph-c3000001.t')?.requested, true);
  assert.deepEqual(await pidsWithArg('123461'), []);
  assert.match(await readLog(join(app, 'eph-c3000001.t.log')), /got SIGTERM\n[^]*\(stop requested\)\n$/);
});

test('port mode: an app that ignores SIGTERM is killed after the grace period', async () => {
  const quick = new ProcessDriver({ stateDir: join(app, 'run-quick'), prefix: 'tpq', isolation: 'port', stopGraceMs: 300 });
  const h = 'eph-c3000003.t';
  await quick.start(procfileSpec(h, app, `exec node -e "process.on('SIGTERM', () => console.log('ignoring TERM')); console.log('up'); setInterval(() => {}, 1000)"`, app));
  await waitFor('the app to start', async () => /up\n/.test(await readLog(join(app, `${h}.log`))));
  const exited = new Promise<ExitInfo>((resolve) => quick.onExit((_h, info) => resolve(info)));
  const t0 = Date.now();
  await quick.stop(h);
  assert.ok(Date.now() - t0 >= 250, 'waited for the grace period');
  assert.deepEqual(await exited, { code: null, signal: 'SIGKILL', requested: true });
  assert.match(await readLog(join(app, `${h}.log`)), /ignoring TERM\n[^]*killed by signal SIGKILL \(stop requested\)\n$/);
});

test('port mode: a start issued while the instance is stopping starts it again after the stop', async () => {
  const h = 'eph-c3000004.t';
  const first = await driver.start(procfileSpec(h, app, 'node server.cjs', app));
  await waitReady(first, 5000);
  const stopping = driver.stop(h);
  const again = driver.start(procfileSpec(h, app, 'node server.cjs', app));
  await stopping;
  const second = await again;
  assert.ok(driver.isRunning(h));
  await waitReady(second, 5000);
  assert.equal((await httpGet(second)).status, 200);
  await driver.stop(h);
});
