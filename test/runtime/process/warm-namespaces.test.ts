import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ProcessDriver } from '../../../src/runtime/process/process-driver.ts';
import { findExecutable } from '../../../src/runtime/process/executables.ts';
import { ip, listNamespaces, listVeths, namespacePids } from '../../../src/runtime/process/netns.ts';
import { waitReady } from '../../../src/runtime/ready.ts';
import { SERVER_CJS, httpGet, makeDir, netnsSkip, procfileSpec, readLog, removeDir, waitFor } from './helpers.ts';

const skip = netnsSkip();
// Own prefixes and subnets: test files run in parallel.
const SPARE = (prefix: string): RegExp => new RegExp(`^${prefix}-w[0-9a-f]{7}$`);
let app = '';
let state = '';

before(async () => {
  if (skip) return;
  app = await makeDir({ 'server.cjs': SERVER_CJS, Procfile: 'web: node server.cjs\n' });
  state = await makeDir({});
});

after(async () => {
  if (skip) return;
  await removeDir(app);
  await removeDir(state);
});

const withPrefix = async (prefix: string): Promise<string[]> => (await listNamespaces()).filter((ns) => ns.startsWith(`${prefix}-`));

test('recover() fills the pool; a start runs in a warm namespace, also named after its hostname; the pool refills; stop deletes the used one; close() leaves nothing', { skip }, async () => {
  const driver = new ProcessDriver({ stateDir: join(state, 'run-pool'), prefix: 'twn', subnet: '10.214.7.0/24', isolation: 'netns', warmNamespaces: 2 });
  try {
    await driver.recover();
    await waitFor('two warm namespaces', () => driver.warmNamespaces === 2);
    const warm = await withPrefix('twn');
    assert.equal(warm.length, 2, warm.join(','));
    assert.ok(warm.every((ns) => SPARE('twn').test(ns)), warm.join(','));

    const h = 'eph-f7000001.eph.test';
    const up = await driver.start(procfileSpec(h, app, 'node server.cjs', state));
    await waitReady(up, 5000);
    assert.equal((await httpGet(up)).body, 'hello port=8080 uid=65534 home=/tmp\n');
    // The app runs in one of the warm namespaces, which is also reachable by the hostname-derived name.
    const used = [];
    for (const ns of warm) if ((await namespacePids(ns)).length > 0) used.push(ns);
    assert.equal(used.length, 1, `app in ${used.join(',')}`);
    assert.ok((await namespacePids('twn-f7000001')).length > 0, 'the hostname-derived name points at the same namespace');
    assert.match(await ip(['-n', used[0]!, '-4', 'addr', 'show', 'eth0']), new RegExp(`inet ${up.host.replace(/\./g, '\\.')}/30`));
    assert.match(await readLog(join(state, `${h}.log`)), /ready in advance, also named twn-f7000001/);

    await waitFor('the pool to refill', () => driver.warmNamespaces === 2);
    assert.equal((await withPrefix('twn')).filter((ns) => SPARE('twn').test(ns)).length, 3, 'two spares plus the used one');

    await driver.stop(h);
    const left = await withPrefix('twn');
    assert.ok(!left.includes(used[0]!) && !left.includes('twn-f7000001'), `the used namespace is deleted, not recycled: ${left.join(',')}`);
    assert.equal(left.length, 2);
  } finally {
    await driver.close();
  }
  assert.deepEqual(await withPrefix('twn'), []);
  assert.deepEqual((await listVeths()).filter((v) => v.startsWith('vtwn')), []);
});

test('recover() in a new run deletes the spares of an abandoned one and makes its own', { skip }, async () => {
  const abandoned = new ProcessDriver({ stateDir: join(state, 'run-abandoned'), prefix: 'twr', subnet: '10.214.8.0/24', isolation: 'netns', warmNamespaces: 1 });
  const next = new ProcessDriver({ stateDir: join(state, 'run-abandoned'), prefix: 'twr', subnet: '10.214.8.0/24', isolation: 'netns', warmNamespaces: 1 });
  try {
    await abandoned.recover();
    await waitFor('a warm namespace', () => abandoned.warmNamespaces === 1);
    const old = await withPrefix('twr');
    assert.equal(old.length, 1);
    await next.recover();
    await waitFor('the new run’s warm namespace', () => next.warmNamespaces === 1);
    const now = await withPrefix('twr');
    assert.equal(now.length, 1, now.join(','));
    assert.notEqual(now[0], old[0]);
  } finally {
    await next.close();
    await abandoned.close();
  }
  assert.deepEqual(await withPrefix('twr'), []);
});

test('a failing refill does not fail starts: the start creates its namespace itself and says why in the log', { skip }, async (t) => {
  // An `ip` in front of the real one that refuses to make spare namespaces (names `tfb-w…`).
  const realIp = findExecutable('ip')!;
  const bin = await makeDir({});
  const fake = join(bin, 'ip');
  await writeFile(fake, `#!/bin/sh
input=""
case "$*" in *-batch*) input=$(cat) ;; esac
case "$* $input" in *tfb-w*|*vtfbw*) echo "refused by the test" >&2; exit 1 ;; esac
if [ -n "$input" ]; then printf '%s\\n' "$input" | exec ${realIp} "$@"; else exec ${realIp} "$@"; fi
`);
  await chmod(fake, 0o755);
  const path = process.env.PATH;
  process.env.PATH = `${bin}:${path}`;
  const driver = new ProcessDriver({ stateDir: join(state, 'run-fallback'), prefix: 'tfb', subnet: '10.214.9.0/24', isolation: 'netns', warmNamespaces: 2 });
  t.after(async () => {
    await driver.close();
    process.env.PATH = path;
    await removeDir(bin);
  });
  await driver.recover();
  const h = 'eph-f9000001.eph.test';
  const up = await driver.start(procfileSpec(h, app, 'node server.cjs', state));
  await waitReady(up, 5000);
  assert.equal((await httpGet(up)).status, 200);
  assert.equal(driver.warmNamespaces, 0);
  assert.deepEqual(await withPrefix('tfb'), ['tfb-f9000001'], 'the namespace named after the hostname, made on start');
  assert.ok((await namespacePids('tfb-f9000001')).length > 0);
  assert.match(await readLog(join(state, `${h}.log`)), /could not prepare a spare namespace \(created this one on start\): .*refused by the test/);
  await driver.stop(h);
  assert.deepEqual(await withPrefix('tfb'), []);
});
