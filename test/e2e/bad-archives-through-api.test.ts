import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { patchBytes, patchZipDeclaredSize, tarFrom, zipFrom } from '../helpers/archives.ts';
import { startTestCloud, type TestCloud } from '../helpers/cloud.ts';

/**
 * Every kind of bad archive, sent through the compat publish both as curl -F
 * multipart and as the Pharo client's raw body, gets the right 4xx with a
 * JSON error and leaves nothing behind: no instance, no image, no tmp file.
 */
let cloud: TestCloud;

before(async () => {
  // A small unpacked limit so that a zip bomb fits under the 1 MB archive limit.
  cloud = await startTestCloud({ maxArchive: '1MB' }, { env: { EPH_MAX_UNPACKED: '16MB' } });
});
after(() => cloud?.close());

const PROCFILE = { name: 'Procfile', data: 'web: node server.js\n' };

interface Case {
  label: string;
  build: () => Promise<Buffer> | Buffer;
  status: number;
  code: string;
  message: RegExp;
  /** The archive itself is over the archive limit (every other case is under it). */
  overLimit?: boolean;
}

const cases: Case[] = [
  {
    label: 'not an archive',
    build: () => Buffer.from('just some text, certainly not an archive\n'.repeat(10)),
    status: 400,
    code: 'ARCHIVE_INVALID',
    message: /not a zip, tar or tar\.gz/,
  },
  {
    label: 'truncated zip',
    build: async () => {
      const zip = await zipFrom([PROCFILE, { name: 'server.js', data: randomBytes(20_000) }]);
      return zip.subarray(0, Math.floor(zip.length / 2));
    },
    status: 400,
    code: 'ARCHIVE_INVALID',
    message: /zip/,
  },
  {
    label: 'over the 1 MB archive limit',
    build: () => zipFrom([PROCFILE, { name: 'noise.bin', data: randomBytes(1_500_000), store: true }]),
    status: 413,
    code: 'ARCHIVE_TOO_LARGE',
    message: /limit/,
    overLimit: true,
  },
  {
    // Under the announced-length allowance for multipart framing: caught while reading.
    label: 'just over the 1 MB archive limit',
    build: () => zipFrom([PROCFILE, { name: 'noise.bin', data: randomBytes(1_010_000), store: true }]),
    status: 413,
    code: 'ARCHIVE_TOO_LARGE',
    message: /limit/,
    overLimit: true,
  },
  {
    label: 'no image and no Procfile',
    build: () => zipFrom([{ name: 'README.md', data: '# hi' }, { name: 'index.js', data: '' }]),
    status: 422,
    code: 'ARCHIVE_NO_APP',
    message: /no \*\.image file and no Procfile/,
  },
  {
    label: 'two images and no Procfile',
    build: () => zipFrom([{ name: 'a.image', data: 'a' }, { name: 'old/b.image', data: 'b' }]),
    status: 422,
    code: 'ARCHIVE_NO_APP',
    message: /2 \*\.image files/,
  },
  {
    label: "a '../' path",
    build: async () => patchBytes(await zipFrom([PROCFILE, { name: 'xx/evil.sh', data: 'pwned' }]), 'xx/evil.sh', '../evil.sh'),
    status: 400,
    code: 'ARCHIVE_UNSAFE',
    message: /'\.\.\/evil\.sh' escapes/,
  },
  {
    label: 'an absolute path',
    build: () => tarFrom([PROCFILE, { name: '/tmp/evil.sh', data: 'pwned' }], { gzip: true }),
    status: 400,
    code: 'ARCHIVE_UNSAFE',
    message: /absolute path/,
  },
  {
    label: 'a symbolic link out of the root',
    build: () => zipFrom([PROCFILE, { name: 'sub/passwd', data: '../../etc/passwd', mode: 0o120777, store: true }]),
    status: 400,
    code: 'ARCHIVE_UNSAFE',
    message: /symbolic link pointing outside/,
  },
  {
    label: 'a device file in a tar',
    build: () => tarFrom([PROCFILE, { name: 'null', type: '3' }]),
    status: 400,
    code: 'ARCHIVE_UNSAFE',
    message: /'null' is a device/,
  },
  {
    label: 'a zip bomb (64 MB of zeros in a small zip)',
    build: () => zipFrom([PROCFILE, { name: 'zeros.bin', data: Buffer.alloc(64 * 1024 * 1024) }]),
    status: 413,
    code: 'ARCHIVE_TOO_LARGE',
    message: /zeros\.bin/,
  },
  {
    label: 'a zip bomb lying about its size',
    build: async () => patchZipDeclaredSize(await zipFrom([PROCFILE, { name: 'zeros.bin', data: Buffer.alloc(64 * 1024 * 1024) }]), 'zeros.bin', 100),
    status: 413,
    code: 'ARCHIVE_TOO_LARGE',
    message: /zeros\.bin/,
  },
];

/** Every file under DATA/images and DATA/tmp with its size: must not change. */
function snapshot(): string[] {
  const out: string[] = [];
  const walk = (dir: string, rel: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const st = statSync(join(dir, name));
      out.push(`${rel}/${name} ${st.isDirectory() ? 'dir' : st.size}`);
      if (st.isDirectory()) walk(join(dir, name), `${rel}/${name}`);
    }
  };
  walk(join(cloud.dataDir, 'images'), 'images');
  walk(join(cloud.dataDir, 'tmp'), 'tmp');
  return out;
}

async function instanceCount(): Promise<number> {
  const r = await cloud.api('GET', cloud.compatBase());
  return (r.json as { ephemerics: unknown[] }).ephemerics.length;
}

async function postMultipart(archive: Buffer): Promise<{ status: number; text: string }> {
  const form = new FormData();
  form.append('imageZip', new Blob([new Uint8Array(archive)], { type: 'application/octet-stream' }), 'app.zip');
  const r = await fetch(`${cloud.apiUrl}${cloud.compatBase()}`, { method: 'POST', headers: { authorization: cloud.auth(cloud.alice) }, body: form });
  return { status: r.status, text: await r.text() };
}

async function postRaw(archive: Buffer): Promise<{ status: number; text: string }> {
  const r = await cloud.api('POST', cloud.compatBase(), { body: archive, headers: { 'content-type': 'application/zip', 'x-name': 'app.zip' } });
  return { status: r.status, text: r.text };
}

for (const c of cases) {
  for (const [how, post] of [
    ['multipart imageZip', postMultipart],
    ['raw body', postRaw],
  ] as const) {
    test(`${c.label} (${how}): ${c.status} ${c.code}, nothing stored`, async () => {
      const archive = await c.build();
      assert.equal(archive.length > 1_000_000, c.overLimit === true, `archive of ${archive.length} bytes`);
      const before = snapshot();
      const count = await instanceCount();
      const r = await post(archive);
      assert.equal(r.status, c.status, r.text);
      const body = JSON.parse(r.text) as { error: { code: string; message: string } };
      assert.equal(body.error.code, c.code, body.error.message);
      assert.match(body.error.message, c.message);
      assert.deepEqual(snapshot(), before, 'DATA/images and DATA/tmp are unchanged');
      assert.equal(await instanceCount(), count, 'no new instance');
    });
  }
}

test('an archive over the limit streamed without Content-Length (raw, chunked): 413, reading stops, nothing stored', async () => {
  const before = snapshot();
  const count = await instanceCount();
  let sent = 0;
  async function* endless(): AsyncGenerator<Buffer> {
    const zip = await zipFrom([PROCFILE, { name: 'noise.bin', data: randomBytes(64 * 1024), store: true }]);
    yield zip.subarray(0, 40_000);
    // Then noise for as long as the server reads: it must stop at the limit.
    for (let i = 0; i < 200; i++) {
      sent += 64 * 1024;
      yield randomBytes(64 * 1024);
    }
  }
  const r = await cloud
    .api('POST', cloud.compatBase(), { body: endless(), headers: { 'content-type': 'application/zip' } })
    .catch((e: unknown) => ({ status: 0, text: String(e) }));
  assert.equal(r.status, 413, r.text);
  assert.equal((JSON.parse(r.text) as { error: { code: string } }).error.code, 'ARCHIVE_TOO_LARGE');
  assert.ok(sent < 8 * 1024 * 1024, `the server read ${sent} bytes of an endless upload`);
  assert.deepEqual(snapshot(), before);
  assert.equal(await instanceCount(), count);
});

test('control: a good archive through the same two paths is accepted and stored', async () => {
  const good = await zipFrom([PROCFILE, { name: 'server.js', data: 'require("http").createServer((q, s) => s.end("ok")).listen(process.env.PORT)\n' }]);
  const before = snapshot();
  const a = await postMultipart(good);
  assert.equal(a.status, 200, a.text);
  const b = await postRaw(good);
  assert.equal(b.status, 200, b.text);
  assert.notDeepEqual(snapshot(), before, 'the image was stored');
  assert.equal(await instanceCount(), 2);
});
