import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { buildZip } from '../helpers/archives.ts';
import { procfileApp, startTestCloud, type TestCloud } from '../helpers/cloud.ts';
import { eph } from '../cli/run-eph.ts';

/**
 * Second, independent checks of behaviours that each had a single test:
 * the change is made through one API and observed through another (the
 * compatibility API, /v1, the `eph` CLI) or in the gate's routing table
 * itself, so that breaking one view cannot hide a broken behaviour.
 */
let cloud: TestCloud;
let zip: Buffer;

before(async () => {
  cloud = await startTestCloud();
  zip = await buildZip('examples/node-app');
});
after(() => cloud?.close());

const cliEnv = () => ({ EPH_URL: cloud.apiUrl, EPH_USER: cloud.alice.id, EPH_TOKEN: cloud.alice.token });

async function ephJson(...args: string[]): Promise<unknown> {
  const r = await eph([...args, '--json'], { env: cliEnv(), timeoutMs: 60_000 });
  assert.equal(r.code, 0, `eph ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** A fresh image (its digest unused by other instances): a distinct file in the node app. */
function uniqueZip(tag: string): Promise<Buffer> {
  const app = "import http from 'node:http';\nhttp.createServer((_q, s) => s.end('ok')).listen(8080);\n";
  return procfileApp(app, { 'tag.txt': `${tag} ${process.pid} ${Date.now()}` });
}

test('DELETE removes the hostname and the alias from the gate routing table itself (compat API and /v1)', async () => {
  const a = await cloud.publish(zip);
  assert.equal((await cloud.api('PUT', `${cloud.compatBase()}/${a}/alias`, { body: 'deleted-compat.example.org' })).status, 200);
  assert.ok(cloud.table.get(a), 'routed after publish');
  assert.ok(cloud.table.get('deleted-compat.example.org'), 'alias routed');
  assert.equal((await cloud.api('DELETE', `${cloud.compatBase()}/${a}`)).status, 200);
  assert.equal(cloud.table.get(a), undefined, 'no route left for the hostname');
  assert.equal(cloud.table.get('deleted-compat.example.org'), undefined, 'no route left for the alias');
  assert.ok(![...cloud.table.hosts()].includes(a));

  const b = await cloud.publish(zip);
  const patched = await cloud.api('PATCH', `/v1/instances/${b}`, { body: { alias: 'deleted-v1.example.org' } });
  assert.equal(patched.status, 200, patched.text);
  assert.equal((await cloud.api('DELETE', `/v1/instances/${b}`)).status, 200);
  assert.equal(cloud.table.get(b), undefined);
  assert.equal(cloud.table.get('deleted-v1.example.org'), undefined);
  assert.equal((await cloud.visit(b)).status, 404);
});

test('an alias moved through /v1 is seen moved through the compatibility API and the CLI', async () => {
  const a = await cloud.publish(zip);
  const b = await cloud.publish(zip);
  assert.equal((await cloud.api('PATCH', `/v1/instances/${a}`, { body: { alias: 'second-move.example.org' } })).status, 200);
  assert.equal((await cloud.api('PATCH', `/v1/instances/${b}`, { body: { alias: 'second-move.example.org' } })).status, 200);
  assert.equal((await cloud.api('GET', `${cloud.compatBase()}/${a}/alias`)).json, null, 'the old holder lost it');
  assert.equal((await cloud.api('GET', `${cloud.compatBase()}/${b}/alias`)).json, 'second-move.example.org');
  // The Pharo client looks instances up by alias: it finds the new holder.
  assert.equal(((await cloud.api('GET', `${cloud.compatBase()}/second-move.example.org`)).json as { hostname: string }).hostname, b);
  const shown = (await ephJson('show', 'second-move.example.org')) as { hostname: string };
  assert.equal(shown.hostname, b);
  assert.deepEqual(cloud.table.get('second-move.example.org')?.targets.map((t) => t.hostname), [b], 'the gate routes it to the new holder');
  // And back, through the CLI.
  await ephJson('alias', a, 'second-move.example.org');
  assert.equal((await cloud.api('GET', `${cloud.compatBase()}/${b}/alias`)).json, null);
  assert.equal(((await cloud.api('GET', `/v1/instances/${a}`)).json as { alias: string }).alias, 'second-move.example.org');
});

test('PUT isRunning answers the new value, and /v1 and the CLI agree', async () => {
  const h = await cloud.publish(zip);
  try {
    const on = await cloud.api('PUT', `${cloud.compatBase()}/${h}/isRunning`, { body: true });
    assert.equal(on.status, 200, on.text);
    assert.equal(on.text, 'true');
    assert.equal(((await cloud.api('GET', `/v1/instances/${h}`)).json as { state: string }).state, 'running');
    assert.equal(((await ephJson('show', h)) as { state: string }).state, 'running');
    const off = await cloud.api('PUT', `${cloud.compatBase()}/${h}/isRunning`, { body: false });
    assert.equal(off.text, 'false');
    assert.equal(((await cloud.api('GET', `/v1/instances/${h}`)).json as { state: string }).state, 'asleep');
    assert.equal(((await ephJson('show', h)) as { isRunning: boolean }).isRunning, false);
  } finally {
    await cloud.api('PUT', `${cloud.compatBase()}/${h}/isRunning`, { body: false });
  }
});

test('deleting through /v1 and through the CLI removes an unused image; a shared one stays until its last instance goes', async () => {
  const images = join(cloud.dataDir, 'images');
  const digestOf = async (h: string) => (await cloud.store.getInstance(h))!.imageDigest;
  const onDisk = (digest: string) => readdirSync(images).some((f) => f.startsWith(digest));

  const v1 = await cloud.publish(await uniqueZip('v1'));
  const d1 = await digestOf(v1);
  assert.ok(onDisk(d1));
  assert.equal((await cloud.api('DELETE', `/v1/instances/${v1}`)).status, 200);
  assert.ok(!onDisk(d1), 'image files removed after DELETE /v1/instances/<host>');
  assert.equal(await cloud.store.getImage(d1), null);

  const shared = await uniqueZip('shared');
  const s1 = await cloud.publish(shared);
  const s2 = await cloud.publish(shared);
  const d2 = await digestOf(s1);
  assert.equal(await digestOf(s2), d2, 'the same archive, the same image');
  await ephJson('rm', s1);
  assert.ok(onDisk(d2), 'still used by the other instance');
  await ephJson('rm', s2);
  assert.ok(!onDisk(d2), 'image files removed after `eph rm` of the last instance');
  assert.ok(!existsSync(join(images, d2)));
});
