// A peer that does not speak TLS never reaches the service behind the endpoint.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { test } from 'node:test';
import { startPskEndpoint } from '../../src/tunnel/psk-server.ts';
import { roundTrip, startEcho, waitFor } from './fixtures.ts';

const KEY = 'correct horse battery staple';

test('plain TCP bytes (a psql startup packet, an HTTP request) are refused and never reach the target', { timeout: 20_000 }, async (t) => {
  const echo = await startEcho(t);
  const refused: string[] = [];
  const endpoint = await startPskEndpoint({
    listen: { host: '127.0.0.1', port: 0 },
    target: { host: '127.0.0.1', port: echo.port },
    identities: () => new Map([['laptop', KEY]]),
    onRefused: (reason) => refused.push(reason),
  });
  t.after(() => endpoint.close());

  const startup = Buffer.from('0000000804d2162f', 'hex'); // PostgreSQL SSLRequest
  for (const payload of [startup, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', Buffer.alloc(4096, 0x41)]) {
    const r = await roundTrip(endpoint.address.port, payload);
    // OpenSSL may answer with a TLS alert record, never with the target's echo.
    assert.ok(!r.data.includes(Buffer.from(payload)), 'the payload came back');
    assert.ok(r.data.length === 0 || r.data[0] === 0x15, `unexpected reply ${r.data.toString('hex')}`);
  }
  await waitFor('three refusals', () => refused.length === 3);
  for (const reason of refused) assert.match(reason, /^not a TLS client \(/);
  assert.equal(echo.accepted(), 0);
  assert.equal(echo.bytes(), 0);
  assert.equal(endpoint.connections(), 0);
});

test('a peer that connects and stays silent is cut off after the handshake timeout', { timeout: 20_000 }, async (t) => {
  const echo = await startEcho(t);
  const endpoint = await startPskEndpoint({
    listen: { host: '127.0.0.1', port: 0 },
    target: { host: '127.0.0.1', port: echo.port },
    identities: () => new Map([['laptop', KEY]]),
    handshakeTimeoutMs: 300,
  });
  t.after(() => endpoint.close());
  const started = Date.now();
  const s = connect(endpoint.address.port, '127.0.0.1');
  s.on('error', () => {});
  await new Promise((r) => s.once('close', r));
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 250 && elapsed < 5_000, `closed after ${elapsed} ms`);
  assert.equal(echo.accepted(), 0);
});
