// Issue 8 item 6: the data directory and its secrets are the service
// account's; only the image trees are for the sandbox user (uid 65534), tried
// as that user would (a real process running as 65534). A data directory the
// sandbox user cannot reach is refused at start-up instead of failing every wake.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { zipFrom } from '../../helpers/archives.ts';
import { startTestCloud, type TestCloud } from '../../helpers/cloud.ts';
import { isEphError } from '../../../src/core/errors.ts';
import { netnsSkip } from './helpers.ts';

const skip = netnsSkip();
const SERVER = `require('http').createServer((q, s) => s.end('served from the image')).listen(Number(process.env.PORT));\n`;

let cloud: TestCloud;
let parent = '';

before(async () => {
  if (skip) return;
  cloud = await startTestCloud();
  parent = mkdtempSync(join(tmpdir(), 'eph-private-parent-'));
});

after(async () => {
  await cloud?.close();
  if (parent) rmSync(parent, { recursive: true, force: true });
});

const mode = (path: string): string => (statSync(path).mode & 0o777).toString(8).padStart(4, '0');

/** Runs argv as the sandbox user (uid/gid 65534, no groups), as a tenant's app would be. */
function asSandboxUser(argv: string[]): { status: number | null; stdout: string } {
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', ...argv], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout };
}

test('secrets are 0600 and the data directory can be passed through but not listed; the sandbox user still runs its image', { skip }, async () => {
  const host = await cloud.publish(await zipFrom([{ name: 'Procfile', data: 'web: node server.js\n' }, { name: 'server.js', data: SERVER }]));
  const visit = await cloud.visit(host);
  assert.equal(visit.status, 200, visit.body);
  assert.equal(visit.body, 'served from the image');

  const data = cloud.dataDir;
  assert.equal(mode(data), '0711');
  for (const d of ['logs', 'run', 'tmp']) assert.equal(mode(join(data, d)), '0700', d);
  const db = readdirSync(data).filter((f) => f.startsWith('eph.sqlite'));
  assert.ok(db.includes('eph.sqlite') && db.includes('eph.sqlite-wal'), db.join(','));
  for (const f of db) assert.equal(mode(join(data, f)), '0600', f);
  const log = join(data, 'logs', `${host}.log`);
  assert.equal(mode(log), '0600');

  // What another local account (here: a tenant's app) gets when it tries.
  assert.notEqual(asSandboxUser(['cat', join(data, 'eph.sqlite')]).status, 0, 'eph.sqlite is readable by uid 65534');
  assert.notEqual(asSandboxUser(['cat', join(data, 'eph.sqlite-wal')]).status, 0, 'the WAL is readable by uid 65534');
  assert.notEqual(asSandboxUser(['cat', log]).status, 0, 'the instance log is readable by uid 65534');
  assert.notEqual(asSandboxUser(['ls', data]).status, 0, 'the data directory can be listed by uid 65534');
  const image = readdirSync(join(data, 'images')).find((e) => !e.includes('.'));
  assert.ok(image, 'an unpacked image tree');
  const read = asSandboxUser(['cat', join(data, 'images', image, 'server.js')]);
  assert.equal(read.status, 0);
  assert.equal(read.stdout, SERVER);
});

test('a data directory inside a 0700 parent is refused at start-up with what to change', { skip }, async () => {
  const data = join(parent, 'data');
  mkdirSync(data);
  chmodSync(parent, 0o700);
  const refusal = await startTestCloud({}, { dataDir: data }).then(
    // A cloud that started anyway must not outlive the test.
    async (c) => {
      await c.close();
      return null;
    },
    (e: unknown) => e,
  );
  assert.ok(isEphError(refusal), `expected a refusal, got ${String(refusal)}`);
  assert.equal(refusal.code, 'INVALID_CONFIG');
  assert.equal(refusal.message.includes('\n'), false);
  assert.match(refusal.message, new RegExp(`${parent} is not searchable by the sandbox user \\(uid 65534\\).*chmod o\\+x ${parent}`));
  // Once told, the operator does it, and the same directory works.
  chmodSync(parent, 0o711);
  const ok = await startTestCloud({}, { dataDir: data });
  await ok.close();
});
