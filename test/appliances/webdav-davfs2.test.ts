// davfs2 (Debian package davfs2) mounts a static site's share from the real
// cloud, with the user's id and token as a user would put them in its
// secrets file, and writes through it: files, a directory, a rename and a
// copy arrive on the site (davfs2 locks files while it writes them, so this
// also runs LOCK/UNLOCK the way a file manager does).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { startCloudFixture } from '../cli/cloud.fixtures.ts';
import type { CloudFixture } from '../cli/cloud.fixtures.ts';

const MOUNT = '/usr/sbin/mount.davfs';
const skip = !existsSync(MOUNT)
  ? `${MOUNT} missing (install the Debian package davfs2)`
  : process.getuid?.() !== 0
    ? 'mounting with davfs2 needs root'
    : !existsSync('/dev/fuse')
      ? '/dev/fuse missing (the kernel has no FUSE)'
      : false;

const cleanups: (() => Promise<void>)[] = [];
let fx: CloudFixture;
let auth: string;
let share: string;
let dir: string;
let mnt: string;
const SITE = `davfs${process.pid}`;

function run(cmd: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (output += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (output += c));
    const killer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(killer);
      resolve({ code, output });
    });
  });
}

async function mounted(): Promise<boolean> {
  return (await readFile('/proc/mounts', 'utf8')).split('\n').some((l) => l.split(' ')[1] === mnt);
}

before(async () => {
  if (skip) return;
  fx = await startCloudFixture((fn) => void cleanups.push(fn));
  auth = `Basic ${Buffer.from(`${fx.user.id}:${fx.env.EPH_TOKEN}`).toString('base64')}`;
  const r = await request(`${fx.cloud.apiUrl}/v1/appliances`, {
    method: 'POST',
    headers: { authorization: auth, 'content-type': 'application/json' },
    body: JSON.stringify({ kind: 'static', name: SITE }),
  });
  assert.equal(r.statusCode, 201, await r.body.text());
  const put = await request(`${fx.cloud.apiUrl}/v1/appliances/${SITE}/files/from-api.txt`, { method: 'PUT', headers: { authorization: auth }, body: 'written by the API' });
  assert.equal(put.statusCode, 201);
  share = `${fx.cloud.apiUrl}/v1/appliances/${SITE}/dav/`;
  dir = await mkdtemp(join(tmpdir(), 'eph-davfs-'));
  mnt = join(dir, 'mnt');
  await mkdir(mnt);
  await writeFile(join(dir, 'secrets'), `${share} ${fx.user.id} ${fx.env.EPH_TOKEN}\n`, { mode: 0o600 });
  // buf_size 64: davfs2 1.7 cannot list directories on Linux 6.16 and later with its default buffer.
  await writeFile(join(dir, 'davfs2.conf'), `secrets ${join(dir, 'secrets')}\nuse_locks 1\nbuf_size 64\n`);
  cleanups.push(async () => {
    if (await mounted()) {
      const u = await run('umount', [mnt]);
      if (u.code !== 0) await run('umount', ['-l', mnt]);
    }
    await rm(dir, { recursive: true, force: true });
  });
  const m = await run(MOUNT, ['-o', `conf=${join(dir, 'davfs2.conf')},uid=0,gid=0`, share, mnt]);
  assert.equal(m.code, 0, `mount.davfs: ${m.output}`);
  assert.ok(await mounted(), 'the share is mounted');
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function get(path: string): Promise<{ status: number; text: string }> {
  const r = await request(`${fx.cloud.apiUrl}/v1/appliances/${SITE}/files/${path}`, { headers: { authorization: auth } });
  return { status: r.statusCode, text: await r.body.text() };
}

test('davfs2 lists the share, and what it writes (file, directory, rename, copy) is on the site after unmounting', { skip, timeout: 300_000 }, async () => {
  assert.ok((await readdir(mnt)).includes('from-api.txt'));
  assert.equal(await readFile(join(mnt, 'from-api.txt'), 'utf8'), 'written by the API');
  await writeFile(join(mnt, 'hello.txt'), 'hello from davfs2\n');
  await mkdir(join(mnt, 'docs'));
  await writeFile(join(mnt, 'docs', 'draft.txt'), 'draft\n');
  await rename(join(mnt, 'docs', 'draft.txt'), join(mnt, 'docs', 'final.txt'));
  await copyFile(join(mnt, 'hello.txt'), join(mnt, 'docs', 'copy.txt'));
  assert.deepEqual((await readdir(join(mnt, 'docs'))).sort(), ['copy.txt', 'final.txt']);
  // umount.davfs returns once davfs2 has uploaded everything it holds.
  const u = await run('umount', [mnt]);
  assert.equal(u.code, 0, `umount: ${u.output}`);
  assert.equal((await get('hello.txt')).text, 'hello from davfs2\n');
  assert.equal((await get('docs/final.txt')).text, 'draft\n');
  assert.equal((await get('docs/copy.txt')).text, 'hello from davfs2\n');
  assert.equal((await get('docs/draft.txt')).status, 404);
});
