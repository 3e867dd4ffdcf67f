import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { EphError, type ErrorCode } from '../../src/core/errors.ts';
import { buildTarGz, buildZip, patchBytes, patchZipDeclaredSize, tarFrom, zipFrom } from '../helpers/archives.ts';
import { body, leftovers, makeStore } from './store-fixture.ts';
import type { TestContext } from 'node:test';
import type { IntakeLimits } from '../../src/images/image-store.ts';

const PROCFILE = { name: 'Procfile', data: 'web: node server.js\n' };

/** Intake must fail with `code`, a message matching `message`, and leave nothing behind. */
async function rejects(t: TestContext, archive: Buffer | Readable, code: ErrorCode, message: RegExp, limits: Partial<IntakeLimits> = {}): Promise<void> {
  const store = await makeStore(t, limits);
  const err = await store.intake(Buffer.isBuffer(archive) ? body(archive) : archive).then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(err instanceof EphError, `expected an EphError, got ${String(err)}`);
  assert.equal(err.code, code, err.message);
  assert.match(err.message, message);
  assert.deepEqual(await leftovers(store), []);
}

test('bytes that are no archive are ARCHIVE_INVALID', async (t) => {
  await rejects(t, Buffer.from('hello, this is plain text and no archive at all\n'.repeat(20)), 'ARCHIVE_INVALID', /not a zip, tar or tar.gz/);
});

test('an empty upload is ARCHIVE_INVALID', async (t) => {
  await rejects(t, Buffer.alloc(0), 'ARCHIVE_INVALID', /empty/);
});

test('a truncated zip is ARCHIVE_INVALID', async (t) => {
  const zip = await zipFrom([PROCFILE, { name: 'big.bin', data: Buffer.alloc(20_000, 7) }]);
  await rejects(t, zip.subarray(0, Math.floor(zip.length / 2)), 'ARCHIVE_INVALID', /zip/);
});

test('a zip whose data was damaged fails its CRC and is ARCHIVE_INVALID', async (t) => {
  const zip = await zipFrom([PROCFILE, { name: 'data.txt', data: 'A'.repeat(5000), store: true }]);
  await rejects(t, patchBytes(zip, 'AAAAAAAA', 'AAAABAAA'), 'ARCHIVE_INVALID', /data\.txt.*CRC/);
});

test('a zip with a corrupt deflate stream is ARCHIVE_INVALID naming the entry', async (t) => {
  const text = Array.from({ length: 3000 }, (_, i) => `line ${i} ${i * 7919}`).join('\n');
  const zip = await zipFrom([PROCFILE, { name: 'server.js', data: text }]);
  const i = zip.indexOf('server.js') + 9 + 200;
  const bad = Buffer.from(zip);
  for (let k = 0; k < 64; k++) bad[i + k] = 0xff;
  await rejects(t, bad, 'ARCHIVE_INVALID', /server\.js/);
});

test('a truncated tar.gz is ARCHIVE_INVALID', async (t) => {
  const tgz = tarFrom([PROCFILE, { name: 'noise.bin', data: Buffer.from(Array.from({ length: 30_000 }, (_, i) => (i * 7919) & 0xff)) }], { gzip: true });
  await rejects(t, tgz.subarray(0, tgz.length - 200), 'ARCHIVE_INVALID', /gzip|truncated/i);
});

test('a tar cut inside an entry is ARCHIVE_INVALID', async (t) => {
  const tar = tarFrom([PROCFILE, { name: 'server.js', data: 'x'.repeat(3000) }]);
  await rejects(t, tar.subarray(0, 1536), 'ARCHIVE_INVALID', /truncated/i);
});

test('a tar cut at a block boundary (no end-of-archive marker) is ARCHIVE_INVALID', async (t) => {
  await rejects(t, tarFrom([PROCFILE], { endMarker: false }), 'ARCHIVE_INVALID', /end-of-archive/);
});

test('a tar with a damaged header checksum is ARCHIVE_INVALID', async (t) => {
  const tar = tarFrom([PROCFILE, { name: 'server.js', data: 'ok' }]);
  tar[1024 + 10] = 0x41; // inside the second header's name
  await rejects(t, tar, 'ARCHIVE_INVALID', /checksum|tar/i);
});

test('an upload over maxArchiveBytes is ARCHIVE_TOO_LARGE and reading stops there', async (t) => {
  let produced = 0;
  const endless = Readable.from(
    (function* () {
      for (;;) {
        produced += 65536;
        yield Buffer.alloc(65536, 1);
      }
    })(),
  );
  await rejects(t, endless, 'ARCHIVE_TOO_LARGE', /larger than the limit of 1048576 bytes/, { maxArchiveBytes: 1024 * 1024 });
  assert.ok(produced < 4 * 1024 * 1024, `read ${produced} bytes of an endless upload`);
  // Left to the caller (an HTTP server still has to answer 413), not destroyed.
  assert.equal(endless.destroyed, false);
  endless.destroy();
});

test('zip entry names that escape the root are ARCHIVE_UNSAFE', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['xx/evil.sh', '../evil.sh', /'\.\.\/evil\.sh'.*escapes/],
    ['a/b/xx/xx/evil', 'a/b/../../evil', /'a\/b\/\.\.\/\.\.\/evil'/],
    ['Xetc/cron.d/x', '/etc/cron.d/x', /'\/etc\/cron\.d\/x' is an absolute path/],
    ['XX/evil.bat', 'C:/evil.bat', /drive letter/],
    ['xx_evil.bat', '..\\evil.bat', /backslash/],
  ];
  for (const [planted, evil, message] of cases) {
    await t.test(evil, async (t) => {
      const zip = await zipFrom([PROCFILE, { name: planted, data: 'pwned' }]);
      await rejects(t, patchBytes(zip, planted, evil), 'ARCHIVE_UNSAFE', message);
    });
  }
});

test('zip symbolic links pointing outside the root are ARCHIVE_UNSAFE', async (t) => {
  const cases: [string, { name: string; data: string }[], RegExp][] = [
    ['relative escape', [{ name: 'sub/passwd', data: '../../etc/passwd' }], /'sub\/passwd' is a symbolic link pointing outside/],
    ['absolute target', [{ name: 'passwd', data: '/etc/passwd' }], /'passwd' is a symbolic link to an absolute path/],
    // sub/up -> .. stays inside, but esc -> sub/up/.. resolves to the parent of the root.
    ['chained through another link', [{ name: 'sub/up', data: '..' }, { name: 'esc', data: 'sub/up/..' }], /'esc' is a symbolic link pointing outside/],
  ];
  for (const [label, links, message] of cases) {
    await t.test(label, async (t) => {
      const zip = await zipFrom([PROCFILE, ...links.map((l) => ({ ...l, mode: 0o120777, store: true }))]);
      await rejects(t, zip, 'ARCHIVE_UNSAFE', message);
    });
  }
});

test('a zip entry written through one of its own symbolic links is ARCHIVE_UNSAFE', async (t) => {
  const zip = await zipFrom([PROCFILE, { name: 'lib', data: 'real', mode: 0o120777, store: true }, { name: 'lib/x.js', data: 'x' }]);
  await rejects(t, zip, 'ARCHIVE_UNSAFE', /'lib\/x\.js' would be written through the symbolic link 'lib'/);
});

test('zip device and FIFO entries are ARCHIVE_UNSAFE', async (t) => {
  await rejects(t, await zipFrom([PROCFILE, { name: 'dev/sda', data: '', mode: 0o060644 }]), 'ARCHIVE_UNSAFE', /'dev\/sda' is a device/);
  await rejects(t, await zipFrom([PROCFILE, { name: 'pipe', data: '', mode: 0o010644 }]), 'ARCHIVE_UNSAFE', /'pipe' is a device, FIFO/);
});

test('tar entries that escape the root are ARCHIVE_UNSAFE', async (t) => {
  const cases: [string, Parameters<typeof tarFrom>[0][number], RegExp][] = [
    ['dot-dot path', { name: '../evil.sh', data: 'x' }, /'\.\.\/evil\.sh' escapes/],
    ['absolute path', { name: '/tmp/evil.sh', data: 'x' }, /'\/tmp\/evil\.sh' is an absolute path/],
    ['backslash path', { name: '..\\evil', data: 'x' }, /backslash/],
    ['symlink outside', { name: 'etc', type: '2', linkname: '../../../etc' }, /'etc' is a symbolic link pointing outside/],
    ['absolute symlink', { name: 'etc', type: '2', linkname: '/etc' }, /absolute path/],
    ['hard link outside', { name: 'passwd', type: '1', linkname: '../../etc/passwd' }, /'passwd' is a hard link pointing outside/],
    ['absolute hard link', { name: 'passwd', type: '1', linkname: '/etc/passwd' }, /hard link pointing outside/],
    ['character device', { name: 'null', type: '3' }, /'null' is a device/],
    ['block device', { name: 'sda', type: '4' }, /'sda' is a device/],
    ['FIFO', { name: 'fifo', type: '6' }, /'fifo' is a FIFO/],
  ];
  for (const [label, entry, message] of cases) {
    await t.test(label, async (t) => {
      await rejects(t, tarFrom([PROCFILE, entry]), 'ARCHIVE_UNSAFE', message);
    });
  }
});

test('a tar.gz with an unsafe entry is ARCHIVE_UNSAFE too', async (t) => {
  await rejects(t, tarFrom([PROCFILE, { name: '../../x', data: 'x' }], { gzip: true }), 'ARCHIVE_UNSAFE', /'\.\.\/\.\.\/x'/);
});

test('a zip declaring more unpacked bytes than allowed is ARCHIVE_TOO_LARGE before writing', async (t) => {
  const zip = await zipFrom([PROCFILE, { name: 'zeros.bin', data: Buffer.alloc(3 * 1024 * 1024) }]);
  assert.ok(zip.length < 64 * 1024, 'zeros compress well');
  await rejects(t, zip, 'ARCHIVE_TOO_LARGE', /declares more than 1048576.*zeros\.bin/, { maxUnpackedBytes: 1024 * 1024 });
});

test('a zip bomb that lies about its sizes is stopped as soon as it inflates past the declared size (ARCHIVE_TOO_LARGE)', async (t) => {
  const zip = await zipFrom([PROCFILE, { name: 'zeros.bin', data: Buffer.alloc(3 * 1024 * 1024) }]);
  const lying = patchZipDeclaredSize(zip, 'zeros.bin', 100);
  await rejects(t, lying, 'ARCHIVE_TOO_LARGE', /'zeros\.bin' inflates past the 100 bytes its header declares \(the unpack limit is 1048576 bytes\)/, { maxUnpackedBytes: 1024 * 1024 });
});

test('a zip entry holding more than it declares is refused even within the limits (ARCHIVE_TOO_LARGE)', async (t) => {
  const zip = await zipFrom([PROCFILE, { name: 'a.txt', data: 'a'.repeat(1000) }]);
  await rejects(t, patchZipDeclaredSize(zip, 'a.txt', 10), 'ARCHIVE_TOO_LARGE', /'a\.txt' inflates past the 10 bytes its header declares/);
});

test('a zip entry holding less than it declares is ARCHIVE_INVALID', async (t) => {
  const zip = await zipFrom([PROCFILE, { name: 'a.txt', data: 'a'.repeat(1000) }]);
  await rejects(t, patchZipDeclaredSize(zip, 'a.txt', 5000), 'ARCHIVE_INVALID', /'a\.txt' holds 1000 bytes but declares 5000/);
});

test('a tar.gz bomb is ARCHIVE_TOO_LARGE', async (t) => {
  const tgz = tarFrom([PROCFILE, { name: 'zeros.bin', data: Buffer.alloc(3 * 1024 * 1024) }], { gzip: true });
  await rejects(t, tgz, 'ARCHIVE_TOO_LARGE', /zeros\.bin/, { maxUnpackedBytes: 1024 * 1024 });
});

test('a gzip of endless zero blocks after the tar is ARCHIVE_TOO_LARGE', async (t) => {
  const tar = tarFrom([PROCFILE], { endMarker: false });
  const tgz = gzipSync(Buffer.concat([tar, Buffer.alloc(8 * 1024 * 1024)]));
  await rejects(t, tgz, 'ARCHIVE_TOO_LARGE', /tar stream/, { maxUnpackedBytes: 1024 * 1024, maxEntries: 10 });
});

test('more entries than maxEntries is ARCHIVE_TOO_LARGE (zip and tar)', async (t) => {
  const many = Array.from({ length: 30 }, (_, i) => ({ name: `f${i}.txt`, data: `${i}` }));
  await rejects(t, await zipFrom([PROCFILE, ...many]), 'ARCHIVE_TOO_LARGE', /31 entries, the limit is 20/, { maxEntries: 20 });
  await rejects(t, tarFrom([PROCFILE, ...many]), 'ARCHIVE_TOO_LARGE', /more than 20 entries.*'f19\.txt'/, { maxEntries: 20 });
});

test('an archive with no image and no Procfile is ARCHIVE_NO_APP saying what it holds', async (t) => {
  await rejects(t, await zipFrom([{ name: 'README.md', data: '# hi' }, { name: 'src/index.js', data: '' }]), 'ARCHIVE_NO_APP', /no \*\.image file and no Procfile.*2 files: README\.md, src\/index\.js/);
});

test('two images and no Procfile is ARCHIVE_NO_APP naming both', async (t) => {
  const tgz = tarFrom([{ name: 'a.image', data: 'a' }, { name: 'old/b.image', data: 'b' }], { gzip: true });
  await rejects(t, tgz, 'ARCHIVE_NO_APP', /2 \*\.image files \(a\.image, old\/b\.image\) and no Procfile/);
});

test('a Procfile without a web: line is ARCHIVE_NO_APP', async (t) => {
  await rejects(t, await zipFrom([{ name: 'Procfile', data: 'worker: node worker.js\n' }]), 'ARCHIVE_NO_APP', /Procfile has no web: line \(only worker\)/);
});

test('control: the same builders make archives the store accepts', async (t) => {
  // Sanity: the builders produce archives the store accepts, so the rejections above are about the planted defect.
  const store = await makeStore(t);
  const { fileURLToPath } = await import('node:url');
  const dir = fileURLToPath(new URL('../../examples/node-app', import.meta.url));
  assert.equal((await store.intake(body(await buildZip(dir)))).kind, 'procfile');
  assert.equal((await store.intake(body(await buildTarGz(dir)))).kind, 'procfile');
});
