import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { ApplianceRecord } from '../../src/core/types.ts';
import { StaticDriver } from '../../src/appliances/static.ts';
import { tarFrom } from '../helpers/archives.ts';
import { zeroTarGzBomb } from '../e2e/archive-bombs.ts';

/**
 * The static driver's restore on its own: a tar.gz declaring a 256 MiB file
 * against a 16 MiB restore limit is refused before the file is written (the
 * kernel's count of bytes this process wrote stays small) and the site keeps
 * its files; links are refused; a plain backup still restores.
 */
const IO = '/proc/self/io';
const noProcIo = existsSync(IO) ? false : 'no /proc/self/io (kernel built without CONFIG_TASK_IO_ACCOUNTING)';
const LIMIT = 16 * 2 ** 20;
const rec = { name: 'site', kind: 'static' } as ApplianceRecord;
const driver = new StaticDriver({ maxRestoreUnpackedBytes: LIMIT });
let dir: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), `eph-static-restore-${process.pid}-`));
  mkdirSync(join(dir, 'files'));
  writeFileSync(join(dir, 'files', 'index.html'), 'before\n');
});
after(() => rmSync(dir, { recursive: true, force: true }));

const wchar = (): number => Number(/^wchar:\s*(\d+)$/m.exec(readFileSync(IO, 'utf8'))?.[1]);
const leftovers = (): string[] => readdirSync(dir).filter((n) => n !== 'files');

test('a restore whose files add up past the limit is 413 before a byte of them is written; the site is unchanged', { skip: noProcIo }, async () => {
  const bomb = zeroTarGzBomb(256);
  const start = wchar();
  await assert.rejects(driver.restore(rec, dir, Readable.from([bomb])), (e: Error & { code?: string; status?: number }) => {
    assert.equal(e.code, 'ARCHIVE_TOO_LARGE');
    assert.equal(e.status, 413);
    assert.match(e.message, new RegExp(`more than the limit of ${LIMIT} bytes \\(passed at 'zeros\\.bin'\\)`));
    return true;
  });
  const written = wchar() - start;
  assert.ok(written < 4 * 2 ** 20, `${written} bytes written during the refused restore`);
  assert.equal(readFileSync(join(dir, 'files', 'index.html'), 'utf8'), 'before\n');
  assert.deepEqual(leftovers(), []);
});

test('a restore holding a symbolic link is ARCHIVE_UNSAFE and the site is unchanged', async () => {
  const tgz = tarFrom([{ name: 'index.html', data: 'evil\n' }, { name: 'passwd', type: '2', linkname: '/etc/passwd' }], { gzip: true });
  await assert.rejects(driver.restore(rec, dir, Readable.from([tgz])), /ARCHIVE_UNSAFE|'passwd' is not a plain file or directory/);
  assert.equal(readFileSync(join(dir, 'files', 'index.html'), 'utf8'), 'before\n');
  assert.deepEqual(leftovers(), []);
});

test('a plain backup restores, modes cut to 0644/0755', async () => {
  const tgz = tarFrom([{ name: 'docs/', type: '5', mode: 0o3777 }, { name: 'docs/a.txt', data: 'a\n', mode: 0o4666 }, { name: 'run.sh', data: '#!/bin/sh\n', mode: 0o2775 }], { gzip: true });
  await driver.restore(rec, dir, Readable.from([tgz]));
  const files = join(dir, 'files');
  assert.deepEqual(readdirSync(files).sort(), ['docs', 'run.sh']);
  assert.equal(lstatSync(join(files, 'docs')).mode & 0o7777, 0o755);
  assert.equal(lstatSync(join(files, 'docs', 'a.txt')).mode & 0o7777, 0o644);
  assert.equal(lstatSync(join(files, 'run.sh')).mode & 0o7777, 0o755);
  assert.deepEqual(leftovers(), []);
});
