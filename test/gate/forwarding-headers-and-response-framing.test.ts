/**
 * Issue 8 §12, as a visitor and a sloppy app would do it, judged by the bytes
 * on each side (raw sockets, no HTTP library to tidy them up):
 * - a visitor cannot pose as someone else to the app: Forwarded, X-Real-IP and
 *   X-Forwarded-* it sends never reach the app; the gate sets them itself;
 * - a response with both Content-Length and Transfer-Encoding reaches the
 *   visitor without the Content-Length (RFC 9112 §6.3) and framed by the
 *   Transfer-Encoding.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import { after, before, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { forwardingHead } from '../../src/gate/forward-heads.ts';
import { createGate, type Gate } from '../../src/gate/gate.ts';
import { RoutingTable } from '../../src/gate/routing-table.ts';
import { selfSignedCert } from '../../src/gate/tls.ts';
import { H1, H2, InMemoryBackend, rawExchange, readAll, readUntil, startRawUpstream, statusLines, type RawUpstream } from './gate.fixtures.ts';

let up: RawUpstream;
let sloppy: RawUpstream;
let gate: Gate;
let httpPort: number;
let httpsPort: number;

before(async () => {
  up = await startRawUpstream();
  sloppy = await startRawUpstream(null);
  const table = new RoutingTable();
  table.set(H1, [{ hostname: H1, weight: 1 }]);
  table.set(H2, [{ hostname: H2, weight: 1 }]);
  const backend = new InMemoryBackend();
  backend.running.set(H1, up.upstream);
  backend.running.set(H2, sloppy.upstream);
  gate = createGate({ table, backend, wakeHtmlAfterMs: 0, tls: { defaultCert: await selfSignedCert('eph.test'), sni: () => null } });
  httpPort = (await gate.listen('127.0.0.1', 0)).port;
  httpsPort = (await gate.listenTls('127.0.0.1', 0)).port;
});

after(async () => {
  await gate.close(1000);
  await up.close();
  await sloppy.close();
});

/** The header lines of the request the app received since byte `from` (one request expected). */
function forwardedHead(from: number): string[] {
  const text = up.bytes().subarray(from).toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  assert.ok(end > 0, `a whole head reached the app: ${JSON.stringify(text)}`);
  return text.slice(0, end).split('\r\n').slice(1);
}

function values(lines: string[], name: string): string[] {
  return lines.filter((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`)).map((l) => l.slice(name.length + 1).trim());
}

const SPOOF =
  'Forwarded: for=203.0.113.7;proto=https;host=evil.example\r\n' +
  'FORWARDED: for="[2001:db8::1]"\r\n' +
  'X-Real-IP: 203.0.113.7\r\n' +
  'x-real-ip: 203.0.113.8\r\n' +
  'X-Forwarded-For: 203.0.113.7\r\n' +
  'X-Forwarded-For: 10.0.0.1, 10.0.0.2\r\n' +
  'X-Forwarded-Proto: https\r\n' +
  'X-Forwarded-Host: evil.example\r\n' +
  'x-forwarded-HOST: evil2.example\r\n';

test('a visitor\'s Forwarded, X-Real-IP and X-Forwarded-* never reach the app; the gate sets its own (plain HTTP)', async () => {
  const from = up.bytes().length;
  const text = await rawExchange(httpPort, `GET /who HTTP/1.1\r\nHost: ${H1}:8080\r\n${SPOOF}X-Keep: yes\r\nConnection: close\r\n\r\n`, 30_000);
  assert.deepEqual(statusLines(text), [200], text);
  const lines = forwardedHead(from);
  const raw = lines.join('\n');
  for (const bad of ['203.0.113', '2001:db8', '10.0.0.', 'evil']) assert.ok(!raw.includes(bad), `visitor's ${bad} forwarded:\n${raw}`);
  assert.deepEqual(values(lines, 'X-Forwarded-For'), ['127.0.0.1']);
  assert.deepEqual(values(lines, 'X-Real-IP'), ['127.0.0.1']);
  assert.deepEqual(values(lines, 'X-Forwarded-Proto'), ['http']);
  assert.deepEqual(values(lines, 'X-Forwarded-Host'), [`${H1}:8080`]);
  assert.deepEqual(values(lines, 'Forwarded'), [`for=127.0.0.1;proto=http;host="${H1}:8080"`]);
  assert.deepEqual(values(lines, 'X-Keep'), ['yes'], 'other headers pass');
  assert.deepEqual(values(lines, 'Host'), [`${H1}:8080`]);
});

test('over TLS the gate says https; keep-alive requests each get exactly one set', async () => {
  const s = tlsConnect({ host: '127.0.0.1', port: httpsPort, servername: H1, rejectUnauthorized: false });
  await once(s, 'secureConnect');
  try {
    for (let i = 0; i < 2; i++) {
      const from = up.bytes().length;
      s.write(`GET /tls-${i} HTTP/1.1\r\nHost: ${H1}\r\n${SPOOF}\r\n`);
      await readUntil(s, (t) => t.endsWith('\r\n\r\nok'), 30_000);
      const lines = forwardedHead(from);
      assert.ok(!lines.join('\n').includes('evil'));
      assert.deepEqual(values(lines, 'X-Forwarded-Proto'), ['https']);
      assert.deepEqual(values(lines, 'X-Forwarded-For'), ['127.0.0.1']);
      assert.deepEqual(values(lines, 'X-Real-IP'), ['127.0.0.1']);
      assert.deepEqual(values(lines, 'X-Forwarded-Host'), [H1]);
      assert.deepEqual(values(lines, 'Forwarded'), [`for=127.0.0.1;proto=https;host="${H1}"`]);
    }
  } finally {
    s.destroy();
  }
});

test('absolute-form: the forwarding lines name the target\'s host', async () => {
  const from = up.bytes().length;
  const text = await rawExchange(httpPort, `GET http://${H1}/abs HTTP/1.1\r\nHost: other.example\r\n${SPOOF}Connection: close\r\n\r\n`, 30_000);
  assert.deepEqual(statusLines(text), [200], text);
  const lines = forwardedHead(from);
  assert.deepEqual(values(lines, 'Host'), [H1]);
  assert.deepEqual(values(lines, 'X-Forwarded-Host'), [H1]);
  assert.deepEqual(values(lines, 'Forwarded'), [`for=127.0.0.1;proto=http;host="${H1}"`]);
});

/** Sends one request to the sloppy app, which answers `response` and then does `then`; returns what the visitor got. */
async function throughSloppy(response: string, then: 'keep' | 'end', follow = false): Promise<string> {
  sloppy.reply = (s) => {
    s.write(response);
    if (then === 'end') s.end();
  };
  const c = connect({ host: '127.0.0.1', port: httpPort });
  await once(c, 'connect');
  c.write(`GET /r HTTP/1.1\r\nHost: ${H2}\r\n${follow ? '' : 'Connection: close\r\n'}\r\n`);
  if (!follow) return readAll(c, 30_000);
  try {
    const first = await readUntil(c, (t) => t.includes('\r\n0\r\n\r\n'), 30_000);
    sloppy.reply = 'HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond';
    c.write(`GET /again HTTP/1.1\r\nHost: ${H2}\r\n\r\n`);
    const second = await readUntil(c, (t) => t.endsWith('second'), 30_000);
    return first + second;
  } finally {
    c.destroy();
  }
}

function headOf(text: string): string[] {
  return text.slice(0, text.indexOf('\r\n\r\n')).split('\r\n');
}

test('a response with Content-Length and Transfer-Encoding: chunked reaches the visitor without Content-Length', async () => {
  // Content-Length: 3 would cut the chunked body short (and leave the rest to be read as the next response).
  const text = await throughSloppy('HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\ncontent-length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n', 'keep', true);
  const head = headOf(text);
  assert.deepEqual(values(head, 'Content-Length'), [], `forwarded head: ${JSON.stringify(head)}`);
  assert.deepEqual(values(head, 'Transfer-Encoding'), ['chunked']);
  assert.deepEqual(values(head, 'X-A'), ['1']);
  assert.ok(text.includes('\r\n\r\n5\r\nhello\r\n0\r\n\r\n'), JSON.stringify(text));
  assert.deepEqual(statusLines(text), [200, 200], 'the connection stays in step: the next response follows');
  assert.ok(text.endsWith('second'));
});

test('Transfer-Encoding without a final chunked and a Content-Length: the body runs to the close, Content-Length dropped', async () => {
  const body = 'x'.repeat(40);
  const text = await throughSloppy(`HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 4\r\n\r\n${body}`, 'end');
  const head = headOf(text);
  assert.deepEqual(values(head, 'Content-Length'), [], `forwarded head: ${JSON.stringify(head)}`);
  assert.deepEqual(values(head, 'Connection'), ['close']);
  assert.equal(text.slice(text.indexOf('\r\n\r\n') + 4), body, 'the whole body, not 4 bytes of it');
});

test('a response with only Content-Length keeps it', async () => {
  const text = await throughSloppy('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello', 'keep');
  assert.deepEqual(values(headOf(text), 'Content-Length'), ['5']);
  assert.ok(text.endsWith('\r\n\r\nhello'));
});

test('forwarding lines for IPv6 and IPv4-mapped peers (RFC 7239 §6: IPv6 quoted and bracketed)', () => {
  assert.equal(
    forwardingHead('::ffff:192.0.2.9', true),
    'X-Forwarded-For: 192.0.2.9\r\nX-Real-IP: 192.0.2.9\r\nX-Forwarded-Proto: https\r\nForwarded: for=192.0.2.9;proto=https;host=',
  );
  assert.equal(
    forwardingHead('2001:db8::7', false),
    'X-Forwarded-For: 2001:db8::7\r\nX-Real-IP: 2001:db8::7\r\nX-Forwarded-Proto: http\r\nForwarded: for="[2001:db8::7]";proto=http;host=',
  );
  assert.match(forwardingHead('', false), /^X-Forwarded-For: unknown\r\n[\s\S]*Forwarded: for=unknown;/);
});

/** Decided before the test runs: some machines have no IPv6 loopback. */
const ipv6Loopback = await new Promise<boolean>((resolve) => {
  const s = createServer().once('error', () => resolve(false));
  s.listen(0, '::1', () => s.close(() => resolve(true)));
});

test('a visitor over IPv6 is named as RFC 7239 asks', { skip: ipv6Loopback ? false : 'no IPv6 loopback (::1) on this machine' }, async (t) => {
  const table = new RoutingTable();
  table.set(H1, [{ hostname: H1, weight: 1 }]);
  const backend = new InMemoryBackend();
  backend.running.set(H1, up.upstream);
  const g6 = createGate({ table, backend, wakeHtmlAfterMs: 0 });
  t.after(() => g6.close(1000));
  const port = (await g6.listen('::1', 0)).port;
  const from = up.bytes().length;
  const c = connect({ host: '::1', port });
  await once(c, 'connect');
  c.write(`GET /v6 HTTP/1.1\r\nHost: ${H1}\r\nX-Forwarded-For: 203.0.113.7\r\nConnection: close\r\n\r\n`);
  assert.deepEqual(statusLines(await readAll(c, 30_000)), [200]);
  const lines = forwardedHead(from);
  assert.deepEqual(values(lines, 'X-Forwarded-For'), ['::1']);
  assert.deepEqual(values(lines, 'X-Real-IP'), ['::1']);
  assert.deepEqual(values(lines, 'Forwarded'), [`for="[::1]";proto=http;host="${H1}"`]);
});
