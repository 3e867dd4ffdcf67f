import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ProcessDriver } from '../../../src/runtime/process/process-driver.ts';
import { deleteNamespace, ip, listNamespaces, listVeths } from '../../../src/runtime/process/netns.ts';
import { procStat } from '../../../src/runtime/process/process-group.ts';
import { makeDir, netnsSkip, pidsWithArg, removeDir, waitFor } from './helpers.ts';

const skip = netnsSkip();
const LEFTOVER = { ns: 'trc-0badc0de', hostVeth: 'vtrc0badc0de' };
// Same shape, another prefix: recover() must not touch it.
const FOREIGN = { ns: 'trx-0badc0de', hostVeth: 'vtrx0badc0de' };
let dir = '';

before(async () => {
  if (skip) return;
  dir = await makeDir({});
});

after(async () => {
  if (skip) return;
  for (const n of [LEFTOVER, FOREIGN]) await deleteNamespace(n);
  for (const pid of [...(await pidsWithArg('123459')), ...(await pidsWithArg('123460'))]) process.kill(pid, 'SIGKILL');
  await removeDir(dir);
});

function detachedSleep(argv: string[]): number {
  const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: 'ignore' });
  child.unref();
  return child.pid!;
}

test('recover() kills processes left in namespaces of a crashed run, deletes those namespaces and veths, and kills recorded process groups', { skip }, async () => {
  for (const n of [LEFTOVER, FOREIGN]) {
    await ip(['netns', 'add', n.ns]);
    await ip(['link', 'add', n.hostVeth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', n.ns]);
  }
  // A stray host veth whose namespace is already gone.
  await ip(['link', 'add', 'vtrc00000bad', 'type', 'veth', 'peer', 'name', 'ptrc00000bad']);
  detachedSleep(['ip', 'netns', 'exec', LEFTOVER.ns, 'sleep', '123459']);
  // A port-mode leftover: only the pid record written by the crashed run points at it.
  const orphan = detachedSleep(['sleep', '123460']);
  await waitFor('the leftover processes', async () => (await pidsWithArg('123459')).length === 1 && procStat(orphan) !== null);
  const stateDir = join(dir, 'run');
  await mkdir(join(stateDir, 'trc-00c0ffee'), { recursive: true });
  await writeFile(join(stateDir, 'trc-00c0ffee.json'), JSON.stringify({ hostname: 'eph-00c0ffee.x', pid: orphan, startTime: procStat(orphan)!.startTime }));

  const driver = new ProcessDriver({ stateDir, prefix: 'trc', subnet: '10.214.3.0/24', isolation: 'netns' });
  await driver.recover();
  await driver.close();

  assert.deepEqual(await pidsWithArg('123459'), []);
  await waitFor('the recorded orphan to die', () => procStat(orphan) === null);
  const namespaces = await listNamespaces();
  assert.ok(!namespaces.includes(LEFTOVER.ns));
  assert.ok(namespaces.includes(FOREIGN.ns), 'a namespace of another prefix is left alone');
  const veths = await listVeths();
  assert.ok(!veths.includes(LEFTOVER.hostVeth) && !veths.includes('vtrc00000bad'), veths.join(','));
  assert.ok(veths.includes(FOREIGN.hostVeth));
  assert.equal(existsSync(join(stateDir, 'trc-00c0ffee.json')), false);
  assert.equal(existsSync(join(stateDir, 'trc-00c0ffee')), false);
});

test('recover() leaves a process alone when its pid now belongs to someone else', { skip }, async () => {
  const bystander = detachedSleep(['sleep', '123460']);
  await waitFor('the bystander', () => procStat(bystander) !== null);
  const stateDir = join(dir, 'run2');
  await mkdir(stateDir, { recursive: true });
  // Same pid, different start time: the recorded process is long gone.
  await writeFile(join(stateDir, 'trc-00c0ffee.json'), JSON.stringify({ hostname: 'eph-00c0ffee.x', pid: bystander, startTime: 1 }));
  const driver = new ProcessDriver({ stateDir, prefix: 'trc', subnet: '10.214.3.0/24', isolation: 'netns' });
  await driver.recover();
  await driver.close();
  assert.notEqual(procStat(bystander), null);
  process.kill(bystander, 'SIGKILL');
});
