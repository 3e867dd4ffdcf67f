import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Instance } from '../../src/core/types.ts';
import { makeTestCa, type Issued, type TestCa } from '../helpers/certs.ts';
import { startCloudFixture, type CloudFixture } from './cloud.fixtures.ts';
import { eph } from './run-eph.ts';

let fx: CloudFixture;
let inst: Instance;
let ca: TestCa;
let www: Issued;
let files: { cert: string; key: string; otherKey: string };
const cleanups: (() => Promise<void>)[] = [];
before(async () => {
  fx = await startCloudFixture((fn) => cleanups.push(fn));
  ca = await makeTestCa();
  cleanups.push(() => ca.close());
  const other = await ca.issue(['other.example.test']);
  www = await ca.issue(['www.example.test']);
  files = { cert: join(fx.dir, 'www.pem'), key: join(fx.dir, 'www.key'), otherKey: join(fx.dir, 'other.key') };
  await Promise.all([writeFile(files.cert, www.cert), writeFile(files.key, www.key), writeFile(files.otherKey, other.key)]);
  inst = await fx.publish('site');
  // Routing is set up through the service: these tests are about certificates.
  await fx.cloud.routes.map(fx.user.id, 'www.example.test', inst.hostname, { by: 'alice', skipHealth: true });
});
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

test('eph gate cert uploads a certificate for a routed domain and eph gate certs lists it with its expiry', async () => {
  const up = await eph(['gate', 'cert', 'www.example.test', '--cert', files.cert, '--key', files.key], { env: fx.env });
  assert.equal(up.code, 0, up.stderr);
  assert.match(up.stdout, /^www\.example\.test: certificate for www\.example\.test, expires \d{4}-\d\d-\d\d \(in (29|30) days\)\n$/);
  const ls = await eph(['gate', 'certs', '--json'], { env: fx.env });
  assert.equal(ls.code, 0, ls.stderr);
  const { certs } = JSON.parse(ls.stdout) as { certs: Array<{ domain: string; active: boolean; names: string[]; key?: string }> };
  assert.deepEqual(certs.map((c) => [c.domain, c.active, c.names]), [['www.example.test', true, ['www.example.test']]]);
  assert.equal(certs[0]!.key, undefined);
  const table = await eph(['gate', 'certs'], { env: fx.env });
  assert.match(table.stdout, /www\.example\.test .* yes/);
});

test('a key of another certificate, or a domain not routed: one-line reason, exit 1', async () => {
  const wrongKey = await eph(['gate', 'cert', 'www.example.test', '--cert', files.cert, '--key', files.otherKey], { env: fx.env });
  assert.equal(wrongKey.code, 1);
  assert.equal(wrongKey.stderr, 'eph: certificate for www.example.test: the key does not match the certificate\n');
  const unrouted = await eph(['gate', 'cert', 'shop.example.test', '--cert', files.cert, '--key', files.key], { env: fx.env });
  assert.equal(unrouted.code, 1);
  assert.match(unrouted.stderr, /^eph: shop\.example\.test is not one of your gate domains or aliases; map it first\n$/);
  const missing = await eph(['gate', 'cert', 'www.example.test', '--cert', join(fx.dir, 'nope.pem'), '--key', files.key], { env: fx.env });
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /nope\.pem: no such file/);
  const usage = await eph(['gate', 'cert', 'www.example.test'], { env: fx.env });
  assert.equal(usage.code, 2);
});

test('eph gate cert --delete removes it', async () => {
  const del = await eph(['gate', 'cert', 'www.example.test', '--delete'], { env: fx.env });
  assert.equal(del.code, 0, del.stderr);
  assert.equal(del.stdout, 'deleted the certificate of www.example.test\n');
  const ls = await eph(['gate', 'certs'], { env: fx.env });
  assert.match(ls.stdout, /^no certificates/);
});
