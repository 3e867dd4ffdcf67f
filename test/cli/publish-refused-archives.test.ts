import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { startCloudFixture } from './cloud.fixtures.ts';
import { eph } from './run-eph.ts';

test('publish refusals: over the limit, not an archive, truncated, no such file; one line, exit 1, nothing stored', async (t) => {
  const cleanups: (() => Promise<void>)[] = [];
  t.after(async () => {
    for (const fn of cleanups.reverse()) await fn();
  });
  const fx = await startCloudFixture((fn) => cleanups.push(fn), { maxArchive: '1MB' });
  const big = join(fx.dir, 'big.zip');
  await writeFile(big, Buffer.concat([Buffer.from('PK\x03\x04'), randomBytes(2_000_000)]));
  const junk = join(fx.dir, 'notes.zip');
  await writeFile(junk, 'hello, this is not a zip');
  const truncated = join(fx.dir, 'app.tgz');
  await writeFile(truncated, Buffer.from([0x1f, 0x8b, 8, 0, 0, 0]));

  const [overLimit, notArchive, cut, missing] = await Promise.all([
    eph(['publish', big, '--progress'], { env: fx.env }),
    eph(['publish', junk], { env: fx.env }),
    eph(['publish', truncated, '--json'], { env: fx.env }),
    eph(['publish', join(fx.dir, 'missing.zip')], { env: fx.env }),
  ]);
  assert.equal(overLimit.code, 1);
  // Progress lines were asked for; the reason is still the one last line.
  assert.match(overLimit.stderr, /\neph: archive of 2000004 bytes is over the limit of 1000000 bytes\n$/);
  assert.doesNotMatch(overLimit.stderr, /\n\n/, 'no blank line after the progress bar');
  for (const [r, re] of [
    [notArchive, /^eph: not a zip, tar or tar\.gz archive[^\n]*\n$/],
    [cut, /^eph: [^\n]*(truncated|corrupt)[^\n]*\n$/],
    [missing, /^eph: \S+missing\.zip: no such file\n$/],
  ] as const) {
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, re);
  }
  assert.deepEqual(await fx.cloud.instances.list(fx.user), [], 'nothing was stored');
});
