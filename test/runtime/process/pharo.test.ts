import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { LaunchSpec } from '../../../src/runtime/driver.ts';
import { ProcessDriver } from '../../../src/runtime/process/process-driver.ts';
import { waitReady } from '../../../src/runtime/ready.ts';
import { httpGet, makeDir, netnsSkip, pidsWithArg, readLog, removeDir, waitFor } from './helpers.ts';
import { standinVm } from '../../helpers/standin-vm.ts';
import { PSK_PORT, TUNNELLED_PHARO_IMAGE, pskGet } from '../stunnel-psk.ts';

const STANDIN = standinVm();
const skip = netnsSkip();
let image = '';
let tunnelled = '';
let state = '';

before(async () => {
  image = await makeDir({ 'app.image': 'not really an image', 'startup.st': "Transcript show: 'hello'.\n" });
  tunnelled = await makeDir(TUNNELLED_PHARO_IMAGE);
  state = await makeDir({});
});

after(async () => {
  for (const d of [image, tunnelled, state]) await removeDir(d);
});

function pharoSpec(hostname: string, imageDir: string, pharoVm = STANDIN): LaunchSpec {
  return { hostname, imageDir, kind: 'pharo', entry: 'app.image', pharoVm, env: {}, logFile: join(state, `${hostname}.log`), maxLogBytes: 1 << 16 };
}

test('a missing Pharo VM is DEPENDENCY_MISSING with a hint to set EPH_PHARO_VM', async () => {
  const driver = new ProcessDriver({ stateDir: join(state, 'run-missing'), prefix: 'tph', isolation: 'port' });
  await assert.rejects(driver.start(pharoSpec('eph-d4000009.t', image, 'no-such-pharo-vm')), {
    code: 'DEPENDENCY_MISSING',
    message: 'Pharo VM not found: no-such-pharo-vm (set EPH_PHARO_VM)',
  });
  assert.equal(driver.isRunning('eph-d4000009.t'), false);
});

test('a missing image is START_FAILED, not a crash of the VM', async () => {
  const driver = new ProcessDriver({ stateDir: join(state, 'run-noimage'), prefix: 'tph', isolation: 'port' });
  await assert.rejects(driver.start({ ...pharoSpec('eph-d4000008.t', image), entry: 'other.image' }), { code: 'START_FAILED' });
  await assert.rejects(driver.start({ ...pharoSpec('eph-d4000008.t', image), entry: '../x.image' }), { code: 'START_FAILED' });
});

test('pharo (port mode, stand-in VM): `VM --headless IMAGE --no-quit` runs in the image directory with startup.st beside it', async () => {
  const driver = new ProcessDriver({ stateDir: join(state, 'run-port'), prefix: 'tph', isolation: 'port' });
  const up = await driver.start(pharoSpec('eph-d4000001.t', image));
  try {
    await waitReady(up, 5000);
    assert.equal((await httpGet(up)).body, 'pharo-standin: app.image startup.st=seen\n');
    assert.match(await readLog(join(state, 'eph-d4000001.t.log')), /--headless \S+app\.image --no-quit\n[^]*ran startup\.st/);
  } finally {
    await driver.stop('eph-d4000001.t');
  }
});

test('pharo (namespace, stand-in VM): the VM runs sandboxed on 8080 in its namespace', { skip }, async () => {
  const driver = new ProcessDriver({ stateDir: join(state, 'run-ns'), prefix: 'tph', subnet: '10.214.4.0/24', isolation: 'netns' });
  const up = await driver.start(pharoSpec('eph-d4000002.t', image));
  try {
    assert.equal(up.port, 8080);
    await waitReady(up, 5000);
    assert.equal((await httpGet(up)).body, 'pharo-standin: app.image startup.st=seen\n');
  } finally {
    await driver.close();
  }
});

test('stunnel.conf beside the image: stunnel runs inside the instance with the forced settings and stops with it', { skip }, async () => {
  const driver = new ProcessDriver({ stateDir: join(state, 'run-tls'), prefix: 'tph', subnet: '10.214.4.0/24', isolation: 'netns' });
  const h = 'eph-d4000003.t';
  const up = await driver.start(pharoSpec(h, tunnelled));
  try {
    await waitReady(up, 5000);
    await waitReady({ host: up.host, port: PSK_PORT }, 5000);
    // Through stunnel's TLS-PSK endpoint to the app on the instance's own loopback.
    const body = await pskGet(up.host);
    assert.match(body, /^HTTP\/1\.[01] 200[^]*pharo-standin: app\.image startup\.st=absent\n$/);
    assert.equal((await pidsWithArg('/run/eph/stunnel.conf', /stunnel4?$/)).length, 1);
  } finally {
    await driver.close();
  }
  await waitFor('stunnel to be gone', async () => (await pidsWithArg('/run/eph/stunnel.conf', /stunnel4?$/)).length === 0, 2000);
});
