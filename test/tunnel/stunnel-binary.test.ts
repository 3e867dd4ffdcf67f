import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { findStunnel } from '../../src/tunnel/stunnel-binary.ts';
import { tempDir } from './fixtures.ts';

test('findStunnel prefers stunnel4, falls back to stunnel, honours EPH_STUNNEL, null when absent', (t) => {
  const a = tempDir(t);
  const b = tempDir(t);
  const exe = (dir: string, name: string): string => {
    const p = join(dir, name);
    writeFileSync(p, '#!/bin/sh\n');
    chmodSync(p, 0o755);
    return p;
  };
  const plain = exe(a, 'stunnel');
  assert.equal(findStunnel({ PATH: a }), plain);
  const debian = exe(b, 'stunnel4');
  assert.equal(findStunnel({ PATH: `${b}:${a}` }), debian);
  writeFileSync(join(b, 'not-executable'), '');
  assert.equal(findStunnel({ PATH: `${b}:${a}`, EPH_STUNNEL: plain }), plain);
  assert.equal(findStunnel({ PATH: a, EPH_STUNNEL: join(b, 'not-executable') }), null);
  assert.equal(findStunnel({ PATH: join(a, 'missing') }), null);
  assert.equal(findStunnel({}), null);
});
