import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { after, before, test } from 'node:test';
import { startTestCloud, until, type TestCloud, type TestUser } from '../helpers/cloud.ts';
import { makeTestCa } from '../helpers/certs.ts';
import { eph } from '../cli/run-eph.ts';
import { freePort } from '../tunnel/fixtures.ts';
import { pebbleMissing, startPebble, type Pebble } from './acme-pebble.ts';
import { versionApp } from './gate-apps.ts';

/**
 * Automatic HTTPS against Debian's real pebble (Let's Encrypt's ACME test
 * server) on loopback: pebble resolves every name through challtestsrv to
 * 127.0.0.1 and validates HTTP-01 on the cloud's gate port. Issuance through
 * `eph gate map --tls auto`, served by SNI and verified against pebble's
 * root; renewal by the check at start when less than a third of the lifetime
 * remains; a failed challenge (the name resolved where no gate listens)
 * reported with pebble's error while the previous certificate stays served;
 * ownership and the per-user order limit.
 */
const SKIP = pebbleMissing();
const PID = process.pid;
const LIMIT = 5;
/** Pebble's certificates live an hour: renewal is due once less than 20 minutes remain. */
const VALIDITY_S = 3600;

/** The cloud's clock: moved ahead to bring a renewal due, pebble keeps the real time. */
const clock = {
  offset: 0,
  now() {
    return Date.now() + this.offset;
  },
};

let pebble: Pebble;
let cloud: TestCloud;
let dataDir: string;
let gatePort: number;
let alice: TestUser;
let inst: string;
let root: string;

interface CertView {
  domain: string;
  source: string;
  status: string;
  notAfter: number | null;
  names: string[];
  issuer: string;
  active: boolean;
  lastError: string | null;
  nextAttempt: number | null;
}

function boot(acmeDefault = false): Promise<TestCloud> {
  return startTestCloud(
    { gate: `127.0.0.1:${gatePort}`, gateTls: '127.0.0.1:0', acmeDirectory: pebble.directory, acmeDefault },
    {
      dataDir,
      keepData: true,
      clock,
      env: { EPH_ACME_CA_FILE: pebble.caFile, EPH_ACME_ORDERS_PER_HOUR: String(LIMIT) },
      acme: { poll: { minMs: 200, maxMs: 2000, attempts: 60 } },
    },
  );
}

before(async () => {
  if (SKIP) return;
  dataDir = mkdtempSync(join(tmpdir(), `eph-acme-${PID}-`));
  // Fixed for the whole file: pebble validates on this port, and the cloud restarts on it.
  gatePort = await freePort();
  pebble = await startPebble({ httpPort: gatePort, validitySeconds: VALIDITY_S });
  cloud = await boot();
  alice = cloud.alice;
  root = await pebble.root();
  inst = await cloud.publish(await versionApp('v1'));
});
after(async () => {
  await cloud?.close();
  await pebble?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

const cliEnv = () => ({ EPH_URL: cloud.apiUrl, EPH_USER: alice.id, EPH_TOKEN: alice.token });

async function certOf(domain: string): Promise<CertView> {
  const r = await cloud.api('GET', `/v1/gate/certs/${domain}`, { user: alice });
  assert.equal(r.status, 200, r.text);
  return r.json as CertView;
}

async function waitStatus(domain: string, status: string, also: (v: CertView) => boolean = () => true): Promise<CertView> {
  try {
    return await until(`${domain} to be ${status}`, async () => {
      const v = await certOf(domain);
      return v.status === status && also(v) ? v : null;
    }, 90_000, 200);
  } catch (e) {
    throw new Error(`${(e as Error).message}; now ${JSON.stringify(await certOf(domain))}\npebble:\n${pebble.logs().slice(-3000)}`);
  }
}

interface Served {
  status: number;
  body: string;
  authorized: boolean;
  authError: string | null;
  serial: string;
  subject: string;
  issuer: string;
}

/** GET / over HTTPS to the cloud's TLS gate with SNI `name`, trusting pebble's root only. */
function viaTls(name: string): Promise<Served> {
  const port = Number(new URL(cloud.gateTlsUrl!).port);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port, path: '/', servername: name, headers: { host: name }, ca: [root], rejectUnauthorized: false, agent: false },
      (res) => {
        const socket = res.socket as TLSSocket;
        const peer = socket.getPeerCertificate();
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            body,
            authorized: socket.authorized,
            authError: socket.authorizationError ? String(socket.authorizationError) : null,
            serial: peer.serialNumber,
            subject: String(peer.subject?.CN),
            issuer: String(peer.issuer?.CN),
          }),
        );
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error('HTTPS request timed out')));
    req.on('error', reject);
    req.end();
  });
}

test('the gate answers HTTP-01 for any host before routing: a token of another replica from the store, an unknown one 404 (never the app)', { skip: SKIP }, async () => {
  assert.equal((await cloud.api('PUT', '/v1/gate/routes/www.example.test', { body: { hostname: inst } })).status, 200);
  const token = `replica${PID}Tok-_`;
  await cloud.store.putAcmeChallenge({ token, keyAuthorization: `${token}.thumbprint`, expiresAt: Date.now() + 60_000 });
  for (const host of ['www.example.test', 'nobody.example.test']) {
    const r = await cloud.visit(host, `/.well-known/acme-challenge/${token}`);
    assert.equal(r.status, 200, host);
    assert.equal(r.body, `${token}.thumbprint`);
    assert.match(String(r.headers['content-type']), /^text\/plain/);
  }
  const unknown = await cloud.visit('www.example.test', '/.well-known/acme-challenge/neverIssued');
  assert.equal(unknown.status, 404);
  assert.match(unknown.body, /no such ACME challenge/);
  assert.equal((await cloud.visit('www.example.test', '/.well-known/other')).body, 'v1', 'other paths still reach the app');
});

test('eph gate map --tls auto: pebble issues the certificate over HTTP-01 and the gate serves it by SNI, verified against pebble\'s root', { skip: SKIP }, async () => {
  const map = await eph(['gate', 'map', 'www.example.test', inst, '--tls', 'auto'], { env: cliEnv() });
  assert.equal(map.code, 0, map.stderr);
  assert.match(map.stdout, /^www\.example\.test → eph-[0-9a-f]+\.eph\.test\ncertificate: (pending|renewing) /);
  const v = await waitStatus('www.example.test', 'valid');
  assert.equal(v.source, 'acme');
  assert.equal(v.active, true);
  assert.deepEqual(v.names, ['www.example.test']);
  assert.match(v.issuer, /Pebble Intermediate CA/);
  assert.equal(v.lastError, null);
  // Renewal is planned when a third of the lifetime remains.
  assert.ok(v.notAfter !== null && v.nextAttempt !== null);
  assert.ok(Math.abs(v.notAfter - v.nextAttempt - (VALIDITY_S * 1000) / 3) < 120_000, `renewal at ${v.nextAttempt} for expiry ${v.notAfter}`);

  const served = await viaTls('www.example.test');
  assert.equal(served.authError, null);
  assert.equal(served.authorized, true);
  assert.equal(served.body, 'v1');
  assert.equal(served.subject, 'www.example.test');

  const ls = await eph(['gate', 'certs'], { env: cliEnv() });
  assert.equal(ls.code, 0, ls.stderr);
  assert.match(ls.stdout, /www\.example\.test\s+acme\s+valid\s+\d{4}-\d\d-\d\d .*yes/);
});

test('renewal: a cloud started when less than a third of the lifetime remains renews at once, and the gate serves the new serial', { skip: SKIP }, async () => {
  const before = await viaTls('www.example.test');
  await cloud.close();
  clock.offset = 41 * 60_000;
  cloud = await boot();
  // Nothing asked: the check at start finds the renewal due.
  const renewed = await until('a new serial served for www.example.test', async () => {
    const s = await viaTls('www.example.test');
    return s.serial !== before.serial ? s : null;
  }, 90_000, 200);
  assert.equal(renewed.authorized, true, renewed.authError ?? '');
  assert.equal(renewed.body, 'v1');
  const v = await certOf('www.example.test');
  assert.equal(v.status, 'valid');
  assert.ok(v.nextAttempt! > clock.now(), 'the new certificate is not due again at once');
});

test('a failed challenge: status failed with pebble\'s error, the previous certificate still served, a later retry planned; fixed, it renews', { skip: SKIP }, async () => {
  const before = await viaTls('www.example.test');
  assert.equal(before.authorized, true);
  // Pebble now resolves the name where no gate listens: its HTTP-01 request is refused.
  await pebble.setA('www.example.test', '127.0.0.2');
  const ask = await cloud.api('POST', '/v1/gate/certs/www.example.test/acme', { user: alice });
  assert.equal(ask.status, 202, ask.text);
  assert.equal((ask.json as CertView).status, 'renewing');
  const failed = await waitStatus('www.example.test', 'failed');
  assert.match(failed.lastError ?? '', /^renewal failed: .*127\.0\.0\.2/);
  assert.ok(failed.nextAttempt! >= clock.now() + 9 * 60_000, 'retried later, with backoff');
  assert.equal(failed.active, true);
  const still = await viaTls('www.example.test');
  assert.equal(still.serial, before.serial, 'the previous certificate is still served');
  assert.equal(still.authorized, true);

  // A domain that never had a certificate: failed, nothing served but the default one.
  assert.equal((await cloud.api('PUT', '/v1/gate/routes/new.example.test', { user: alice, body: { hostname: inst } })).status, 200);
  await pebble.setA('new.example.test', '127.0.0.2');
  assert.equal((await cloud.api('POST', '/v1/gate/certs/new.example.test/acme', { user: alice })).status, 202);
  const fresh = await waitStatus('new.example.test', 'failed');
  assert.equal(fresh.notAfter, null);
  assert.equal(fresh.active, false);
  assert.match(fresh.lastError ?? '', /^order failed: .*127\.0\.0\.2/);
  const def = await viaTls('new.example.test');
  assert.equal(def.subject, '*.eph.test', 'the development certificate, nothing half-installed');
  const ls = await eph(['gate', 'certs'], { env: cliEnv() });
  assert.match(ls.stdout, /new\.example\.test\s+acme\s+failed\s+-\s+no \(not issued yet\)/);
  assert.match(ls.stdout, /\nnew\.example\.test: order failed: .*127\.0\.0\.2.*\(next attempt \d{4}-/);

  await pebble.clearA('www.example.test');
  assert.equal((await cloud.api('POST', '/v1/gate/certs/www.example.test/acme', { user: alice })).status, 202);
  const ok = await waitStatus('www.example.test', 'valid');
  assert.equal(ok.lastError, null);
  const after = await viaTls('www.example.test');
  assert.notEqual(after.serial, before.serial);
  assert.equal(after.authorized, true);
});

test('only the holder may ask; wildcards are refused; past the orders per hour 429 and nothing changes', { skip: SKIP }, async () => {
  const bob = await cloud.addUser('bob');
  const theirs = await cloud.api('POST', '/v1/gate/certs/www.example.test/acme', { user: bob });
  assert.equal(theirs.status, 409, theirs.text);
  const nobody = await cloud.api('POST', '/v1/gate/certs/nobody.example.test/acme', { user: bob });
  assert.equal(nobody.status, 404, nobody.text);
  const wild = await cloud.api('POST', `/v1/gate/certs/${encodeURIComponent('*.example.test')}/acme`, { user: alice });
  assert.equal(wild.status, 400, wild.text);
  assert.match(wild.text, /wildcard/);

  // Alice ordered 4 times since the restart (renewal, two failures, the fix): one more is allowed.
  assert.equal((await cloud.api('PUT', '/v1/gate/routes/third.example.test', { user: alice, body: { hostname: inst } })).status, 200);
  assert.equal((await cloud.api('PUT', '/v1/gate/routes/fourth.example.test', { user: alice, body: { hostname: inst } })).status, 200);
  assert.equal((await cloud.api('POST', '/v1/gate/certs/third.example.test/acme', { user: alice })).status, 202);
  const over = await cloud.api('POST', '/v1/gate/certs/fourth.example.test/acme', { user: alice });
  assert.equal(over.status, 429, over.text);
  assert.match(over.text, /at most 5 certificate orders per hour/);
  assert.ok(Number(over.headers['retry-after']) > 0);
  assert.equal((await cloud.api('GET', '/v1/gate/certs/fourth.example.test', { user: alice })).status, 404, 'nothing recorded');
  await waitStatus('third.example.test', 'valid');
});

test('--acme-default: at start every mapped domain without a certificate is ordered, and a newly mapped one (route or alias) without asking', { skip: SKIP }, async () => {
  await cloud.close();
  cloud = await boot(true);
  // fourth.example.test was mapped but never ordered (the limit refused it).
  const fourth = await waitStatus('fourth.example.test', 'valid');
  assert.equal(fourth.source, 'acme');
  assert.equal((await viaTls('fourth.example.test')).authorized, true);
  assert.equal((await cloud.api('PUT', '/v1/gate/routes/auto.example.test', { user: alice, body: { hostname: inst } })).status, 200);
  await waitStatus('auto.example.test', 'valid');
  const served = await viaTls('auto.example.test');
  assert.equal(served.authorized, true, served.authError ?? '');
  assert.equal(served.body, 'v1');
  // An alias is a mapped domain too.
  assert.equal((await cloud.api('PATCH', `/v1/instances/${inst}`, { user: alice, body: { alias: 'alias.example.test' } })).status, 200);
  await waitStatus('alias.example.test', 'valid');
  assert.equal((await viaTls('alias.example.test')).authorized, true);
});

test('nothing half-installed: a DELETE while the order runs leaves no certificate; an upload replaces automatic HTTPS', { skip: SKIP }, async () => {
  assert.equal((await cloud.api('PUT', '/v1/gate/routes/gone.example.test', { user: alice, body: { hostname: inst } })).status, 200);
  // The default may have started the order already; asking again joins it.
  assert.equal((await cloud.api('POST', '/v1/gate/certs/gone.example.test/acme', { user: alice })).status, 202);
  assert.equal((await cloud.api('DELETE', '/v1/gate/certs/gone.example.test', { user: alice })).status, 200);
  await cloud.acme!.settled('gone.example.test');
  assert.equal((await cloud.api('GET', '/v1/gate/certs/gone.example.test', { user: alice })).status, 404);
  assert.equal((await viaTls('gone.example.test')).subject, '*.eph.test');

  const ca = await makeTestCa('Own CA');
  try {
    const own = await ca.issue(['auto.example.test']);
    const up = await cloud.api('PUT', '/v1/gate/certs/auto.example.test', { user: alice, body: { cert: own.cert, key: own.key } });
    assert.equal(up.status, 200, up.text);
    const v = await certOf('auto.example.test');
    assert.equal(v.source, 'uploaded');
    assert.equal(v.nextAttempt, null, 'no renewal planned for an upload');
    assert.equal((await viaTls('auto.example.test')).issuer, 'Own CA');
  } finally {
    await ca.close();
  }
});
