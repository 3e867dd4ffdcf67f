// Our client tunnel (what `eph tunnel` runs) talking to a real stunnel4
// server in front of an echo server: the other direction of issue 5 §6.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { startPskClient } from '../../src/tunnel/psk-client.ts';
import type { PskClientOptions } from '../../src/tunnel/psk-client.ts';
import { choosePskIdentity, formatPskFile, parsePskFile } from '../../src/tunnel/psk-file.ts';
import { NO_STUNNEL, freePort, roundTrip, startEcho, startStunnel, tempDir, waitFor, writePskFile } from './fixtures.ts';

const ASCII_KEY = 'correct horse battery staple';
const HEX_KEY = '00112233445566778899aabbccddeeff0123456789abcdef';

/** stunnel4 in server mode holding `serverPsk`, and our client tunnel in front of it. */
async function setup(
  t: TestContext,
  serverPsk: Record<string, string>,
  client: Pick<PskClientOptions, 'identity' | 'key' | 'maxVersion'>,
): Promise<{ localPort: number; echo: Awaited<ReturnType<typeof startEcho>>; errors: Error[]; stunnelLog: () => string }> {
  const dir = tempDir(t);
  const echo = await startEcho(t);
  writePskFile(dir, formatPskFile(serverPsk));
  const port = await freePort();
  // `ciphers = PSK` gives TLS 1.2 clients a suite that needs no certificate.
  const stunnel = await startStunnel(
    t,
    dir,
    `[appliance]\naccept = 127.0.0.1:${port}\nconnect = 127.0.0.1:${echo.port}\nPSKsecrets = psk.txt\nciphers = PSK\n`,
  );
  const errors: Error[] = [];
  const tunnel = await startPskClient({
    local: { host: '127.0.0.1', port: 0 },
    remote: { host: '127.0.0.1', port },
    onError: (e) => errors.push(e),
    ...client,
  });
  t.after(() => tunnel.close());
  return { localPort: tunnel.address.port, echo, errors, stunnelLog: stunnel.log };
}

test('our client tunnel with an ASCII key reaches the target through a stunnel4 server', { skip: NO_STUNNEL, timeout: 30_000 }, async (t) => {
  const s = await setup(t, { laptop: ASCII_KEY }, { identity: 'laptop', key: ASCII_KEY });
  const r = await roundTrip(s.localPort, 'hello stunnel server');
  assert.equal(r.data.toString(), 'hello stunnel server', s.stunnelLog());
  assert.match(s.stunnelLog(), /Service \[appliance\] accepted connection/);
});

test('our client tunnel with a hex key from psk.txt (first identity) interoperates', { skip: NO_STUNNEL, timeout: 30_000 }, async (t) => {
  const file = `ci:${HEX_KEY}\nother:${ASCII_KEY}\n`;
  const s = await setup(t, { ci: HEX_KEY }, choosePskIdentity(parsePskFile(file)));
  const r = await roundTrip(s.localPort, 'hex both ways');
  assert.equal(r.data.toString(), 'hex both ways', s.stunnelLog());
});

test('our client tunnel limited to TLS 1.2 interoperates with a stunnel4 server', { skip: NO_STUNNEL, timeout: 30_000 }, async (t) => {
  const s = await setup(t, { old: HEX_KEY }, { identity: 'old', key: HEX_KEY, maxVersion: 'TLSv1.2' });
  const r = await roundTrip(s.localPort, 'tls 1.2');
  assert.equal(r.data.toString(), 'tls 1.2', s.stunnelLog());
});

test('a stunnel4 server refuses our client with a wrong key; the local connection is closed empty', { skip: NO_STUNNEL, timeout: 30_000 }, async (t) => {
  const s = await setup(t, { laptop: ASCII_KEY }, { identity: 'laptop', key: 'this is not the key at all' });
  const r = await roundTrip(s.localPort, 'should not arrive');
  assert.equal(r.data.length, 0);
  assert.equal(s.echo.accepted(), 0);
  await waitFor('the client to report the refusal', () => s.errors.length > 0);
  assert.match(s.errors[0]!.message, /^TLS-PSK handshake with 127\.0\.0\.1:\d+ as "laptop" failed: wrong key/);
});

test('a stunnel4 server refuses our client with an unknown identity', { skip: NO_STUNNEL, timeout: 30_000 }, async (t) => {
  const s = await setup(t, { laptop: ASCII_KEY }, { identity: 'stranger', key: ASCII_KEY });
  const r = await roundTrip(s.localPort, 'should not arrive');
  assert.equal(r.data.length, 0);
  assert.equal(s.echo.accepted(), 0);
  await waitFor('the client to report the refusal', () => s.errors.length > 0);
  assert.match(s.errors[0]!.message, /as "stranger" failed: unknown identity/);
});
