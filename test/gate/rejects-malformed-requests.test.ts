/**
 * Issue 4 §9: request smuggling shapes and other malformed heads are refused
 * with 400 (431 for oversized heads) and never reach the app. Raw TCP sockets,
 * because an HTTP client library would refuse to send most of these.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { H1, rawExchange, readUntil, startApp, startGate, statusLines, type App, type TestGate } from './gate.fixtures.ts';

let app: App;
let g: TestGate;

before(async () => {
  app = await startApp();
  g = await startGate({ headersTimeoutMs: 400, bodyTimeoutMs: 400 });
  g.backend.running.set(H1, app.upstream);
});

after(async () => {
  await g.gate.close(1000);
  await app.close();
});

const H = `Host: ${H1}\r\n`;
const shapes: Array<[string, string]> = [
  ['Content-Length with Transfer-Encoding (CL.TE)', `POST / HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
  ['Transfer-Encoding with Content-Length (TE.CL)', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n`],
  ['duplicate Content-Length, same value', `POST / HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc`],
  ['duplicate Content-Length, different values', `POST / HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 5\r\n\r\nabcde`],
  ['Content-Length list', `POST / HTTP/1.1\r\n${H}Content-Length: 3, 3\r\n\r\nabc`],
  ['signed Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length: +3\r\n\r\nabc`],
  ['hex Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length: 0x3\r\n\r\nabc`],
  ['empty Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length: \r\n\r\n`],
  ['Transfer-Encoding other than chunked', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`],
  ['obfuscated Transfer-Encoding', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`],
  ['two Transfer-Encoding lines', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
  ['Transfer-Encoding in HTTP/1.0', `POST / HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`],
  ['space before the colon', `POST / HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n`],
  ['obs-fold', `GET / HTTP/1.1\r\n${H}X-Folded: a\r\n b\r\n\r\n`],
  ['obs-fold with a tab', `GET / HTTP/1.1\r\n${H}X-Folded: a\r\n\tb\r\n\r\n`],
  ['NUL in a header value', `GET / HTTP/1.1\r\n${H}X-Bad: a\x00b\r\n\r\n`],
  ['bare CR in a header value', `GET / HTTP/1.1\r\n${H}X-Bad: a\rb\r\n\r\n`],
  ['bare LF line ending', `GET / HTTP/1.1\n${H}\r\n`],
  ['invalid header name character', `GET / HTTP/1.1\r\n${H}X(Bad): 1\r\n\r\n`],
  ['header line without a colon', `GET / HTTP/1.1\r\n${H}NoColon\r\n\r\n`],
  ['missing Host in HTTP/1.1', `GET / HTTP/1.1\r\nX-A: 1\r\n\r\n`],
  ['two Host headers', `GET / HTTP/1.1\r\n${H}Host: other.example\r\n\r\n`],
  ['Host with a path', `GET / HTTP/1.1\r\nHost: ${H1}/x\r\n\r\n`],
  ['Host with userinfo', `GET / HTTP/1.1\r\nHost: user@${H1}\r\n\r\n`],
  ['Host with a bad port', `GET / HTTP/1.1\r\nHost: ${H1}:80x\r\n\r\n`],
  ['Host with an underscore label', `GET / HTTP/1.1\r\nHost: a_b.example\r\n\r\n`],
  ['empty Host', `GET / HTTP/1.1\r\nHost: \r\n\r\n`],
  ['absolute-form with userinfo', `GET http://u@${H1}/ HTTP/1.1\r\n${H}\r\n`],
  ['space in the target', `GET /a b HTTP/1.1\r\n${H}\r\n`],
  ['bad version', `GET / HTTP/1.x\r\n${H}\r\n`],
  ['lower-case version', `GET / http/1.1\r\n${H}\r\n`],
  ['invalid method characters', `G(T / HTTP/1.1\r\n${H}\r\n`],
  ['bad chunk size', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`],
  ['negative chunk size', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n`],
  ['chunk size overflow', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nabc\r\n0\r\n\r\n`],
  ['chunk size with a space', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n`],
  ['chunk data longer than its size', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n`],
  ['chunk size line ending in a bare LF', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n`],
];

for (const [name, raw] of shapes) {
  test(`rejects ${name} with 400 and closes`, async () => {
    const before = app.seen.length;
    const text = await rawExchange(g.port, raw, 3000);
    assert.deepEqual(statusLines(text), [400], text);
    assert.match(text, /Connection: close/);
    assert.ok(!text.includes('<<deadline'), 'the gate closes the connection');
    // Chunk errors are found after the head went upstream; the app must not see a whole request either way.
    // A later request's answer is the signal that the app has read what the gate sent before it.
    const fence = await rawExchange(g.port, `GET /fence HTTP/1.1\r\n${H}Connection: close\r\n\r\n`, 30_000);
    assert.deepEqual(statusLines(fence), [200], fence);
    assert.deepEqual(app.seen.slice(before).map((s) => s.url), ['/fence'], 'nothing but the fence reached the app');
  });
}

test('a request smuggled behind a rejected one is never forwarded', async () => {
  const before = app.seen.length;
  const text = await rawExchange(
    g.port,
    `POST / HTTP/1.1\r\n${H}Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n`,
  );
  assert.deepEqual(statusLines(text), [400]);
  const fence = await rawExchange(g.port, `GET /fence HTTP/1.1\r\n${H}Connection: close\r\n\r\n`, 30_000);
  assert.deepEqual(statusLines(fence), [200], fence);
  assert.deepEqual(app.seen.slice(before).map((s) => s.url), ['/fence']);
});

test('answers 431 to a head over the limit', async () => {
  const text = await rawExchange(g.port, `GET / HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
  assert.deepEqual(statusLines(text), [431]);
});

test('answers 431 to a head over the limit that is still arriving', async () => {
  const text = await rawExchange(g.port, `GET / HTTP/1.1\r\n${H}${'X-Many: aaaaaaaaaaaaaaaaaaaaaa\r\n'.repeat(1000)}`);
  assert.deepEqual(statusLines(text), [431]);
});

test('answers 505 to an unknown HTTP version', async () => {
  const text = await rawExchange(g.port, `GET / HTTP/2.0\r\n${H}\r\n`);
  assert.deepEqual(statusLines(text), [505]);
});

test('a slow client that never finishes its head gets 408 and is closed (headers timeout)', async () => {
  const s = connect({ host: '127.0.0.1', port: g.port });
  await once(s, 'connect');
  s.write(`GET / HTTP/1.1\r\n${H}X-Slow: `);
  const started = Date.now();
  const text = await readUntil(s, () => false, 5000).catch((e: Error) => e.message);
  assert.match(text, /HTTP\/1\.1 408 /);
  assert.ok(Date.now() - started < 3000);
});

test('a client that stalls in its body gets 408 and is closed (body timeout)', async () => {
  const s = connect({ host: '127.0.0.1', port: g.port });
  await once(s, 'connect');
  s.write(`POST / HTTP/1.1\r\n${H}Content-Length: 100\r\n\r\nonly a part`);
  const text = await readUntil(s, () => false, 5000).catch((e: Error) => e.message);
  assert.match(text, /HTTP\/1\.1 408 /);
});

test('a connection that sends nothing is closed after the headers timeout', async () => {
  const s = connect({ host: '127.0.0.1', port: g.port });
  await once(s, 'connect');
  const started = Date.now();
  await once(s, 'close');
  assert.ok(Date.now() - started < 3000);
});

test('ignores empty lines before a request line (RFC 9112 §2.2)', async () => {
  const text = await rawExchange(g.port, `\r\n\r\nGET /blank HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
  assert.deepEqual(statusLines(text), [200]);
  assert.match(text, /ok GET \/blank 0$/);
});
