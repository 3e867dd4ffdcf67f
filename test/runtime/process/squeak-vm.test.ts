import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ExitInfo } from '../../../src/runtime/driver.ts';
import { ProcessDriver } from '../../../src/runtime/process/process-driver.ts';
import { listNamespaces } from '../../../src/runtime/process/netns.ts';
import { makeDir, netnsSkip, pidsWithArg, procfileSpec, readLog, removeDir, waitFor } from './helpers.ts';

// A real Smalltalk VM: Debian's squeak-vm with the Scratch image. It ignores
// start-up scripts and has no HTTP server, so it proves process handling only.
const SCRATCH_IMAGE = '/usr/share/scratch/Scratch.image';

function findSqueakVm(): string | null {
  const root = '/usr/lib/squeak';
  if (!existsSync(root)) return null;
  for (const v of readdirSync(root)) {
    const vm = join(root, v, 'squeakvm');
    if (existsSync(vm)) return vm;
  }
  return null;
}

const vm = findSqueakVm();
const skip = netnsSkip() || (!vm ? 'squeak-vm is not installed' : !existsSync(SCRATCH_IMAGE) ? 'scratch (Scratch.image) is not installed' : false);
let dir = '';

before(async () => {
  if (skip) return;
  dir = await makeDir({});
  await copyFile(SCRATCH_IMAGE, join(dir, 'Scratch.image'));
});

after(async () => {
  if (skip) return;
  for (const pid of await pidsWithArg(join(dir, 'Scratch.image'))) process.kill(pid, 'SIGKILL');
  await removeDir(dir);
});

test('a real Smalltalk VM (squeakvm + Scratch.image) starts in a sandboxed namespace, stays up, stops, and leaves no process', { skip }, async () => {
  const driver = new ProcessDriver({ stateDir: join(dir, 'run'), prefix: 'tsq', subnet: '10.214.5.0/24', isolation: 'netns' });
  const exits: ExitInfo[] = [];
  driver.onExit((_h, info) => exits.push(info));
  const h = 'eph-e5000001.t';
  const image = join(dir, 'Scratch.image');
  await driver.start(procfileSpec(h, dir, `${vm} -vm-display-null -vm-sound-null ${image}`, dir));
  const vmPids = (): Promise<number[]> => pidsWithArg(image, /squeakvm$/);
  await waitFor('the VM process', async () => (await vmPids()).length === 1 || exits.length > 0);
  assert.equal(exits.length, 0, await readLog(join(dir, `${h}.log`)));
  await new Promise((r) => setTimeout(r, 1000)); // "stays up" is the property under test: there is no event to wait for
  assert.equal((await vmPids()).length, 1, 'still running after 1 s');
  assert.ok(driver.isRunning(h));
  assert.equal(exits.length, 0);
  await driver.stop(h);
  assert.equal(exits.length, 1);
  assert.equal(exits[0]!.requested, true);
  assert.deepEqual(await pidsWithArg(image), [], 'no process of the instance is left');
  assert.ok(!(await listNamespaces()).includes('tsq-e5000001'));
  assert.match(await readLog(join(dir, `${h}.log`)), /\(stop requested\)\n$/);
  await driver.close();
});
