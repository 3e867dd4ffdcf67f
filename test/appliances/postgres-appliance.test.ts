import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import pg from 'pg';
import type { ApplianceRecord } from '../../src/core/types.ts';
import type { ApplianceService } from '../../src/appliances/appliance-service.ts';
import { findPgBin } from '../../src/appliances/binaries.ts';
import { formatPskFile } from '../../src/tunnel/psk-file.ts';
import { freePort, NO_STUNNEL, startStunnel, tempDir, waitFor, writePskFile } from '../tunnel/fixtures.ts';
import type { Cloud } from './fixtures.ts';
import { listeningAddresses, startCloud, throughTunnel, tunnelTo } from './fixtures.ts';

let NO_PG: string | false = false;
try {
  findPgBin();
} catch {
  NO_PG = 'PostgreSQL server binaries are not installed';
}

let cloud: Cloud;
let rec: ApplianceRecord;

// Cleanups of the shared cluster, run once after the last test.
const cleanups: (() => unknown)[] = [];
const shared = { after: (fn: () => unknown): void => void cleanups.push(fn) };

async function query(service: ApplianceService, r: ApplianceRecord, sql: string): Promise<Record<string, unknown>[]> {
  const t = shared;
  const tunnel = await tunnelTo(t, r);
  const client = new pg.Client({ connectionString: throughTunnel(service.view(r).url, tunnel.address.port) });
  await client.connect();
  try {
    return (await client.query(sql)).rows as Record<string, unknown>[];
  } finally {
    await client.end();
  }
}
before(async () => {
  if (NO_PG) return;
  cloud = await startCloud(shared);
  rec = await cloud.appliances.create(cloud.user, 'postgres', 'mydb');
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

test('create postgres: running, generated role, url for port 5432, public TLS-PSK endpoint', { skip: NO_PG }, () => {
  const v = cloud.appliances.view(rec);
  assert.equal(v.kind, 'postgres');
  assert.equal(v.status, 'running');
  assert.match(v.url, /^postgres:\/\/u_[0-9a-f]{10}:[A-Za-z0-9_-]{24}@127\.0\.0\.1:5432\/mydb$/);
  assert.equal(v.public, `127.0.0.1:${rec.publicPort}`);
  assert.equal(Object.keys(rec.psk).length, 1);
});

test('a query through our TLS-PSK client tunnel reaches the database as its role', { skip: NO_PG }, async () => {
  const rows = await query(cloud.appliances, rec, 'select current_user as u, current_database() as d, (select rolsuper from pg_roles where rolname = current_user) as su');
  assert.deepEqual(rows, [{ u: rec.settings.role, d: 'mydb', su: false }]);
  await query(cloud.appliances, rec, "create table notes (id int primary key, body text); insert into notes values (1, 'kept'), (2, 'also kept')");
});

test('the database and the endpoint listen on 127.0.0.1 only', { skip: NO_PG }, () => {
  assert.deepEqual(listeningAddresses(rec.port), ['127.0.0.1']);
  assert.deepEqual(listeningAddresses(rec.publicPort), ['127.0.0.1']);
});

test('psql through real stunnel4 with the generated stunnel.conf and psk.txt', { skip: NO_PG || NO_STUNNEL }, async (t) => {
  const dir = tempDir(t, 'eph-appl-stunnel-');
  const conf = await cloud.appliances.stunnelConf(cloud.user, 'mydb');
  assert.equal(conf, `[mydb]\nclient = yes\naccept = 127.0.0.1:5432\nconnect = 127.0.0.1:${rec.publicPort}\nPSKsecrets = psk.txt\n`);
  writePskFile(dir, formatPskFile(rec.psk));
  // 5432 may be in use on a developer's machine: same file, another accept port.
  const local = await freePort();
  await startStunnel(t, dir, conf.replace('accept = 127.0.0.1:5432', `accept = 127.0.0.1:${local}`), 30);
  const s = rec.settings;
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('psql', ['-X', '-At', '-h', '127.0.0.1', '-p', String(local), '-U', s.role!, '-d', 'mydb', '-c', 'select body from notes order by id'], {
      env: { ...process.env, PGPASSWORD: s.password, PGCONNECT_TIMEOUT: '10' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let text = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (text += d));
    child.stderr.on('data', (d: Buffer) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(text);
      else reject(new Error(`psql exited ${code}: ${err}`));
    });
  });
  assert.equal(out, 'kept\nalso kept\n');
});

test('data survives stop and start; stopped means nothing listens', { skip: NO_PG }, async () => {
  const stopped = await cloud.appliances.stop(cloud.user, 'mydb');
  assert.equal(stopped.status, 'stopped');
  assert.deepEqual(listeningAddresses(rec.port), []);
  assert.deepEqual(listeningAddresses(rec.publicPort), []);
  rec = await cloud.appliances.start(cloud.user, 'mydb');
  assert.equal(rec.status, 'running');
  const rows = await query(cloud.appliances, rec, 'select count(*)::int as n from notes');
  assert.deepEqual(rows, [{ n: 2 }]);
});

test('backup is a pg_dump; restore brings the data back', { skip: NO_PG }, async () => {
  const { stream, filename, contentType } = await cloud.appliances.backup(cloud.user, 'mydb');
  assert.equal(filename, 'mydb.sql');
  assert.equal(contentType, 'application/sql');
  let dump = '';
  for await (const chunk of stream) dump += String(chunk);
  assert.match(dump, /CREATE TABLE public\.notes/);
  await query(cloud.appliances, rec, "delete from notes; insert into notes values (3, 'after backup')");
  const { Readable } = await import('node:stream');
  await cloud.appliances.restore(cloud.user, 'mydb', Readable.from([dump]));
  const rows = await query(cloud.appliances, rec, 'select body from notes order by id');
  assert.deepEqual(rows.map((r) => r.body), ['kept', 'also kept']);
});

test('a restore that fails names the error and leaves the data as it was', { skip: NO_PG }, async () => {
  const { Readable } = await import('node:stream');
  await assert.rejects(
    cloud.appliances.restore(cloud.user, 'mydb', Readable.from(['delete from notes;\nthis is not sql;\n'])),
    (e: Error & { code?: string }) => e.code === 'INVALID_VALUE' && /syntax error/.test(e.message),
  );
  const rows = await query(cloud.appliances, rec, 'select count(*)::int as n from notes');
  assert.deepEqual(rows, [{ n: 2 }]);
});

test('another user sees no such appliance', { skip: NO_PG }, async () => {
  await assert.rejects(cloud.appliances.get(cloud.other, 'mydb'), { code: 'NOT_FOUND' });
  await assert.rejects(cloud.appliances.stop(cloud.other, 'mydb'), { code: 'NOT_FOUND' });
});

test('data and the public port survive a restart of the cloud', { skip: NO_PG }, async () => {
  await cloud.appliances.close();
  await waitFor('the database to stop', () => listeningAddresses(rec.port).length === 0);
  const again = await cloud.restart();
  const reloaded = await again.get(cloud.user, 'mydb');
  assert.equal(reloaded.status, 'running');
  assert.equal(reloaded.publicPort, rec.publicPort);
  const rows = await query(again, reloaded, 'select count(*)::int as n from notes');
  assert.deepEqual(rows, [{ n: 2 }]);
  await again.remove(cloud.user, 'mydb');
  assert.deepEqual(await again.list(cloud.user), []);
  assert.deepEqual(listeningAddresses(reloaded.port), []);
});
