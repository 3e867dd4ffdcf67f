import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { buildTarGz, buildZip } from '../helpers/archives.ts';
import { startTestCloud, STANDIN_VM, type TestCloud } from '../helpers/cloud.ts';

/**
 * The Pharo layout (one *.image with its .changes and startup.st) through the
 * whole cloud. No Pharo VM can be installed here, so the VM is the stand-in
 * test/fixtures/pharo-vm-standin, which takes the real VM's arguments, checks
 * the image, reports startup.st and serves HTTP on $PORT.
 */
let cloud: TestCloud;

before(async () => {
  cloud = await startTestCloud({ pharoVm: STANDIN_VM });
});
after(() => cloud?.close());

for (const [label, build] of [
  ['zip', () => buildZip('examples/pharo-app')],
  ['tar.gz', () => buildTarGz('examples/pharo-app')],
] as const) {
  test(`examples/pharo-app (${label}) is served through the gate by the stand-in Pharo VM, which saw startup.st`, async () => {
    const h = await cloud.publish(await build(), { name: `pharo-app.${label}` });
    const r = await cloud.visit(h, '/hello');
    assert.equal(r.status, 200, r.body);
    assert.equal(r.body, 'pharo-standin: app.image startup.st=seen\n');

    const log = (await cloud.api('GET', `/v1/instances/${h}/logs`)).text;
    assert.match(log, /pharo-standin: ran startup\.st \(\d+ bytes\)/);
    // Run as the real VM is: `$EPH_PHARO_VM --headless <image> --no-quit`.
    const launch = log.split('\n').find((l) => / starting /.test(l)) ?? '';
    assert.match(launch, /pharo-vm-standin --headless \S*app\.image --no-quit/);
    assert.equal((await cloud.api('GET', `${cloud.compatBase()}/${h}/isRunning`)).json, true);
    await cloud.instances.stop(h);
  });
}

test('the Pharo app (stand-in VM) is stopped cleanly: SIGTERM reaches the VM and nothing is left running', async () => {
  const h = await cloud.publish(await buildZip('examples/pharo-app'));
  assert.equal((await cloud.visit(h)).status, 200);
  const off = await cloud.api('PUT', `${cloud.compatBase()}/${h}/isRunning`, { body: false });
  assert.equal(off.status, 200, off.text);
  assert.equal(cloud.driver.isRunning(h), false);
  const log = (await cloud.api('GET', `/v1/instances/${h}/logs`)).text;
  assert.match(log, /pharo-standin: SIGTERM, quitting/);
  assert.match(log, /exited with code 0 \(stop requested\)/);
});
