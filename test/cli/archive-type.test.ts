import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { archiveContentType } from '../../src/cli/archive-type.ts';
import { buildTar, buildZip } from '../../examples/make-archives.ts';
import { fileURLToPath } from 'node:url';

const APP = fileURLToPath(new URL('../../examples/node-app', import.meta.url));

test('archive content type from the first bytes of real archives: zip, tar, tar.gz', async () => {
  assert.equal(archiveContentType(await buildZip(APP)), 'application/zip');
  const tar = await buildTar(APP);
  assert.equal(archiveContentType(tar), 'application/x-tar');
  assert.equal(archiveContentType(await buildTar(APP, true)), 'application/gzip');
  assert.equal(archiveContentType(gzipSync(tar)), 'application/gzip');
});

test('an empty zip is a zip; anything else is sent as octet-stream for the server to judge', () => {
  assert.equal(archiveContentType(Buffer.from('PK\x05\x06' + '\0'.repeat(18), 'latin1')), 'application/zip');
  assert.equal(archiveContentType(Buffer.from('hello, not an archive')), 'application/octet-stream');
  assert.equal(archiveContentType(Buffer.alloc(0)), 'application/octet-stream');
  assert.equal(archiveContentType(Buffer.from('PK')), 'application/octet-stream', 'too short to be a zip');
});
