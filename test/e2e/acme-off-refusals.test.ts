import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestCloud, type TestCloud } from '../helpers/cloud.ts';
import { eph } from '../cli/run-eph.ts';
import { versionApp } from './gate-apps.ts';

/**
 * A cloud whose operator did not turn automatic HTTPS on: asking for it is
 * refused clearly (503 over HTTP; with `eph gate map --tls auto` the route is
 * in place and the CLI says the certificate was refused, exit 1), a wrong
 * `--tls` value is a usage error that sends nothing, and the gate routes
 * `/.well-known/acme-challenge/…` to the app like any path.
 */
let cloud: TestCloud;
let inst: string;

before(async () => {
  cloud = await startTestCloud({ gateTls: '127.0.0.1:0' });
  inst = await cloud.publish(await versionApp('v1'));
});
after(async () => {
  await cloud?.close();
});

const env = () => ({ EPH_URL: cloud.apiUrl, EPH_USER: cloud.alice.id, EPH_TOKEN: cloud.alice.token });

test('eph gate map --tls auto on a cloud without ACME: mapped, the certificate refused with the reason, exit 1', async () => {
  const r = await eph(['gate', 'map', 'www.example.test', inst, '--tls', 'auto', '--skip-health'], { env: env() });
  assert.equal(r.code, 1, r.stdout);
  assert.equal(r.stderr, 'eph: www.example.test is mapped, but automatic HTTPS was refused: automatic HTTPS is off on this cloud: the operator turns it on with --acme-email or --acme-directory (and --gate-tls)\n');
  assert.equal((await cloud.api('GET', '/v1/gate/routes/www.example.test')).status, 200, 'the route is in place');
  assert.equal((await cloud.api('GET', '/v1/gate/certs/www.example.test')).status, 404, 'no certificate entry');
  const api = await cloud.api('POST', '/v1/gate/certs/www.example.test/acme');
  assert.equal(api.status, 503, api.text);
});

test('--tls with another value is a usage error and nothing is sent', async () => {
  const r = await eph(['gate', 'map', 'shop.example.test', inst, '--tls', 'manual', '--skip-health'], { env: env() });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^eph: --tls: expected auto, got 'manual'/);
  assert.equal((await cloud.api('GET', '/v1/gate/routes/shop.example.test')).status, 404);
});

test('without automatic HTTPS the gate routes the challenge path to the app like any other', async () => {
  const r = await cloud.visit('www.example.test', '/.well-known/acme-challenge/sometoken');
  assert.equal(r.status, 200);
  assert.equal(r.body, 'v1');
});
