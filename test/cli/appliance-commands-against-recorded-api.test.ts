import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { ApplianceView } from '../../src/cli/appliance-view.ts';
import { startRecordedApi } from './recorded-api.ts';
import { eph } from './run-eph.ts';

// The appliance API is built by another part; until the cloud serves it,
// these tests speak its documented shapes through a recorded-shape API server.

const MYDB: ApplianceView = {
  name: 'mydb',
  kind: 'postgres',
  status: 'running',
  public: '127.0.0.1:40123',
  url: 'postgres://eph_mydb:secret@127.0.0.1:5432/mydb',
  createdAt: '2026-11-25T14:00:00.000+00:00',
  lastError: null,
};

const PSK = 'mydb-client:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n';

test('appliance create --wait polls until running; --psk-file saves the one-time psk.txt (recorded-shape API server)', async (t) => {
  const api = await startRecordedApi(t);
  let polls = 0;
  api.on('POST /v1/appliances', () => ({ status: 201, json: { ...MYDB, status: 'creating', psk: PSK } }));
  api.on('GET /v1/appliances/mydb', () => ({ json: { ...MYDB, status: ++polls < 3 ? 'creating' : 'running' } }));
  const dir = await mkdtemp(join(tmpdir(), 'eph-cli-create-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const pskFile = join(dir, 'psk.txt');
  const r = await eph(['appliance', 'create', 'postgres', 'mydb', '--wait', '--json', '--psk-file', pskFile], { env: api.env });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { ...MYDB, psk: PSK });
  assert.equal(polls, 3);
  const post = api.requests.find((q) => q.method === 'POST')!;
  assert.deepEqual(JSON.parse(post.body.toString()), { kind: 'postgres', name: 'mydb' });
  assert.match(String(post.headers['content-type']), /^application\/json/);
  assert.equal(await readFile(pskFile, 'utf8'), PSK);
  assert.equal((await stat(pskFile)).mode & 0o777, 0o600, 'the key file is private');

  // An existing file is never overwritten, and nothing is created then.
  const again = await eph(['appliance', 'create', 'postgres', 'other', '--psk-file', pskFile], { env: api.env });
  assert.equal(again.code, 1);
  assert.equal(again.stderr, `eph: --psk-file ${pskFile}: the file exists; choose a new file name\n`);
  assert.equal(api.requests.filter((q) => q.method === 'POST').length, 1);

  // Without --psk-file: psk.txt in the working directory (what stunnel.conf
  // names), but only when absent; otherwise, and with --no-psk-file, the key is shown once.
  const work = join(dir, 'work');
  await mkdir(work);
  const saved = await eph(['appliance', 'create', 'postgres', 'mydb'], { env: api.env, cwd: work });
  assert.equal(saved.code, 0, saved.stderr);
  assert.match(saved.stdout, /^PSK identity saved to psk\.txt /m);
  assert.equal(await readFile(join(work, 'psk.txt'), 'utf8'), PSK);
  await writeFile(join(work, 'psk.txt'), 'mine:an existing key, not ours\n');
  const [kept, unsaved] = await Promise.all([
    eph(['appliance', 'create', 'postgres', 'mydb'], { env: api.env, cwd: work }),
    eph(['appliance', 'create', 'postgres', 'mydb', '--no-psk-file'], { env: api.env, cwd: dir }),
  ]);
  assert.equal(kept.code, 0, kept.stderr);
  assert.ok(kept.stdout.endsWith(`psk.txt exists and was left alone; PSK identity (shown once; save it in a psk.txt):\n${PSK}`), kept.stdout);
  assert.equal(await readFile(join(work, 'psk.txt'), 'utf8'), 'mine:an existing key, not ours\n');
  assert.ok(unsaved.stdout.endsWith(`\nPSK identity (shown once; save it in a psk.txt):\n${PSK}`), unsaved.stdout);
  assert.deepEqual((await readdir(dir)).sort(), ['psk.txt', 'work']);
});

test('appliance create --wait reports a failed start with its reason (recorded-shape API server)', async (t) => {
  const api = await startRecordedApi(t);
  api.on('POST /v1/appliances', () => ({ status: 201, json: { ...MYDB, name: 'm', kind: 'mongo', status: 'creating' } }));
  api.on('GET /v1/appliances/m', () => ({ json: { ...MYDB, name: 'm', kind: 'mongo', status: 'failed', lastError: 'mongod is not installed' } }));
  const r = await eph(['appliance', 'create', 'mongo', 'm', '--wait', '--no-psk-file'], { env: api.env });
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'eph: m failed to start: mongod is not installed\n');
});

test('appliance ls, show, rm: table, fields, a 204 answer (recorded-shape API server)', async (t) => {
  const api = await startRecordedApi(t);
  const cache = { ...MYDB, name: 'cache', kind: 'redis', public: '127.0.0.1:40124', url: 'redis://:pw@127.0.0.1:6379' };
  api.on('GET /v1/appliances', () => ({ json: { appliances: [MYDB, cache] } }));
  api.on('GET /v1/appliances/mydb', () => ({ json: MYDB }));
  api.on('DELETE /v1/appliances/cache', () => ({ write: (res) => res.writeHead(204).end() }));
  const [ls, json, show, removed] = await Promise.all([
    eph(['appliance', 'ls'], { env: api.env }),
    eph(['appliance', 'ls', '--json'], { env: api.env }),
    eph(['appliance', 'show', 'mydb'], { env: api.env }),
    eph(['appliance', 'rm', 'cache', '--json'], { env: api.env }),
  ]);
  assert.equal(removed.code, 0, removed.stderr);
  assert.deepEqual(JSON.parse(removed.stdout), { deleted: 'cache' });
  assert.equal(ls.code, 0, ls.stderr);
  assert.deepEqual(ls.stdout.trimEnd().split('\n').map((l) => l.split(/\s+/)), [
    ['NAME', 'KIND', 'STATUS', 'PUBLIC', 'URL'],
    ['mydb', 'postgres', 'running', '127.0.0.1:40123', MYDB.url],
    ['cache', 'redis', 'running', '127.0.0.1:40124', cache.url],
  ]);
  assert.deepEqual(JSON.parse(json.stdout), { appliances: [MYDB, cache] });
  assert.match(show.stdout, /^public:\s+127\.0\.0\.1:40123$/m);
  assert.match(show.stdout, /^url:\s+postgres:\/\/eph_mydb:secret@127\.0\.0\.1:5432\/mydb$/m);
});

test('appliance backup streams to stdout or --output; restore streams stdin (recorded-shape API server)', async (t) => {
  const api = await startRecordedApi(t);
  const dump = randomBytes(3 * 1024 * 1024 + 17);
  api.on('GET /v1/appliances/mydb/backup', () => ({
    write: (res) => {
      res.writeHead(200, { 'content-type': 'application/sql' });
      // In pieces, as a dump arrives from pg_dump.
      let i = 0;
      const next = () => {
        if (i >= dump.length) return void res.end();
        const ok = res.write(dump.subarray(i, (i += 256 * 1024)));
        if (ok) setImmediate(next);
        else res.once('drain', next);
      };
      next();
    },
  }));
  api.on('POST /v1/appliances/mydb/restore', (q) => ({ json: { ...MYDB, restoredBytes: q.body.length } }));
  const dir = await mkdtemp(join(tmpdir(), 'eph-cli-backup-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'dump.sql');

  const [toStdout, toFile] = await Promise.all([
    eph(['appliance', 'backup', 'mydb'], { env: api.env }),
    eph(['appliance', 'backup', 'mydb', '-o', file], { env: api.env }),
  ]);
  assert.equal(toStdout.code, 0, toStdout.stderr);
  assert.ok(toStdout.stdoutBytes.equals(dump), 'stdout carries the backup byte for byte');
  assert.equal(toFile.code, 0, toFile.stderr);
  assert.ok((await readFile(file)).equals(dump));
  assert.equal(toFile.stderr, `wrote ${dump.length} bytes to ${file}\n`);

  const restored = await eph(['appliance', 'restore', 'mydb', '--json'], { env: api.env, input: dump });
  assert.equal(restored.code, 0, restored.stderr);
  assert.deepEqual(JSON.parse(restored.stdout), { ...MYDB, restoredBytes: dump.length });
  const post = api.requests.find((q) => q.method === 'POST')!;
  assert.ok(post.body.equals(dump), 'the server received stdin byte for byte');
  assert.equal(post.headers['content-type'], 'application/octet-stream');
});

test('appliance psk checks psk.txt locally (line number), then PUTs it; stunnel-conf prints the file (recorded-shape API server)', async (t) => {
  const api = await startRecordedApi(t);
  const conf = '[mydb]\nclient = yes\naccept = 127.0.0.1:5432\nconnect = 127.0.0.1:40123\nPSKsecrets = psk.txt\n';
  api.on('PUT /v1/appliances/mydb/psk', () => ({ json: { identities: ['laptop', 'ci'] } }));
  api.on('GET /v1/appliances/mydb/stunnel.conf', () => ({ text: conf }));
  const dir = await mkdtemp(join(tmpdir(), 'eph-cli-psk-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const bad = join(dir, 'bad.txt');
  const good = join(dir, 'psk.txt');
  await writeFile(bad, 'laptop:0123456789abcdef0123456789abcdef\nci:short\n');
  const goodText = 'laptop:0123456789abcdef0123456789abcdef\nci:a long enough passphrase\n';
  await writeFile(good, goodText);

  const [refused, accepted, shown] = await Promise.all([
    eph(['appliance', 'psk', 'mydb', bad], { env: api.env }),
    eph(['appliance', 'psk', 'mydb', good], { env: api.env }),
    eph(['appliance', 'stunnel-conf', 'mydb'], { env: api.env }),
  ]);
  assert.equal(refused.code, 1);
  assert.equal(refused.stderr, 'eph: psk.txt line 2: expected IDENTITY:KEY with a key of at least 16 characters\n');
  assert.equal(accepted.code, 0, accepted.stderr);
  assert.equal(accepted.stdout, 'mydb: 2 PSK identities (laptop, ci)\n');
  const puts = api.requests.filter((q) => q.method === 'PUT');
  assert.equal(puts.length, 1, 'the malformed file was never sent');
  assert.equal(puts[0]!.body.toString(), goodText);
  assert.match(String(puts[0]!.headers['content-type']), /^text\/plain/);
  assert.equal(shown.code, 0, shown.stderr);
  assert.equal(shown.stdout, conf);
});
