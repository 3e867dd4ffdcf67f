import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { startTestCloud, type TestCloud } from '../helpers/cloud.ts';
import { NO_STUNNEL, freePort, startStunnel, writePskFile } from '../tunnel/fixtures.ts';
import { pgBin } from '../helpers/pg-cluster.ts';

/**
 * The use case's development environment, through the whole cloud: a
 * PostgreSQL appliance created over /v1, its stunnel tab's stunnel.conf run by
 * real stunnel4 on "the developer's machine", and psql on the local port.
 * Also a static appliance served through the gate at <name>.static.<domain>.
 */
let cloud: TestCloud;
before(async () => {
  cloud = await startTestCloud();
});
after(() => cloud?.close());

async function api(method: string, path: string, body?: unknown, type = 'application/json'): Promise<{ status: number; text: string }> {
  const r = await request(`${cloud.apiUrl}${path}`, {
    method: method as 'GET',
    headers: { authorization: cloud.auth(cloud.alice), ...(body !== undefined ? { 'content-type': type } : {}) },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  return { status: r.statusCode, text: await r.body.text() };
}

function psql(port: number, url: string, sql: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    execFile(
      pgBin('psql')!,
      ['-h', '127.0.0.1', '-p', String(port), '-U', decodeURIComponent(u.username), '-d', u.pathname.slice(1), '-tAc', sql],
      { env: { ...process.env, PGPASSWORD: decodeURIComponent(u.password), PGSSLMODE: 'disable' }, timeout: 20_000 },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout.trim())),
    );
  });
}

test('a postgres appliance is reached with psql through real stunnel4 and the generated stunnel.conf', { skip: NO_STUNNEL }, async (t) => {
  const created = await api('POST', '/v1/appliances', { kind: 'postgres', name: 'mydb' });
  assert.equal(created.status, 201, created.text);
  const view = JSON.parse(created.text) as { kind: string; status: string; public: string; url: string; psk: string };
  assert.equal(view.kind, 'postgres');
  assert.equal(view.status, 'running');
  assert.match(view.public, /^127\.0\.0\.1:\d+$/);
  assert.match(view.url, /^postgres:\/\/[^:]+:[^@]+@127\.0\.0\.1:5432\/\w+$/);

  const conf = await api('GET', '/v1/appliances/mydb/stunnel.conf');
  assert.equal(conf.status, 200);
  assert.equal(conf.text, `[mydb]\nclient = yes\naccept = 127.0.0.1:5432\nconnect = ${view.public}\nPSKsecrets = psk.txt\n`);

  // The developer's machine: psk.txt from the create answer, the conf as given
  // (only the accept port moved, since 5432 may be taken here).
  const dir = mkdtempSync(join(tmpdir(), 'eph-dev-'));
  writePskFile(dir, view.psk);
  const local = await freePort();
  await startStunnel(t, dir, conf.text.replace('127.0.0.1:5432', `127.0.0.1:${local}`));
  assert.equal(await psql(local, view.url, 'select 40 + 2'), '42');
  await psql(local, view.url, 'create table notes (body text); insert into notes values ($$kept$$)');

  // Revoking every identity (uploading a new psk.txt) shuts the old key out.
  const rotated = await api('PUT', '/v1/appliances/mydb/psk', 'ci:0123456789abcdef0123456789abcdef\n', 'text/plain');
  assert.equal(rotated.status, 200, rotated.text);
  await assert.rejects(psql(local, view.url, 'select 1'));

  const bad = await api('PUT', '/v1/appliances/mydb/psk', 'ci:short\n', 'text/plain');
  assert.equal(bad.status, 400);
  assert.match(bad.text, /line 1/);
});

test('a static appliance is served through the gate at <name>.static.<domain>', async () => {
  const created = await api('POST', '/v1/appliances', { kind: 'static', name: 'assets' });
  assert.equal(created.status, 201, created.text);
  const put = await api('PUT', '/v1/appliances/assets/files/css/site.css', 'body { color: teal }', 'text/css');
  assert.ok(put.status === 200 || put.status === 201, put.text);
  const page = await cloud.visit('assets.static.eph.test', '/css/site.css');
  assert.equal(page.status, 200);
  assert.equal(page.body, 'body { color: teal }');
  assert.match(String(page.headers['content-type']), /text\/css/);
  const etag = String(page.headers.etag);
  const again = await cloud.visit('assets.static.eph.test', '/css/site.css', { headers: { 'if-none-match': etag } });
  assert.equal(again.status, 304);
  const stopped = await api('POST', '/v1/appliances/assets/stop');
  assert.equal(stopped.status, 200, stopped.text);
  const down = await cloud.visit('assets.static.eph.test', '/css/site.css');
  assert.equal(down.status, 503);
});
