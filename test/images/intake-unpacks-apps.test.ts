import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink, rm, stat, writeFile, mkdir, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildTar, buildTarGz, buildZip, tarFrom, zipFrom } from '../helpers/archives.ts';
import { body, leftovers, makeStore } from './store-fixture.ts';

const example = (name: string): string => fileURLToPath(new URL(`../../examples/${name}`, import.meta.url));
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

test('a zip with a Procfile becomes a read-only procfile image with its archive kept', async (t) => {
  const store = await makeStore(t);
  const zip = await buildZip(example('node-app'));
  const r = await store.intake(body(zip));
  assert.deepEqual(
    { digest: r.digest, size: r.size, kind: r.kind, entry: r.entry, reused: r.reused, imageDir: r.imageDir },
    { digest: sha256(zip), size: zip.length, kind: 'procfile', entry: 'node server.js', reused: false, imageDir: store.dir(sha256(zip)) },
  );
  assert.ok(store.has(r.digest));
  assert.deepEqual((await readdir(r.imageDir)).sort(), ['Procfile', 'package.json', 'server.js']);
  assert.match(await readFile(join(r.imageDir, 'server.js'), 'utf8'), /hello from node-app/);
  assert.equal((await stat(r.imageDir)).mode & 0o777, 0o555);
  assert.equal((await stat(join(r.imageDir, 'server.js'))).mode & 0o777, 0o444);
  assert.deepEqual(await readFile(store.archive(r.digest)), zip);
  assert.deepEqual((await readdir(store.tmpDir)), []);
});

test('a tar.gz with one *.image becomes a pharo image', async (t) => {
  const store = await makeStore(t);
  const r = await store.intake(body(await buildTarGz(example('pharo-app'))));
  assert.equal(r.kind, 'pharo');
  assert.equal(r.entry, 'app.image');
  assert.deepEqual((await readdir(r.imageDir)).sort(), ['app.changes', 'app.image', 'startup.st']);
  assert.match(await readFile(join(r.imageDir, 'startup.st'), 'utf8'), /Transcript show/);
});

test('a plain tar works, detected by content not name', async (t) => {
  const store = await makeStore(t);
  const r = await store.intake(body(await buildTar(example('node-app'))));
  assert.equal(r.kind, 'procfile');
  assert.equal(r.entry, 'node server.js');
});

test('long names (pax headers) and non-ASCII names survive a tar.gz made by node-tar', async (t) => {
  const { mkdtemp } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const src = await mkdtemp(join(tmpdir(), 'eph-longnames-'));
  t.after(() => rm(src, { recursive: true, force: true }));
  const deep = join('a'.repeat(60), 'b'.repeat(60), 'c'.repeat(60));
  await mkdir(join(src, deep), { recursive: true });
  await writeFile(join(src, deep, 'résumé-ünïcode.txt'), 'deep');
  await writeFile(join(src, 'Procfile'), 'web: node x.js\n');
  const store = await makeStore(t);
  const r = await store.intake(body(await buildTarGz(src)));
  assert.equal(await readFile(join(r.imageDir, deep, 'résumé-ünïcode.txt'), 'utf8'), 'deep');
});

test('the image may sit in a folder: entry is its path inside the image dir', async (t) => {
  const store = await makeStore(t);
  const zip = await zipFrom([
    { name: 'docs/README.txt', data: 'read me' },
    { name: 'pharo/', dir: true },
    { name: 'pharo/MyApp.image', data: 'image bytes' },
    { name: 'pharo/MyApp.changes', data: '' },
    // Finder's resource forks are not a second image.
    { name: '__MACOSX/pharo/._MyApp.image', data: 'fork' },
  ]);
  const r = await store.intake(body(zip));
  assert.equal(r.kind, 'pharo');
  assert.equal(r.entry, 'pharo/MyApp.image');
  assert.equal(await readFile(join(r.imageDir, r.entry), 'utf8'), 'image bytes');
  assert.equal((await stat(join(r.imageDir, 'pharo'))).mode & 0o777, 0o555);
});

test('one image wins over a Procfile; two images fall back to the Procfile', async (t) => {
  const store = await makeStore(t);
  const one = await store.intake(body(await zipFrom([{ name: 'a.image', data: 'a' }, { name: 'Procfile', data: 'web: ./run\n' }])));
  assert.deepEqual([one.kind, one.entry], ['pharo', 'a.image']);
  const two = await store.intake(body(await zipFrom([{ name: 'a.image', data: 'a' }, { name: 'b.image', data: 'b' }, { name: 'Procfile', data: '# main\nrelease: ./migrate\nweb:   ./run --port $PORT  \r\n' }])));
  assert.deepEqual([two.kind, two.entry], ['procfile', './run --port $PORT']);
});

test('an archive wrapping everything in one folder (GitHub zip) is unpacked from inside that folder', async (t) => {
  const store = await makeStore(t);
  const zip = await zipFrom([
    { name: 'app-main/', dir: true },
    { name: 'app-main/Procfile', data: 'web: node server.js\n' },
    { name: 'app-main/server.js', data: 'console.log(1)' },
    { name: 'app-main/lib/util.js', data: '' },
  ]);
  const r = await store.intake(body(zip));
  assert.equal(r.kind, 'procfile');
  assert.equal(r.entry, 'node server.js');
  assert.deepEqual((await readdir(r.imageDir)).sort(), ['Procfile', 'lib', 'server.js']);
  assert.equal((await stat(r.imageDir)).mode & 0o777, 0o555);
  assert.deepEqual(await readdir(store.tmpDir), []);
});

test('Finder junk beside the wrapping folder does not hide it', async (t) => {
  const store = await makeStore(t);
  const zip = await zipFrom([
    { name: 'site/Procfile', data: 'web: python3 -m http.server $PORT\n' },
    { name: 'site/index.html', data: '<h1>hi</h1>' },
    { name: '.DS_Store', data: 'finder' },
    { name: '__MACOSX/site/._index.html', data: 'fork' },
  ]);
  const r = await store.intake(body(zip));
  assert.deepEqual([r.kind, r.entry], ['procfile', 'python3 -m http.server $PORT']);
  assert.deepEqual((await readdir(r.imageDir)).sort(), ['Procfile', 'index.html']);
});

test('executable files keep their exec bit, without write bits', async (t) => {
  const store = await makeStore(t);
  const tgz = tarFrom(
    [
      { name: './', type: '5' },
      { name: './Procfile', data: 'web: bin/start\n', mode: 0o664 },
      { name: './bin/start', data: '#!/bin/sh\nexec node server.js\n', mode: 0o775 },
      { name: './server.js', data: '', mode: 0o666 },
    ],
    { gzip: true },
  );
  const r = await store.intake(body(tgz));
  assert.equal(r.entry, 'bin/start');
  assert.equal((await stat(join(r.imageDir, 'bin/start'))).mode & 0o777, 0o555);
  assert.equal((await stat(join(r.imageDir, 'Procfile'))).mode & 0o777, 0o444);
  assert.equal((await stat(join(r.imageDir, 'server.js'))).mode & 0o777, 0o444);
  const zip = await zipFrom([{ name: 'Procfile', data: 'web: ./run.sh' }, { name: 'run.sh', data: '#!/bin/sh\n', mode: 0o100755 }]);
  const z = await store.intake(body(zip));
  assert.equal((await stat(join(z.imageDir, 'run.sh'))).mode & 0o777, 0o555);
});

test('symbolic and hard links that stay inside the archive are kept', async (t) => {
  const store = await makeStore(t);
  const tar = tarFrom([
    { name: 'Procfile', data: 'web: node current/server.js\n' },
    { name: 'v1/server.js', data: 'v1' },
    { name: 'current', type: '2', linkname: 'v1' },
    { name: 'v1/copy.js', type: '1', linkname: 'v1/server.js' },
    { name: 'v1/up', type: '2', linkname: '../v1/server.js' },
  ]);
  const r = await store.intake(body(tar));
  assert.equal(await readlink(join(r.imageDir, 'current')), 'v1');
  assert.equal(await readFile(join(r.imageDir, 'current/server.js'), 'utf8'), 'v1');
  assert.equal(await readFile(join(r.imageDir, 'v1/copy.js'), 'utf8'), 'v1');
  assert.equal((await stat(join(r.imageDir, 'v1/copy.js'))).ino, (await stat(join(r.imageDir, 'v1/server.js'))).ino);
  assert.equal(await readFile(join(r.imageDir, 'v1/up'), 'utf8'), 'v1');
  const zip = await zipFrom([{ name: 'Procfile', data: 'web: x' }, { name: 'a.txt', data: 'A' }, { name: 'b.txt', data: 'a.txt', mode: 0o120777, store: true }]);
  const z = await store.intake(body(zip));
  assert.ok((await lstat(join(z.imageDir, 'b.txt'))).isSymbolicLink());
  assert.equal(await readFile(join(z.imageDir, 'b.txt'), 'utf8'), 'A');
});

test('the same archive twice is stored once; the second answer rewrites nothing', async (t) => {
  const store = await makeStore(t);
  const zip = await buildZip(example('node-app'));
  const first = await store.intake(body(zip));
  const before = await stat(first.imageDir);
  const archiveBefore = await stat(store.archive(first.digest));
  const second = await store.intake(body(zip));
  assert.equal(second.reused, true);
  assert.deepEqual({ ...second, reused: false }, first);
  const after = await stat(first.imageDir);
  assert.equal(after.ino, before.ino);
  assert.equal(after.mtimeMs, before.mtimeMs);
  assert.equal((await stat(store.archive(first.digest))).ino, archiveBefore.ino);
  assert.deepEqual((await readdir(store.root)).sort(), [first.digest, `${first.digest}.archive`, `${first.digest}.json`]);
  assert.deepEqual(await readdir(store.tmpDir), []);
});

test('concurrent intakes of the same archive all succeed and store it once', async (t) => {
  const store = await makeStore(t);
  const zip = await zipFrom([{ name: 'Procfile', data: 'web: node s.js' }, { name: 's.js', data: Buffer.alloc(200_000, 3) }]);
  const results = await Promise.all([1, 2, 3, 4].map(() => store.intake(body(zip, 4096))));
  assert.equal(new Set(results.map((r) => r.digest)).size, 1);
  assert.equal(results.filter((r) => !r.reused).length, 1);
  const d = results[0]!.digest;
  assert.deepEqual((await readdir(store.root)).sort(), [d, `${d}.archive`, `${d}.json`]);
  assert.deepEqual(await readdir(store.tmpDir), []);
  assert.equal((await readFile(join(store.dir(d), 's.js'))).length, 200_000);
});

test('progress reports the bytes received, growing to the archive size', async (t) => {
  const store = await makeStore(t);
  const zip = await zipFrom([{ name: 'Procfile', data: 'web: x' }, { name: 'blob', data: Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 31) & 0xff)) }]);
  const seen: number[] = [];
  await store.intake(body(zip, 32 * 1024), { onProgress: (n) => seen.push(n) });
  assert.ok(seen.length >= Math.floor(zip.length / (32 * 1024)), `only ${seen.length} reports`);
  assert.ok(seen.every((n, i) => i === 0 || n > seen[i - 1]!));
  assert.equal(seen.at(-1), zip.length);
});

test('remove() deletes the image, its archive and metadata', async (t) => {
  const store = await makeStore(t);
  const r = await store.intake(body(await buildZip(example('node-app'))));
  await store.remove(r.digest);
  assert.equal(store.has(r.digest), false);
  assert.deepEqual(await leftovers(store), []);
  await store.remove(r.digest); // idempotent
  const again = await store.intake(body(await buildZip(example('node-app'))));
  assert.equal(again.reused, false);
});

test('recover() clears half-written intakes and orphans, and nothing else', async (t) => {
  const store = await makeStore(t);
  const kept = await store.intake(body(await buildZip(example('node-app'))));
  await mkdir(join(store.tmpDir, 'intake-dead.d/sub'), { recursive: true });
  await writeFile(join(store.tmpDir, 'intake-dead.d/sub/f'), 'x');
  await chmod(join(store.tmpDir, 'intake-dead.d/sub'), 0o555);
  await writeFile(join(store.tmpDir, 'intake-dead.archive'), 'partial');
  await writeFile(join(store.tmpDir, 'someone-else.tmp'), 'not ours');
  const orphan = 'a'.repeat(64);
  await writeFile(join(store.root, `${orphan}.archive`), 'renamed before the crash');
  await writeFile(join(store.root, `${orphan}.json`), '{}');
  await chmod(kept.imageDir, 0o755); // crash between rename and chmod
  await store.recover();
  assert.deepEqual(await readdir(store.tmpDir), ['someone-else.tmp']);
  assert.deepEqual((await readdir(store.root)).sort(), [kept.digest, `${kept.digest}.archive`, `${kept.digest}.json`]);
  assert.equal((await stat(kept.imageDir)).mode & 0o777, 0o555);
});

test('lost metadata is rebuilt from the image directory on re-publish', async (t) => {
  const store = await makeStore(t);
  const zip = await buildTarGz(example('pharo-app'));
  const r = await store.intake(body(zip));
  await rm(join(store.root, `${r.digest}.json`));
  const again = await store.intake(body(zip));
  assert.deepEqual([again.reused, again.kind, again.entry, again.size], [true, 'pharo', 'app.image', zip.length]);
});

test('digests that are not sha256 hex are refused by dir() and unknown to has()', async (t) => {
  const store = await makeStore(t);
  assert.throws(() => store.dir('../../etc'), { code: 'INVALID_VALUE' });
  assert.equal(store.has('../x'), false);
  assert.equal(await store.info('f'.repeat(64)), null);
});
