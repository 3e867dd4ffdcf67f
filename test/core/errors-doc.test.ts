import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERROR_CATALOGUE } from '../../src/core/errors.ts';

test('docs/errors.md lists every error code with its status, and nothing else', () => {
  const doc = readFileSync('docs/errors.md', 'utf8');
  const rows = new Map<string, number>();
  for (const m of doc.matchAll(/^\| ([A-Z_]+) \| (\d{3}) \|/gm)) rows.set(m[1]!, Number(m[2]));
  const code = new Map(Object.entries(ERROR_CATALOGUE).map(([k, v]) => [k, v.status]));
  assert.deepEqual([...rows.keys()].sort(), [...code.keys()].sort());
  for (const [k, status] of code) assert.equal(rows.get(k), status, `status of ${k}`);
});
