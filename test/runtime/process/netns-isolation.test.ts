import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ProcessDriver } from '../../../src/runtime/process/process-driver.ts';
import { listNamespaces, listVeths, namespacePids } from '../../../src/runtime/process/netns.ts';
import { waitReady } from '../../../src/runtime/ready.ts';
import { SERVER_CJS, httpGet, makeDir, netnsSkip, pidsWithArg, procfileSpec, readLog, removeDir, waitFor } from './helpers.ts';

const skip = netnsSkip();
// Own prefix and subnet: test files run in parallel and must not share namespaces or addresses.
const PREFIX = 'tni';
const H1 = 'eph-a1000001.eph.test';
const H2 = 'eph-a1000002.eph.test';

let app = '';
let state = '';
let driver: ProcessDriver;

before(async () => {
  if (skip) return;
  app = await makeDir({ 'server.cjs': SERVER_CJS, Procfile: 'web: node server.cjs\n' });
  state = await makeDir({});
  driver = new ProcessDriver({ stateDir: join(state, 'run'), prefix: PREFIX, subnet: '10.214.1.0/24', isolation: 'netns' });
});

after(async () => {
  if (skip) return;
  await driver.close();
  await removeDir(app);
  await removeDir(state);
});

test('a Procfile app listens on 8080 in its own namespace and is reached at the upstream', { skip }, async () => {
  assert.match(driver.isolation, /network namespace/);
  const up = await driver.start(procfileSpec(H1, app, 'node server.cjs', state));
  assert.equal(up.port, 8080);
  assert.match(up.host, /^10\.214\.1\.\d+$/);
  await waitReady(up, 5000);
  const res = await httpGet(up);
  assert.equal(res.status, 200);
  assert.equal(res.body, 'hello port=8080 uid=65534 home=/tmp\n');
  assert.ok(driver.isRunning(H1));
  assert.ok((await listNamespaces()).includes('tni-a1000001'));
});

test('two instances listen on 8080 at the same time, each at its own address', { skip }, async () => {
  const up1 = await driver.start(procfileSpec(H1, app, 'node server.cjs', state));
  const up2 = await driver.start(procfileSpec(H2, app, 'node server.cjs', state));
  assert.equal(up1.port, 8080);
  assert.equal(up2.port, 8080);
  assert.notEqual(up1.host, up2.host);
  await waitReady(up2, 5000);
  assert.equal((await httpGet(up1)).status, 200);
  assert.equal((await httpGet(up2)).status, 200);
});

test('the image directory is read-only for the app: its write attempt fails and the log shows it', { skip }, async () => {
  const log = join(state, `${H1}.log`);
  await waitFor('the write attempt in the log', async () => /write: /.test(await readLog(log)));
  assert.match(await readLog(log), /write: EROFS/);
  assert.equal(existsSync(join(app, 'written.txt')), false);
});

test('stop ends every process of the instance and deletes its namespace and veth', { skip }, async () => {
  const exits: string[] = [];
  driver.onExit((h, info) => exits.push(`${h} requested=${info.requested}`));
  await driver.stop(H1);
  await driver.stop(H2);
  assert.equal(driver.isRunning(H1), false);
  assert.deepEqual(exits.sort(), [`${H1} requested=true`, `${H2} requested=true`]);
  assert.deepEqual(await pidsWithArg(app), []);
  const namespaces = await listNamespaces();
  assert.ok(!namespaces.includes('tni-a1000001') && !namespaces.includes('tni-a1000002'), namespaces.join(','));
  // What is left with the prefix are spares made ahead of the next starts: no process runs in them.
  const spares = namespaces.filter((ns) => ns.startsWith(`${PREFIX}-`));
  assert.ok(spares.length <= 2 && spares.every((ns) => /^tni-w[0-9a-f]{7}$/.test(ns)), namespaces.join(','));
  for (const ns of spares) assert.deepEqual(await namespacePids(ns), [], ns);
  const veths = (await listVeths()).filter((v) => v.startsWith('vtni'));
  assert.deepEqual(veths.sort(), spares.map((ns) => `v${ns.replace('-', '')}`).sort());
  // The app saw SIGTERM before the end (graceful stop), and the log says the stop was requested.
  const text = await readLog(join(state, `${H1}.log`));
  assert.match(text, /got SIGTERM/);
  assert.match(text, /\(stop requested\)\n$/);
  // Stopping again is a no-op.
  await driver.stop(H1);
});
