import assert from 'node:assert/strict';
import { createServer, request, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isEphError } from '../../src/core/errors.ts';
import type { ImageStore } from '../../src/images/image-store.ts';
import { buildZip } from '../helpers/archives.ts';
import { leftovers, makeStore } from './store-fixture.ts';

/** A bare HTTP endpoint that streams the request body into the store, as the API does. */
async function serve(t: import('node:test').TestContext, store: ImageStore): Promise<number> {
  const server = createServer((req, res) => {
    store.intake(req).then(
      (r) => {
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(JSON.stringify(r));
      },
      (e: unknown) => {
        const status = isEphError(e) ? e.status : 500;
        // The rest of an oversized body is not read: close once the answer is out.
        res.writeHead(status, { 'content-type': 'application/json', connection: 'close' });
        res.end(JSON.stringify({ error: { code: isEphError(e) ? e.code : 'INTERNAL', message: (e as Error).message } }));
      },
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as AddressInfo).port;
}

/** POSTs `total` bytes (the first ones from `head`) in chunks, stopping as soon as an answer arrives. */
function post(port: number, head: Buffer, total: number): Promise<{ status: number; json: { error?: { code: string }; kind?: string } }> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/', headers: { 'content-type': 'application/zip', 'content-length': total } }, (res: IncomingMessage) => {
      answered = true;
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) as { error?: { code: string } } }));
    });
    req.on('error', (e) => {
      if (!answered) reject(e);
    });
    let sent = 0;
    const pump = (): void => {
      while (sent < total && !answered) {
        const n = Math.min(64 * 1024, total - sent);
        const chunk = sent < head.length ? head.subarray(sent, sent + n) : Buffer.alloc(n, 0x5a);
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      if (sent >= total) req.end();
    };
    pump();
  });
}

test('an archive POSTed over HTTP is taken in', async (t) => {
  const store = await makeStore(t);
  const port = await serve(t, store);
  const zip = await buildZip(fileURLToPath(new URL('../../examples/node-app', import.meta.url)));
  const r = await post(port, zip, zip.length);
  assert.equal(r.status, 201);
  assert.equal(r.json.kind, 'procfile');
});

test('an oversized upload over HTTP gets its 413 answer before the body is all sent', async (t) => {
  const store = await makeStore(t, { maxArchiveBytes: 1024 * 1024 });
  const port = await serve(t, store);
  const r = await post(port, Buffer.from('PK\x03\x04'), 64 * 1024 * 1024);
  assert.equal(r.status, 413);
  assert.equal(r.json.error?.code, 'ARCHIVE_TOO_LARGE');
  assert.deepEqual(await leftovers(store), []);
});
