import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestCloud, type TestCloud } from '../helpers/cloud.ts';
import { lyingZipBomb, zeroTarGzBomb } from './archive-bombs.ts';

/**
 * Issue 8 item 10, as an attacker sends them: a 1.1 MB zip whose entry
 * declares 100 bytes but inflates to 1 GiB, and a 1.1 MB tar.gz of a 1 GiB
 * file of zeros, published through both APIs against a cloud whose unpack
 * limit is 256 MiB. Each is refused with 413 naming the limit, and the cloud
 * stops early: the bytes this process wrote while the publish ran (the
 * kernel's count, /proc/self/io `wchar`: files, sockets, everything) stay far
 * below the limit, where refusing only at the limit would write 256 MiB.
 */
const IO = '/proc/self/io';
const noProcIo = existsSync(IO) ? false : 'no /proc/self/io (kernel built without CONFIG_TASK_IO_ACCOUNTING)';
const UNPACK_LIMIT = 256 * 2 ** 20;
/** Upload (sent and received, ~1 MB each) plus the archive file, logs and the store: well under this. */
const WRITE_ALLOWANCE = 24 * 2 ** 20;

let cloud: TestCloud;
before(async () => {
  cloud = await startTestCloud({}, { env: { EPH_MAX_UNPACKED: String(UNPACK_LIMIT) } });
});
after(() => cloud?.close());

function bytesWritten(): number {
  const m = /^wchar:\s*(\d+)$/m.exec(readFileSync(IO, 'utf8'));
  assert.ok(m, `${IO} has no wchar line`);
  return Number(m[1]);
}

/** Nothing of a refused publish is left: no image, archive or metadata, no scratch file. */
function assertNothingStored(): void {
  assert.deepEqual(readdirSync(join(cloud.dataDir, 'images')), [], 'no image, archive or metadata');
  assert.deepEqual(readdirSync(join(cloud.dataDir, 'tmp')).filter((n) => n.startsWith('intake-')), [], 'no scratch left in tmp');
}

type ErrorBody = { error: { code: string; message: string } };

const cases = [
  { label: 'a zip whose entry declares 100 bytes and inflates to 1 GiB', build: () => lyingZipBomb(1024, 100), type: 'application/zip', message: /bomb\.bin.*inflates past the 100 bytes its header declares.*268435456/ },
  { label: 'a tar.gz of a 1 GiB file of zeros', build: () => zeroTarGzBomb(1024), type: 'application/gzip', message: /more than 268435456 bytes.*zeros\.bin.*1073741824/ },
];

for (const c of cases) {
  for (const api of ['compat', 'v1'] as const) {
    test(`${c.label} (${api} API): 413 naming the limit, refused before the limit is written, nothing stored`, { skip: noProcIo }, async (t) => {
      const bomb = c.build();
      assert.ok(bomb.length < 1.2e6, `the bomb is small (${bomb.length} bytes)`);
      const path = api === 'compat' ? cloud.compatBase() : '/v1/instances';
      const before = bytesWritten();
      const r = await cloud.api('POST', path, { body: bomb, headers: { 'content-type': c.type, 'x-name': 'bomb' } });
      const written = bytesWritten() - before;
      t.diagnostic(`${written} bytes written while the ${bomb.length}-byte bomb was refused`);
      assert.equal(r.status, 413, r.text);
      assert.ok(written < WRITE_ALLOWANCE, `${written} bytes were written during the refused publish (limit ${UNPACK_LIMIT})`);
      const err = (r.json as ErrorBody).error;
      assert.equal(err.code, 'ARCHIVE_TOO_LARGE');
      assert.match(err.message, c.message);
      assertNothingStored();
      const list = await cloud.api('GET', '/v1/instances');
      assert.deepEqual((list.json as { instances: unknown[] }).instances, []);
    });
  }
}
