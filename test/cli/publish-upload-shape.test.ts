import assert from 'node:assert/strict';
import { spawnSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { startRecordedApi, type RecordedApi } from './recorded-api.ts';
import { eph } from './run-eph.ts';

const VIEW = {
  hostname: 'eph-0a1b2c3d.eph.localhost',
  state: 'asleep',
  url: 'http://eph-0a1b2c3d.eph.localhost:8080/',
  isRunning: false,
  alias: null,
  imageName: 'x',
  accessTime: '2024-01-01T00:00:00.000+00:00',
  createdTime: '2024-01-01T00:00:00.000+00:00',
  lastError: null,
  imageDigest: '0'.repeat(64),
};

function answerPublish(api: RecordedApi): void {
  api.on('POST /v1/instances', () => ({ status: 201, json: VIEW }));
}

test('publish streams the file as the body, typed by its magic bytes, named in X-Name (recorded-shape API server)', async (t) => {
  const api = await startRecordedApi(t);
  answerPublish(api);
  const dir = await mkdtemp(join(tmpdir(), 'eph-cli-upload-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const zip = Buffer.concat([Buffer.from('PK\x03\x04'), randomBytes(700_000)]);
  const tar = Buffer.alloc(1024);
  tar.write('ustar', 257, 'latin1');
  const tgz = gzipSync(tar);
  await writeFile(join(dir, 'a.zip'), zip);
  await writeFile(join(dir, 'b.tar'), tar);
  await writeFile(join(dir, 'c.tar.gz'), tgz);
  // Sequential, so that requests arrive in a known order.
  for (const args of [['a.zip', '--name', 'my shop ü'], ['b.tar'], ['c.tar.gz']]) {
    const r = await eph(['publish', join(dir, args[0]!), ...args.slice(1)], { env: api.env });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${VIEW.hostname}  asleep  ${VIEW.url}\n`);
  }
  const [a, b, c] = api.requests;
  assert.equal(a!.headers['content-type'], 'application/zip');
  assert.equal(a!.headers['content-length'], String(zip.length));
  assert.equal(decodeURIComponent(String(a!.headers['x-name'])), 'my shop ü');
  assert.ok(a!.body.equals(zip), 'the body is the file, byte for byte');
  assert.equal(b!.headers['content-type'], 'application/x-tar');
  assert.equal(b!.headers['x-name'], 'b.tar', 'the name defaults to the file name');
  assert.ok(b!.body.equals(tar));
  assert.equal(c!.headers['content-type'], 'application/gzip');
  assert.ok(c!.body.equals(tgz));
});

const SCRIPT = spawnSync('script', ['--version']).status === 0;

test(
  'publish draws the progress bar when stderr is a terminal, and --no-progress hides it (real pty via script(1), recorded-shape API server)',
  { skip: SCRIPT ? false : 'script(1) from util-linux is not installed' },
  async (t) => {
    const api = await startRecordedApi(t);
    answerPublish(api);
    const dir = await mkdtemp(join(tmpdir(), 'eph-cli-tty-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'app.zip');
    await writeFile(file, Buffer.concat([Buffer.from('PK\x03\x04'), randomBytes(300_000)]));
    const bin = fileURLToPath(new URL('../../bin/eph.js', import.meta.url));
    const inPty = (extra: string) =>
      new Promise<string>((resolve, reject) => {
        const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(bin)} publish ${JSON.stringify(file)} ${extra}`;
        const child = spawn('script', ['-qefc', cmd, '/dev/null'], { env: { ...process.env, ...api.env }, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout.on('data', (c: Buffer) => (out += c.toString()));
        const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
        child.on('error', reject);
        child.on('close', (code) => {
          clearTimeout(timer);
          if (code === 0) resolve(out);
          else reject(new Error(`exit ${code}: ${out}`));
        });
      });
    const [shown, hidden] = await Promise.all([inPty(''), inPty('--no-progress')]);
    assert.match(shown, /uploading app\.zip \[={30}\] 100% 300 kB\/300 kB/);
    assert.match(shown, /eph-0a1b2c3d\.eph\.localhost {2}asleep/);
    assert.doesNotMatch(hidden, /uploading/);
    assert.match(hidden, /eph-0a1b2c3d\.eph\.localhost {2}asleep/);
  },
);

test('publish refused before the body is read, with the answer lost to a reset: eph asks again and shows the reason (recorded-shape API server)', async (t) => {
  const api = await startRecordedApi(t);
  const dir = await mkdtemp(join(tmpdir(), 'eph-cli-reset-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'big.zip');
  await writeFile(file, Buffer.concat([Buffer.from('PK\x03\x04'), randomBytes(4 * 1024 * 1024)]));
  let uploads = 0;
  api.onHeaders((req, res) => {
    if (req.url !== '/v1/instances') return false;
    // First the upload: cut with a reset, no answer. Then the probe: the answer the upload lost.
    if (uploads++ === 0) req.socket.resetAndDestroy();
    else {
      assert.equal(req.headers['content-length'], String(4 * 1024 * 1024 + 4));
      res.writeHead(413, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'ARCHIVE_TOO_LARGE', message: 'archive of 4194308 bytes is over the limit of 1000000 bytes' } }));
    }
    return true;
  });
  const r = await eph(['publish', file], { env: api.env });
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'eph: archive of 4194308 bytes is over the limit of 1000000 bytes\n');
  assert.equal(uploads, 2);
});
