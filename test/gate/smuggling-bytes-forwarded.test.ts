/**
 * Issue 17 §1 (and issue 4 §9): the smuggling defence judged by the bytes the
 * gate forwards. The app behind the gate is a raw TCP server that records
 * every byte it receives, so that nothing between the gate and the assertion
 * (a Node app's own strict parser, say) can refuse a shape for the gate. A
 * lenient app would read these shapes differently from the gate; the gate
 * must answer 400, close, and send the app nothing.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { H1, rawExchange, startGate, startRawUpstream, statusLines, type RawUpstream, type TestGate } from './gate.fixtures.ts';

let up: RawUpstream;
let g: TestGate;

before(async () => {
  up = await startRawUpstream();
  g = await startGate();
  g.backend.running.set(H1, up.upstream);
});

after(async () => {
  await g.gate.close(1000);
  await up.close();
});

const H = `Host: ${H1}\r\n`;
/** A request hidden in a body, for an app that frames the body differently from the gate. */
const INNER = `GET /inner-smuggled HTTP/1.1\r\n${H}\r\n`;
const CHUNKED_BODY = `0\r\n\r\n${INNER}`;

/** Shapes rejected from the head alone: nothing at all may reach the app. */
const headShapes: Array<[string, string]> = [
  ['Content-Length then Transfer-Encoding (CL.TE)', `POST /s HTTP/1.1\r\n${H}Content-Length: ${CHUNKED_BODY.length}\r\nTransfer-Encoding: chunked\r\n\r\n${CHUNKED_BODY}`],
  ['Transfer-Encoding then Content-Length (TE.CL)', `POST /s HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n${CHUNKED_BODY}`],
  ['CL with Transfer-Encoding: " chunked" (extra space)', `POST /s HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding:  chunked\r\n\r\n${CHUNKED_BODY}`],
  ['CL with Transfer-Encoding: "\\tchunked"', `POST /s HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding:\tchunked\r\n\r\n${CHUNKED_BODY}`],
  ['CL with Transfer-Encoding: "CHUNKED"', `POST /s HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: CHUNKED\r\n\r\n${CHUNKED_BODY}`],
  ['CL with Content-Length: 0 and chunked', `POST /s HTTP/1.1\r\n${H}Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n${CHUNKED_BODY}`],
  ['duplicate Content-Length, same value', `POST /s HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nabcde${INNER}`],
  ['conflicting Content-Length', `POST /s HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: ${5 + INNER.length}\r\n\r\nabcde${INNER}`],
  ['conflicting Content-Length, other case', `POST /s HTTP/1.1\r\n${H}content-length: 5\r\nCONTENT-LENGTH: ${5 + INNER.length}\r\n\r\nabcde${INNER}`],
  ['Content-Length list', `POST /s HTTP/1.1\r\n${H}Content-Length: 5, ${5 + INNER.length}\r\n\r\nabcde${INNER}`],
  ['signed Content-Length', `POST /s HTTP/1.1\r\n${H}Content-Length: +5\r\n\r\nabcde${INNER}`],
  ['Transfer-Encoding: chunked, identity', `POST /s HTTP/1.1\r\n${H}Transfer-Encoding: chunked, identity\r\n\r\n${CHUNKED_BODY}`],
  ['Transfer-Encoding: identity, chunked', `POST /s HTTP/1.1\r\n${H}Transfer-Encoding: identity, chunked\r\n\r\n${CHUNKED_BODY}`],
  ['Transfer-Encoding: xchunked', `POST /s HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n${CHUNKED_BODY}`],
  ['Transfer-Encoding: chunkedx', `POST /s HTTP/1.1\r\n${H}Transfer-Encoding: chunkedx\r\n\r\n${CHUNKED_BODY}`],
  ['Transfer-Encoding: identity', `POST /s HTTP/1.1\r\n${H}Transfer-Encoding: identity\r\n\r\n${CHUNKED_BODY}`],
  ['Transfer-Encoding with a vertical tab', `POST /s HTTP/1.1\r\n${H}Transfer-Encoding: \x0bchunked\r\n\r\n${CHUNKED_BODY}`],
  ['two Transfer-Encoding lines', `POST /s HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n${CHUNKED_BODY}`],
  ['Transfer-Encoding with a space before the colon', `POST /s HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n${CHUNKED_BODY}`],
  ['Transfer-Encoding folded onto the line before', `POST /s HTTP/1.1\r\n${H}Content-Length: 5\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n${CHUNKED_BODY}`],
  ['Transfer-Encoding in HTTP/1.0', `POST /s HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n${CHUNKED_BODY}`],
  ['Transfer-Encoding line ending in a bare LF', `POST /s HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\n\r\n${CHUNKED_BODY}`],
];

/**
 * Sends a request on a fresh connection after `raw` was refused and waits for
 * its answer: once it is back, the app has read everything the gate sent it
 * before (the fence went out later, and the app answered it).
 */
async function fence(n: number): Promise<void> {
  const text = await rawExchange(g.port, `GET /fence-${n} HTTP/1.1\r\n${H}Connection: close\r\n\r\n`, 30_000);
  assert.deepEqual(statusLines(text), [200], text);
}

/** Request lines the app received since byte `from`. */
function requestLinesSince(from: number): string[] {
  const text = up.bytes().subarray(from).toString('latin1');
  return [...text.matchAll(/^[A-Z]+ \S+ HTTP\/1\.\d$/gm)].map((m) => m[0]);
}

test('control: a well-formed request does reach the raw app', async () => {
  const from = up.bytes().length;
  const text = await rawExchange(g.port, `POST /control HTTP/1.1\r\n${H}Content-Length: 5\r\nConnection: close\r\n\r\nabcde`, 30_000);
  assert.deepEqual(statusLines(text), [200], text);
  const got = up.bytes().subarray(from).toString('latin1');
  assert.match(got, /^POST \/control HTTP\/1\.1\r\n/);
  assert.ok(got.endsWith('\r\n\r\nabcde'), got);
});

let n = 0;
for (const [name, raw] of headShapes) {
  test(`${name}: 400, closed, and not one byte forwarded`, async () => {
    const from = up.bytes().length;
    const conns = up.connections();
    // The answer and the close are the signal (30 s is only a backstop).
    const text = await rawExchange(g.port, raw, 30_000);
    assert.deepEqual(statusLines(text), [400], text);
    assert.match(text, /\r\nConnection: close\r\n/);
    assert.ok(!text.includes('<<deadline'), 'the gate closed the connection');
    const id = n++;
    await fence(id);
    assert.deepEqual(requestLinesSince(from), [`GET /fence-${id} HTTP/1.1`], 'only the fence reached the app');
    assert.ok(!up.bytes().subarray(from).includes('POST /s'), 'no byte of the refused request');
    assert.ok(up.connections() - conns <= 1, 'no connection was opened for the refused request');
  });
}

/** Bad chunked framing is only seen after the head went out: the app may see the head, never what follows the bad chunk. */
const bodyShapes: Array<[string, string]> = [
  ['bad chunk size', `POST /b HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\n${INNER}`],
  ['chunk size with a sign', `POST /b HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n+5\r\nabcde\r\n0\r\n\r\n${INNER}`],
  ['chunk size overflow', `POST /b HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nabc\r\n0\r\n\r\n${INNER}`],
  ['chunk longer than its size', `POST /b HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc0\r\n\r\n${INNER}`],
  ['chunk size line ending in a bare LF', `POST /b HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n${INNER}`],
];

for (const [name, raw] of bodyShapes) {
  test(`${name}: 400, closed, and the request behind it never forwarded`, async () => {
    const from = up.bytes().length;
    const text = await rawExchange(g.port, raw, 30_000);
    assert.deepEqual(statusLines(text), [400], text);
    assert.ok(!text.includes('<<deadline'), 'the gate closed the connection');
    const id = n++;
    await fence(id);
    const lines = requestLinesSince(from);
    assert.ok(!lines.includes('GET /inner-smuggled HTTP/1.1'), `smuggled request forwarded: ${JSON.stringify(lines)}`);
    assert.ok(!up.bytes().subarray(from).includes('inner-smuggled'), 'no byte behind the bad chunk');
  });
}

test('a request pipelined behind a refused one is never forwarded', async () => {
  const from = up.bytes().length;
  const text = await rawExchange(
    g.port,
    `POST /s HTTP/1.1\r\n${H}Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${INNER}GET /pipelined HTTP/1.1\r\n${H}\r\n`,
    30_000,
  );
  assert.deepEqual(statusLines(text), [400], text);
  const id = n++;
  await fence(id);
  assert.deepEqual(requestLinesSince(from), [`GET /fence-${id} HTTP/1.1`]);
});
