import assert from 'node:assert/strict';
import { test } from 'node:test';
import { linkStaysInside, safeEntryPath } from '../../src/images/entry-path.ts';
import { sniffFormat } from '../../src/images/sniff-format.ts';
import { tarFrom, zipFrom } from '../helpers/archives.ts';

test('entry names are normalised', () => {
  assert.equal(safeEntryPath('./app/Procfile'), 'app/Procfile');
  assert.equal(safeEntryPath('a//b/./c/'), 'a/b/c');
  assert.equal(safeEntryPath('./'), '');
  assert.equal(safeEntryPath('..foo/bar..'), '..foo/bar..');
});

test('entry names that could leave the root are ARCHIVE_UNSAFE', () => {
  for (const bad of ['../x', 'a/../../x', 'a/..', '/etc/passwd', 'C:/x', 'c:x', 'a\\..\\x', 'a\0b']) {
    assert.throws(() => safeEntryPath(bad), { code: 'ARCHIVE_UNSAFE' }, bad);
  }
});

test('symbolic links are followed through each other like the kernel does', () => {
  const links = new Map([
    ['sub/up', '..'],
    ['esc', 'sub/up/..'],
    ['ok', 'sub/up/sub'],
    ['loop1', 'loop2'],
    ['loop2', 'loop1'],
    ['app/a', '../shared/x'],
  ]);
  assert.equal(linkStaysInside('sub/up', links, ''), true);
  assert.equal(linkStaysInside('esc', links, ''), false);
  assert.equal(linkStaysInside('ok', links, ''), true);
  assert.equal(linkStaysInside('loop1', links, ''), false);
  assert.equal(linkStaysInside('app/a', links, ''), true);
  // Once app/ becomes the image directory, ../shared is outside it.
  assert.equal(linkStaysInside('app/a', links, 'app'), false);
});

test('formats are told by their first bytes', async () => {
  assert.equal(sniffFormat(await zipFrom([{ name: 'a', data: 'a' }])), 'zip');
  assert.equal(sniffFormat(await zipFrom([])), 'zip');
  assert.equal(sniffFormat(tarFrom([{ name: 'a', data: 'a' }])), 'tar');
  assert.equal(sniffFormat(tarFrom([{ name: 'a', data: 'a' }], { gzip: true })), 'tar.gz');
  const v7 = tarFrom([{ name: 'a', data: 'a' }]);
  v7.fill(0, 257, 265); // no ustar magic: only the checksum can tell
  let sum = 0;
  v7.fill(0x20, 148, 156);
  for (let i = 0; i < 512; i++) sum += v7[i]!;
  v7.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  assert.equal(sniffFormat(v7), 'tar');
  assert.equal(sniffFormat(Buffer.alloc(1024)), null);
  assert.equal(sniffFormat(Buffer.from('%PDF-1.7\n')), null);
});
