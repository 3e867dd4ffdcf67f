// Issue 8 item 6: the database holds every tenant's appliance passwords and
// PSK keys; it and its WAL and shared-memory files are the owner's only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqliteStore } from '../../src/store/sqlite/open.ts';

const mode = (path: string): string => (statSync(path).mode & 0o777).toString(8).padStart(4, '0');

test('a new database, its WAL and its shared-memory file are 0600 whatever the umask', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'eph-sqlite-modes-'));
  const old = process.umask(0o022);
  t.after(() => {
    process.umask(old);
    rmSync(dir, { recursive: true, force: true });
  });
  const file = join(dir, 'eph.sqlite');
  const store = await openSqliteStore(file);
  try {
    for (const f of [file, `${file}-wal`, `${file}-shm`]) assert.equal(mode(f), '0600', f);
  } finally {
    await store.close();
  }
});

test('files left world-readable by an earlier version are tightened when the store opens', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'eph-sqlite-modes-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'eph.sqlite');
  const first = await openSqliteStore(file);
  await first.close();
  // As an earlier version left them: world-readable (an empty WAL is a valid one).
  writeFileSync(`${file}-wal`, '');
  for (const f of [file, `${file}-wal`]) chmodSync(f, 0o644);
  const again = await openSqliteStore(file);
  try {
    for (const f of [file, `${file}-wal`, `${file}-shm`]) assert.equal(mode(f), '0600', f);
  } finally {
    await again.close();
  }
});
