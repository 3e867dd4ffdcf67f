import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildZip } from '../helpers/archives.ts';
import { startTestCloud, type TestCloud } from '../helpers/cloud.ts';

/**
 * The original's own documentation, replayed with real curl: the trailing
 * slash every version of `rest_api.pillar` writes, the 2016 version's
 * `…/stop` and `used`/`limit`, curl habits (`Content-Type: application/json`
 * on bodiless requests), and X-Name values as clients really send them.
 */
let cloud: TestCloud;
let zipFile: string;
const work = mkdtempSync(join(tmpdir(), 'eph-compat-docs-'));

before(async () => {
  cloud = await startTestCloud();
  zipFile = join(work, 'x.zip');
  writeFileSync(zipFile, await buildZip('examples/node-app'));
});
after(async () => {
  await cloud?.close();
  rmSync(work, { recursive: true, force: true });
});

const base = () => `${cloud.apiUrl}/api/ephemerics/user/${cloud.alice.id}`;
const auth = () => `auth=${cloud.alice.token}`;
const hostRe = /^eph-[0-9a-f]{8}\.eph\.test$/;

// Async on purpose: the cloud answers from this same process.
function curl(...args: string[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    execFile('curl', ['-s', '-w', '\n%{http_code}', ...args], { encoding: 'utf8', maxBuffer: 1 << 20 }, (err, stdout) => {
      if (err) return reject(err);
      const lines = stdout.trimEnd().split('\n');
      const status = Number(lines.pop());
      resolve({ status, body: lines.join('\n') });
    });
  });
}

const json = (body: string): unknown => JSON.parse(body);

async function v1Instance(hostname: string): Promise<{ imageName: string; state: string; alias: string | null }> {
  const r = await cloud.api('GET', `/v1/instances/${hostname}`);
  assert.equal(r.status, 200, r.text);
  return r.json as { imageName: string; state: string; alias: string | null };
}

test('the documented `curl -X POST -F imageZip=@x.zip …/user/<id>/?auth=<token>` (trailing slash) publishes', async () => {
  const r = await curl('-X', 'POST', '-F', `imageZip=@${zipFile}`, `${base()}/?${auth()}`);
  assert.equal(r.status, 200, r.body);
  assert.match(json(r.body) as string, hostRe);
});

test('`GET …/user/<id>/` lists (with the 2016 fields used and limit), every route takes the trailing slash', async () => {
  const hostname = json((await curl('-F', `imageZip=@${zipFile}`, `${base()}/?${auth()}`)).body) as string;
  const list = await curl(`${base()}/?${auth()}`);
  assert.equal(list.status, 200, list.body);
  const body = json(list.body) as { ephemerics: Array<{ hostname: string }>; used: number; limit: number };
  assert.ok(body.ephemerics.some((i) => i.hostname === hostname));
  assert.equal(body.used, 0, 'nothing runs');
  assert.equal(body.limit, 10, "the standard plan's running instances");
  assert.equal(((json((await curl(`${base()}/${hostname}/?${auth()}`)).body)) as { hostname: string }).hostname, hostname);
  assert.equal(json((await curl(`${base()}/${hostname}/isRunning/?${auth()}`)).body), false);
  const put = await curl('-X', 'PUT', '-H', 'Content-Type: application/json', '-d', '"Slash"', `${base()}/${hostname}/imageName/?${auth()}`);
  assert.equal(put.status, 200, put.body);
  assert.equal((await v1Instance(hostname)).imageName, 'Slash', 'checked through /v1');
  const del = await curl('-X', 'DELETE', `${base()}/${hostname}/?${auth()}`);
  assert.equal(del.status, 200, del.body);
  assert.equal((await cloud.api('GET', `/v1/instances/${hostname}`)).status, 404);
});

test('`GET …/<host>/stop` (2016 docs) pauses a running instance; used counts running ones', async () => {
  const hostname = json((await curl('-F', `imageZip=@${zipFile}`, `${base()}?${auth()}`)).body) as string;
  assert.equal((await curl('-X', 'PUT', '-d', 'true', `${base()}/${hostname}/isRunning?${auth()}`)).body, 'true');
  assert.equal((json((await curl(`${base()}?${auth()}`)).body) as { used: number }).used, 1);
  const stop = await curl(`${base()}/${hostname}/stop?${auth()}`);
  assert.equal(stop.status, 200, stop.body);
  assert.equal(json(stop.body), false, 'answers the new isRunning');
  assert.equal((await v1Instance(hostname)).state, 'asleep', 'checked through /v1');
  assert.equal((json((await curl(`${base()}?${auth()}`)).body) as { used: number }).used, 0);
});

test('curl habits: DELETE with Content-Type: application/json and no body works; so does a bodiless /v1 rollback', async () => {
  const hostname = json((await curl('-F', `imageZip=@${zipFile}`, `${base()}?${auth()}`)).body) as string;
  const del = await curl('-X', 'DELETE', '-H', 'Content-Type: application/json', `${base()}/${hostname}?${auth()}`);
  assert.equal(del.status, 200, del.body);
  assert.equal(json(del.body), true);
  const basic = ['-u', `${cloud.alice.id}:${cloud.alice.token}`, '-H', 'Content-Type: application/json'];
  const rollback = await curl('-X', 'POST', ...basic, `${cloud.apiUrl}/v1/gate/routes/www.docs.example/rollback`);
  assert.doesNotMatch(rollback.body, /Body cannot be empty/);
  assert.notEqual(rollback.status, 400, rollback.body);
  assert.equal(rollback.status, 404, 'no such route: the request itself was understood');
  const h2 = json((await curl('-F', `imageZip=@${zipFile}`, `${base()}?${auth()}`)).body) as string;
  const v1del = await curl('-X', 'DELETE', ...basic, `${cloud.apiUrl}/v1/instances/${h2}`);
  assert.equal(v1del.status, 200, v1del.body);
  // A body that is there but broken is still refused.
  const bad = await curl('-X', 'PUT', '-H', 'Content-Type: application/json', '-d', '{', `${base()}/x/alias?${auth()}`);
  assert.equal(bad.status, 400);
});

for (const [what, header, expected] of [
  ['a bare %', '%', '%'],
  ['a truncated escape %E0%A4%A', '%E0%A4%A', '%E0%A4%A'],
  ['build 100%', 'build 100%', 'build 100%'],
  ['a percent-encoded UTF-8 name', 'caf%C3%A9%20%E2%98%95', 'café ☕'],
  ['UTF-8 bytes as the Pharo client sends them', 'Café ☕ 1.3', 'Café ☕ 1.3'],
] as const) {
  test(`X-Name: ${what} publishes and reads back right, never 500`, async () => {
    const r = await curl('-H', 'Content-Type: application/zip', '-H', `X-Name: ${header}`, '--data-binary', `@${zipFile}`, `${base()}?${auth()}`);
    assert.equal(r.status, 200, r.body);
    const hostname = json(r.body) as string;
    assert.equal(json((await curl(`${base()}/${hostname}/imageName?${auth()}`)).body), expected);
    assert.equal((await v1Instance(hostname)).imageName, expected);
  });
}

test('X-Name in Latin-1 bytes (not valid UTF-8) reads as Latin-1', async () => {
  // curl passes header bytes through: write "Caf\xe9" into a header file.
  const headers = join(work, 'latin1.headers');
  writeFileSync(headers, Buffer.concat([Buffer.from('X-Name: Caf'), Buffer.from([0xe9]), Buffer.from('\r\nContent-Type: application/zip\r\n')]));
  const r = await curl('-H', `@${headers}`, '--data-binary', `@${zipFile}`, `${base()}?${auth()}`);
  assert.equal(r.status, 200, r.body);
  assert.equal((await v1Instance(json(r.body) as string)).imageName, 'Café');
});

test('an imageName over 200 characters is refused at publish (400, with the reason) on both APIs, nothing published', async () => {
  const long = 'n'.repeat(201);
  const count = async () => ((await cloud.api('GET', '/v1/instances')).json as { instances: unknown[] }).instances.length;
  const before = await count();
  const viaHeader = await curl('-H', 'Content-Type: application/zip', '-H', `X-Name: ${long}`, '--data-binary', `@${zipFile}`, `${base()}?${auth()}`);
  const viaForm = await curl('-F', `imageZip=@${zipFile};filename=${long}`, `${base()}/?${auth()}`);
  const basic = ['-u', `${cloud.alice.id}:${cloud.alice.token}`];
  const viaV1 = await curl(...basic, '-H', 'Content-Type: application/zip', '--data-binary', `@${zipFile}`, `${cloud.apiUrl}/v1/instances?name=${long}`);
  const viaV1Form = await curl(...basic, '-F', `archive=@${zipFile};filename=${long}`, `${cloud.apiUrl}/v1/instances`);
  for (const [how, r] of Object.entries({ viaHeader, viaForm, viaV1, viaV1Form })) {
    assert.equal(r.status, 400, `${how}: ${r.body}`);
    const e = (json(r.body) as { error: { code: string; message: string } }).error;
    assert.equal(e.code, 'INVALID_VALUE', how);
    assert.match(e.message, /at most 200 characters/, how);
  }
  assert.equal(await count(), before);
  // 200 exactly is fine.
  const ok = await curl('-H', 'Content-Type: application/zip', '-H', `X-Name: ${'n'.repeat(200)}`, '--data-binary', `@${zipFile}`, `${base()}?${auth()}`);
  assert.equal(ok.status, 200, ok.body);
  assert.equal(await count(), before + 1);
});
