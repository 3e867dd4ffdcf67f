import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { SecretBox } from '../../src/services/secret-box.ts';
import { configNameProblem, sealContext } from '../../src/services/config-vars.ts';

const dir = mkdtempSync(join(tmpdir(), 'eph-secretbox-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('the key file is made at first load (0600, 64 hex digits) and read again, never replaced', async () => {
  const file = join(dir, 'first.key');
  const a = await SecretBox.load(file);
  assert.equal(statSync(file).mode & 0o777, 0o600);
  const key = readFileSync(file, 'utf8');
  assert.match(key, /^[0-9a-f]{64}\n$/);
  const sealed = a.seal('value', 'ctx');
  const b = await SecretBox.load(file);
  assert.equal(readFileSync(file, 'utf8'), key, 'a second load keeps the key');
  assert.equal(b.open(sealed, 'ctx'), 'value');
});

test('sealed values hide the clear text, differ each time, and open only with the same key and context', async () => {
  const box = await SecretBox.load(join(dir, 'ctx.key'));
  const other = await SecretBox.load(join(dir, 'other.key'));
  const ctx = sealContext('eph-00000001.eph.test', 'API_KEY');
  const s1 = box.seal('s3cret ünïcode\nline', ctx);
  const s2 = box.seal('s3cret ünïcode\nline', ctx);
  assert.notEqual(s1, s2, 'a fresh IV each time');
  assert.match(s1, /^v1:[A-Za-z0-9+/=]+$/);
  assert.ok(!Buffer.from(s1).includes('s3cret'));
  assert.equal(box.open(s1, ctx), 's3cret ünïcode\nline');
  assert.equal(box.open(box.seal('', ctx), ctx), '');
  // Moved to another instance or another name, or opened with another cloud's key: refused.
  assert.throws(() => box.open(s1, sealContext('eph-00000002.eph.test', 'API_KEY')), /does not open/);
  assert.throws(() => box.open(s1, sealContext('eph-00000001.eph.test', 'OTHER')), /does not open/);
  assert.throws(() => other.open(s1, ctx), /does not open/);
  const raw = Buffer.from(s1.slice(3), 'base64');
  raw[raw.length - 1]! ^= 1;
  assert.throws(() => box.open(`v1:${raw.toString('base64')}`, ctx), /does not open/);
  assert.throws(() => box.open('v2:abc', ctx), /malformed/);
});

test('a key file others may read, or a malformed one, stops start-up with what to do', async () => {
  const open = join(dir, 'open.key');
  writeFileSync(open, `${'ab'.repeat(32)}\n`, { mode: 0o644 });
  chmodSync(open, 0o644);
  await assert.rejects(SecretBox.load(open), { code: 'INVALID_CONFIG', message: /readable by others \(mode 644\); run chmod 600/ });
  const bad = join(dir, 'bad.key');
  writeFileSync(bad, 'not hex\n', { mode: 0o600 });
  await assert.rejects(SecretBox.load(bad), { code: 'INVALID_CONFIG', message: /expected 64 hexadecimal digits/ });
  await assert.rejects(SecretBox.load(join(dir, 'no', 'such', 'dir', 'x.key')), { code: 'INVALID_CONFIG', message: /cannot create it/ });
});

test('config var names: portable names pass; reserved and malformed ones are named in the refusal', () => {
  for (const ok of ['A', '_X', 'DATABASE_URL', 'a1_b2', 'Path', 'eph_lower', 'HOME', 'LANG', 'NODE_ENV']) assert.equal(configNameProblem(ok), null, ok);
  for (const reserved of ['PORT', 'PATH', 'EPH_HOSTNAME', 'EPH_', 'LD_PRELOAD', 'LD_AUDIT', 'GCONV_PATH', 'GLIBC_TUNABLES', 'IFS', 'BASH_ENV', 'MALLOC_CHECK_']) {
    assert.match(configNameProblem(reserved) ?? '', /is reserved/, reserved);
  }
  for (const bad of ['', '1A', 'A-B', 'A B', 'A=B', 'Ä', 'X'.repeat(129)]) assert.match(configNameProblem(bad) ?? '', /expected a letter or '_'/, bad);
});
