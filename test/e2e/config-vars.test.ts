import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { detectCgroups } from '../../src/runtime/process/cgroups.ts';
import { procfileApp, startTestCloud, until, type TestCloud, type TestUser } from '../helpers/cloud.ts';

/**
 * Config vars and secrets (issue 16 item 2) through a real cloud: a real
 * app's process sees them at its next start (or now with restart), another
 * tenant gets 404 on every config route, secrets are redacted unless
 * revealed, limits refuse with nothing changed, the secret's clear text is
 * in neither the store's files nor the logs, and a restart of the cloud
 * keeps them.
 */

const PID = process.pid;
// The app answers the value of the environment variable named by the path (or `(unset)`).
const APP = `import { createServer } from 'node:http';
createServer((q, s) => {
  const name = decodeURIComponent(q.url.slice(1));
  s.end(name in process.env ? process.env[name] : '(unset)');
}).listen(Number(process.env.PORT));
`;
/** A clear text that appears nowhere unless it leaks. */
const SECRET = `s3cret-${randomBytes(12).toString('hex')}`;
const QUOTAS = '*:vars=6,var-size=1KiB,config-size=3KiB';
// Decided before any test: instances are frozen (warm sleep) only with cgroups (root) and a freezer.
const cgroups = detectCgroups(`c${PID.toString(36)}`.slice(0, 6));
const NO_FREEZER =
  cgroups.mode === 'off' ? `cgroups unavailable (warm sleep needs root and the cgroup freezer): ${cgroups.reason}` : cgroups.mode === 'v1' && !cgroups.mounts.freezer ? 'no cgroup v1 freezer hierarchy mounted' : false;

const logLines: string[] = [];
const capture = pino({ level: 'debug' }, { write: (s: string) => void logLines.push(s) });
let dataDir: string;
let cloud: TestCloud;
let A: TestUser;
let B: TestUser;
let host: string;

type ConfigAnswer = { hostname: string; vars: Array<{ name: string; value: string | null; secret: boolean; redacted: boolean }>; restarted?: boolean; note: string };

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'eph-config-'));
  cloud = await startTestCloud({ planQuotas: QUOTAS, accessLog: true }, { dataDir, keepData: true, logger: capture });
  A = cloud.alice;
  B = await cloud.addUser('bob');
  host = await cloud.publish(await procfileApp(APP), { user: A });
});
after(async () => {
  await cloud?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

const config = (user: TestUser, reveal = false) => cloud.api('GET', `/v1/instances/${host}/config${reveal ? '?reveal=true' : ''}`, { user });
const patch = (user: TestUser, body: unknown) => cloud.api('PATCH', `/v1/instances/${host}/config`, { user, body });
const varsOf = (json: unknown) => Object.fromEntries((json as ConfigAnswer).vars.map((v) => [v.name, v.value]));

test('set: the app sees the vars at its next start; secrets are redacted unless revealed', async () => {
  const set = await patch(A, { set: { GREETING: 'hello world', MULTI: 'line1\nline2 "quoted" $HOME' } });
  assert.equal(set.status, 200, set.text);
  assert.match((set.json as ConfigAnswer).note, /next start/);
  const secret = await patch(A, { set: { API_TOKEN: SECRET }, secret: true });
  assert.equal(secret.status, 200, secret.text);
  assert.ok(!secret.text.includes(SECRET), 'the answer to a secret set does not echo it');

  const shown = await config(A);
  assert.equal(shown.status, 200, shown.text);
  assert.deepEqual(varsOf(shown.json), { API_TOKEN: null, GREETING: 'hello world', MULTI: 'line1\nline2 "quoted" $HOME' });
  assert.equal((shown.json as ConfigAnswer).vars.find((v) => v.name === 'API_TOKEN')?.redacted, true);
  assert.ok(!shown.text.includes(SECRET));
  assert.equal(varsOf((await config(A, true)).json).API_TOKEN, SECRET);

  assert.equal((await cloud.visit(host, '/GREETING')).body, 'hello world');
  assert.equal((await cloud.visit(host, '/MULTI')).body, 'line1\nline2 "quoted" $HOME');
  assert.equal((await cloud.visit(host, '/API_TOKEN')).body, SECRET);
  // The cloud's own names stay the cloud's.
  assert.equal((await cloud.visit(host, '/EPH_HOSTNAME')).body, host);
});

test('a change reaches a running app only at its next start, or at once with restart', async () => {
  assert.equal((await cloud.visit(host, '/GREETING')).body, 'hello world');
  assert.equal((await patch(A, { set: { GREETING: 'second' } })).status, 200);
  assert.equal((await cloud.visit(host, '/GREETING')).body, 'hello world', 'the running process keeps its environment');
  const r = await patch(A, { set: { GREETING: 'third' }, restart: true });
  assert.equal(r.status, 200, r.text);
  assert.equal((r.json as ConfigAnswer).restarted, true);
  assert.equal((await cloud.visit(host, '/GREETING')).body, 'third');
  const del = await cloud.api('DELETE', `/v1/instances/${host}/config/MULTI?restart=true`, { user: A });
  assert.equal(del.status, 200, del.text);
  assert.equal((await cloud.visit(host, '/MULTI')).body, '(unset)');
  assert.equal((await cloud.api('DELETE', `/v1/instances/${host}/config/MULTI`, { user: A })).status, 404);
});

test('restart: true also restarts a frozen instance (a thaw would keep the old environment)', { skip: NO_FREEZER }, async () => {
  assert.equal((await cloud.visit(host, '/GREETING')).body, 'third');
  assert.equal(await cloud.instances.freeze(host), true, 'the instance froze');
  const r = await patch(A, { set: { GREETING: 'after the freeze' }, restart: true });
  assert.equal(r.status, 200, r.text);
  assert.equal((r.json as ConfigAnswer).restarted, true);
  assert.equal((await cloud.visit(host, '/GREETING')).body, 'after the freeze');
  assert.equal((await patch(A, { set: { GREETING: 'third' }, restart: true })).status, 200);
});

test('another tenant gets 404 on every config route, and nothing changes', async () => {
  const before = (await config(A, true)).json;
  const answers = [
    await config(B),
    await config(B, true),
    await patch(B, { set: { GREETING: 'bob' } }),
    await patch(B, { unset: ['API_TOKEN'] }),
    await cloud.api('DELETE', `/v1/instances/${host}/config/API_TOKEN`, { user: B }),
  ];
  for (const r of answers) {
    assert.equal(r.status, 404, r.text);
    assert.ok(!r.text.includes(SECRET) && !r.text.includes('third'), r.text);
  }
  assert.deepEqual((await config(A, true)).json, before);
  // B's own instance of the same archive: none of A's vars in its environment.
  const bHost = await cloud.publish(await procfileApp(APP), { user: B });
  assert.equal((await cloud.visit(bHost, '/API_TOKEN')).body, '(unset)');
  assert.equal((await cloud.visit(bHost, '/GREETING')).body, '(unset)');
  assert.equal((await cloud.api('DELETE', `/v1/instances/${bHost}`, { user: B })).status, 200);
});

test('bad names, reserved names and bad bodies are refused with 400 and nothing changes', async () => {
  const before = (await config(A, true)).json;
  for (const name of ['1ABC', 'A-B', 'A B', '', 'PORT', 'PATH', 'EPH_HOSTNAME', 'EPH_ANYTHING', 'LD_PRELOAD', 'LD_LIBRARY_PATH', 'GCONV_PATH', 'IFS', 'X'.repeat(129)]) {
    const r = await patch(A, { set: { OK_ONE: 'fine', [name]: 'x' } });
    assert.equal(r.status, 400, `${name}: ${r.text}`);
    assert.match((r.json as { error: { message: string } }).error.message, /config var name/);
  }
  for (const body of [[], 'text', { set: { A: 1 } }, { set: { A: 'x\0y' } }, { set: ['A'] }, { unset: 'A' }, { secret: 'yes', set: { A: 'b' } }, { colour: 'red' }, {}, { set: { A: 'x' }, unset: ['A'] }]) {
    const r = await patch(A, body);
    assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
  }
  assert.deepEqual((await config(A, true)).json, before);
});

test("the plan's limits (vars, bytes per value, bytes in all) refuse with 413 and nothing changes", async () => {
  const before = (await config(A, true)).json;
  const count = (before as ConfigAnswer).vars.length;
  const tooLong = await patch(A, { set: { BIG: 'x'.repeat(1025) } });
  assert.equal(tooLong.status, 413, tooLong.text);
  assert.match(tooLong.text, /BIG: the value is 1025 bytes; plan 'standard' allows 1 KiB \(1024 bytes\) per value/);
  const many = Object.fromEntries(Array.from({ length: 7 - count }, (_, n) => [`MANY_${n}`, 'v']));
  const tooMany = await patch(A, { set: many });
  assert.equal(tooMany.status, 413, tooMany.text);
  assert.match(tooMany.text, /allows 6 config vars per instance; this change would make 7/);
  const bulky = await patch(A, { set: { B1: 'y'.repeat(1020), B2: 'y'.repeat(1020), B3: 'y'.repeat(1020) } });
  assert.equal(bulky.status, 413, bulky.text);
  assert.match(bulky.text, /allows 3 KiB \(3072 bytes\) of config vars per instance/);
  assert.equal((tooLong.json as { error: { code: string } }).error.code, 'CONFIG_TOO_LARGE');
  assert.deepEqual((await config(A, true)).json, before);
});

test("the secret's clear text is in neither the store's files nor the logs", async () => {
  // Wait for the WAL to hold the writes too: the checks read both files.
  const files = ['eph.sqlite', 'eph.sqlite-wal'].map((f) => join(dataDir, f)).filter((f) => existsSync(f));
  assert.ok(files.length >= 1, 'the store file exists');
  for (const f of files) assert.equal(readFileSync(f).includes(Buffer.from(SECRET)), false, `${f} holds the secret in clear`);
  assert.equal(readFileSync(files[0]!).includes(Buffer.from('API_TOKEN')) || readFileSync(files.at(-1)!).includes(Buffer.from('API_TOKEN')), true, 'the var itself is stored');
  assert.ok(logLines.length > 0, 'the log captured lines');
  const leaked = logLines.filter((l) => l.includes(SECRET));
  assert.deepEqual(leaked, [], 'log lines with the secret');
  const key = join(dataDir, 'secrets.key');
  assert.equal(statSync(key).mode & 0o777, 0o600);
  assert.equal(readFileSync(files[0]!).includes(Buffer.from(readFileSync(key, 'utf8').trim())), false, 'the key is not in the store');
});

test('a restart of the cloud keeps the vars, and the app sees them', async () => {
  const before = (await config(A, true)).json;
  await cloud.close();
  cloud = await startTestCloud({ planQuotas: QUOTAS }, { dataDir, keepData: true, logger: capture });
  const again = await cloud.api('GET', `/v1/instances/${host}/config?reveal=true`, { user: A });
  assert.equal(again.status, 200, again.text);
  assert.deepEqual(again.json, before);
  await until('the app to answer with the secret after the restart', async () => (await cloud.visit(host, '/API_TOKEN')).body === SECRET, 60_000);
  assert.equal((await cloud.visit(host, '/GREETING')).body, 'third');
  void PID;
});
