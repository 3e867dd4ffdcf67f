import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { openSqliteStore } from '../../src/store/sqlite/open.ts';
import { runStoreConformance } from './store.conformance.ts';

const dir = mkdtempSync(join(tmpdir(), 'eph-sqlite-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
runStoreConformance('sqlite', () => openSqliteStore(join(dir, `s${n++}.sqlite`)));
