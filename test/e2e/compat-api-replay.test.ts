import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { buildZip, buildTarGz } from '../helpers/archives.ts';
import { startTestCloud, type TestCloud } from '../helpers/cloud.ts';

/**
 * Replays the original documentation's curl commands (with real curl) and the
 * Pharo client's exact request shapes against a whole cloud over loopback.
 */
let cloud: TestCloud;
let zipFile: string;
let nodeZip: Buffer;
const work = mkdtempSync(join(tmpdir(), 'eph-compat-'));

before(async () => {
  cloud = await startTestCloud({ idleTimeout: '2s' }, { reapIntervalMs: 200 });
  nodeZip = await buildZip('examples/node-app');
  zipFile = join(work, 'app.zip');
  writeFileSync(zipFile, nodeZip);
});
after(() => cloud?.close());

const base = () => `${cloud.apiUrl}/api/ephemerics/user/${cloud.alice.id}`;
const hostRe = /^eph-[0-9a-f]{8}\.eph\.test$/;

// Async on purpose: the cloud answers from this same process.
function curl(...args: string[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    execFile('curl', ['-s', '-w', '\n%{http_code}', ...args], { encoding: 'utf8' }, (err, stdout) => {
      if (err) return reject(err);
      const lines = stdout.trimEnd().split('\n');
      const status = Number(lines.pop());
      resolve({ status, body: lines.join('\n') });
    });
  });
}

async function pharo(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown; contentType: string }> {
  // The Pharo client: Basic auth on every request, JSON-encoded values as application/json.
  const r = await request(`${base()}${path}`, {
    method: method as 'GET',
    headers: { authorization: cloud.auth(cloud.alice), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await r.body.text();
  return { status: r.statusCode, json: JSON.parse(text), contentType: String(r.headers['content-type']) };
}

test('curl -F imageZip=@app.zip with ?auth= publishes and answers the hostname as a JSON string', async () => {
  const r = await curl('-F', `imageZip=@${zipFile}`, `${base()}?auth=${cloud.alice.token}`);
  assert.equal(r.status, 200);
  const hostname = JSON.parse(r.body) as string;
  assert.match(hostname, hostRe);
  assert.equal(r.body, JSON.stringify(hostname));
});

test('curl with HTTP Basic lists instances as {"ephemerics":[…]} with exactly the original fields', async () => {
  const r = await curl('-u', `${cloud.alice.id}:${cloud.alice.token}`, base());
  assert.equal(r.status, 200);
  const body = JSON.parse(r.body) as { ephemerics: Array<Record<string, unknown>> };
  assert.ok(body.ephemerics.length >= 1);
  const one = body.ephemerics[0]!;
  assert.deepEqual(Object.keys(one).sort(), ['accessTime', 'alias', 'createdTime', 'hostname', 'imageName', 'isRunning']);
  assert.match(String(one.createdTime), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$/);
  assert.match(String(one.accessTime), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$/);
  assert.equal(one.isRunning, false);
  assert.equal(one.imageName, 'app.zip');
});

test('the Pharo client publish shape: raw zip body, X-Name, Content-Length, Basic; then GET by hostname', async () => {
  const r = await request(base(), {
    method: 'POST',
    headers: { authorization: cloud.auth(cloud.alice), 'content-type': 'application/zip', 'x-name': 'Ephemeric-Cloud-Client-1.3.zip', 'content-length': String(nodeZip.length) },
    body: nodeZip,
  });
  assert.equal(r.statusCode, 200);
  const hostname = (await r.body.json()) as string;
  assert.match(hostname, hostRe);
  const one = await pharo('GET', `/${hostname}`);
  assert.equal(one.status, 200);
  assert.equal((one.json as { imageName: string }).imageName, 'Ephemeric-Cloud-Client-1.3.zip');
  assert.equal((one.json as { hostname: string }).hostname, hostname);
});

test('a tar.gz archive is accepted as the raw body too', async () => {
  const tgz = await buildTarGz('examples/node-app');
  const r = await request(base(), { method: 'POST', headers: { authorization: cloud.auth(cloud.alice), 'content-type': 'application/gzip', 'x-name': 'app.tgz' }, body: tgz });
  assert.equal(r.statusCode, 200);
  assert.match((await r.body.json()) as string, hostRe);
});

test('properties: GET each as JSON, PUT answers the new value, unknown property 404', async () => {
  const hostname = JSON.parse((await curl('-F', `imageZip=@${zipFile}`, `${base()}?auth=${cloud.alice.token}`)).body) as string;
  assert.deepEqual((await pharo('GET', `/${hostname}/isRunning`)).json, false);
  assert.deepEqual((await pharo('GET', `/${hostname}/hostname`)).json, hostname);
  assert.deepEqual((await pharo('GET', `/${hostname}/alias`)).json, null);
  assert.deepEqual((await pharo('GET', `/${hostname}/mappedPorts`)).json, {});

  const name = await pharo('PUT', `/${hostname}/imageName`, 'Renamed');
  assert.equal(name.status, 200);
  assert.deepEqual(name.json, 'Renamed');
  assert.match(name.contentType, /application\/json/);

  const alias = await pharo('PUT', `/${hostname}/alias`, 'replay.example.org');
  assert.deepEqual(alias.json, 'replay.example.org');
  // The Pharo client also looks instances up by alias.
  assert.equal(((await pharo('GET', '/replay.example.org')).json as { hostname: string }).hostname, hostname);

  const unknown = await pharo('GET', `/${hostname}/colour`);
  assert.equal(unknown.status, 404);
  assert.equal((unknown.json as { error: { code: string } }).error.code, 'UNKNOWN_PROPERTY');

  const bad = await pharo('PUT', `/${hostname}/alias`, 'not a host!');
  assert.equal(bad.status, 400);
  assert.deepEqual((await pharo('GET', `/${hostname}/alias`)).json, 'replay.example.org', 'a rejected PUT changes nothing');

  const cleared = await pharo('PUT', `/${hostname}/alias`, null);
  assert.deepEqual(cleared.json, null);
});

test('curl -X PUT -d true isRunning starts it; the gate serves it; false stops it', async () => {
  const hostname = JSON.parse((await curl('-F', `imageZip=@${zipFile}`, `${base()}?auth=${cloud.alice.token}`)).body) as string;
  const on = await curl('-X', 'PUT', '-d', 'true', `${base()}/${hostname}/isRunning?auth=${cloud.alice.token}`);
  assert.equal(on.status, 200);
  assert.equal(on.body, 'true');
  assert.deepEqual((await pharo('GET', `/${hostname}/isRunning`)).json, true);
  const page = await cloud.visit(hostname);
  assert.equal(page.status, 200);
  assert.equal(page.body, 'hello from node-app\n');
  const off = await pharo('PUT', `/${hostname}/isRunning`, false);
  assert.deepEqual(off.json, false);
  assert.deepEqual((await pharo('GET', `/${hostname}/isRunning`)).json, false);
});

test('setting an alias held by another instance of the same user moves it', async () => {
  const a = JSON.parse((await curl('-F', `imageZip=@${zipFile}`, `${base()}?auth=${cloud.alice.token}`)).body) as string;
  const b = JSON.parse((await curl('-F', `imageZip=@${zipFile}`, `${base()}?auth=${cloud.alice.token}`)).body) as string;
  await pharo('PUT', `/${a}/alias`, 'move.example.org');
  await pharo('PUT', `/${b}/alias`, 'move.example.org');
  assert.deepEqual((await pharo('GET', `/${a}/alias`)).json, null);
  assert.deepEqual((await pharo('GET', `/${b}/alias`)).json, 'move.example.org');
  const page = await cloud.visit('move.example.org');
  assert.equal(page.status, 200);
  assert.equal(cloud.instances.upstream(b) !== null, true, 'the visit woke the new holder');
  await cloud.instances.stop(b);
});

test('DELETE answers JSON, removes the instance, and its image files when unused', async () => {
  const unique = await buildZip('examples/pharo-app');
  const r = await request(base(), { method: 'POST', headers: { authorization: cloud.auth(cloud.alice), 'content-type': 'application/zip' }, body: unique });
  const hostname = (await r.body.json()) as string;
  const digest = (await cloud.store.getInstance(hostname))!.imageDigest;
  assert.ok(readdirSync(join(cloud.dataDir, 'images')).includes(digest));
  const del = await pharo('DELETE', `/${hostname}`);
  assert.equal(del.status, 200);
  assert.deepEqual(del.json, true);
  assert.equal((await pharo('GET', `/${hostname}`)).status, 404);
  assert.ok(!readdirSync(join(cloud.dataDir, 'images')).some((f) => f.startsWith(digest)), 'image files removed');
  assert.equal((await cloud.visit(hostname)).status, 404, 'the gate forgets it');
});

test('missing or wrong credentials: 401 with a JSON reason', async () => {
  const none = await request(base());
  assert.equal(none.statusCode, 401);
  assert.equal(((await none.body.json()) as { error: { code: string } }).error.code, 'UNAUTHORIZED');
  const wrong = await curl('-u', `${cloud.alice.id}:nope`, base());
  assert.equal(wrong.status, 401);
  assert.match(wrong.body, /"message"/);
  const wrongQuery = await curl(`${base()}?auth=nope`);
  assert.equal(wrongQuery.status, 401);
});
