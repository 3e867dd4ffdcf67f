// Real stunnel4 in client mode, configured with exactly the stunnel.conf we
// hand to users, talking to our TLS-PSK endpoint in front of an echo server.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { startPskEndpoint } from '../../src/tunnel/psk-server.ts';
import type { PskConnectionInfo } from '../../src/tunnel/psk-server.ts';
import { clientStunnelConf } from '../../src/tunnel/stunnel-conf.ts';
import { formatPskFile } from '../../src/tunnel/psk-file.ts';
import { NO_STUNNEL, freePort, listen, roundTrip, startEcho, startStunnel, tempDir, waitFor, writePskFile } from './fixtures.ts';
import type { TestContext } from 'node:test';

const ASCII_KEY = 'correct horse battery staple';
const HEX_KEY = '00112233445566778899aabbccddeeff0123456789abcdef';

interface Setup {
  acceptPort: number;
  endpointPort: number;
  refused: string[];
  connected: PskConnectionInfo[];
  echo: Awaited<ReturnType<typeof startEcho>>;
  stunnelLog: () => string;
}

/**
 * Our endpoint serving `serverIdentities` (read on each handshake), and a
 * stunnel client holding `clientPsk` as its psk.txt.
 */
async function setup(
  t: TestContext,
  serverIdentities: () => Map<string, string>,
  clientPsk: Record<string, string>,
  extraClientOptions = '',
): Promise<Setup> {
  const echo = await startEcho(t);
  const refused: string[] = [];
  const connected: PskConnectionInfo[] = [];
  const endpoint = await startPskEndpoint({
    listen: { host: '127.0.0.1', port: 0 },
    target: { host: '127.0.0.1', port: echo.port },
    identities: serverIdentities,
    onConnection: (info) => connected.push(info),
    onRefused: (reason) => refused.push(reason),
  });
  t.after(() => endpoint.close());
  const client = await stunnelClient(t, endpoint.address.port, clientPsk, extraClientOptions);
  return { ...client, endpointPort: endpoint.address.port, refused, connected, echo };
}

/** A stunnel client, with the generated stunnel.conf, in front of our endpoint. */
async function stunnelClient(
  t: TestContext,
  endpointPort: number,
  psk: Record<string, string>,
  extraOptions = '',
): Promise<{ acceptPort: number; stunnelLog: () => string }> {
  const dir = tempDir(t);
  writePskFile(dir, formatPskFile(psk));
  const acceptPort = await freePort();
  const conf =
    clientStunnelConf({ service: 'mydb', accept: `127.0.0.1:${acceptPort}`, connect: `127.0.0.1:${endpointPort}` }) +
    extraOptions;
  const stunnel = await startStunnel(t, dir, conf);
  return { acceptPort, stunnelLog: stunnel.log };
}

test('stunnel4 client with the generated stunnel.conf and an ASCII key reaches the target through our endpoint', { skip: NO_STUNNEL, timeout: 30_000 }, async (t) => {
  const s = await setup(t, () => new Map([['laptop', ASCII_KEY]]), { laptop: ASCII_KEY });
  const r = await roundTrip(s.acceptPort, 'ping through stunnel');
  assert.equal(r.data.toString(), 'ping through stunnel', s.stunnelLog());
  assert.deepEqual(s.connected.map((c) => c.identity), ['laptop']);
  assert.equal(s.connected[0]?.protocol, 'TLSv1.3');
});

test('stunnel4 client with a hex key interoperates (the key is read as binary on both sides)', { skip: NO_STUNNEL, timeout: 30_000 }, async (t) => {
  const s = await setup(t, () => new Map([['ci', HEX_KEY]]), { ci: HEX_KEY });
  const r = await roundTrip(s.acceptPort, 'hex key works');
  assert.equal(r.data.toString(), 'hex key works', s.stunnelLog());
});

test('stunnel4 client limited to TLS 1.2 negotiates a PSK suite with our endpoint', { skip: NO_STUNNEL, timeout: 30_000 }, async (t) => {
  const s = await setup(t, () => new Map([['old', HEX_KEY]]), { old: HEX_KEY }, 'sslVersionMax = TLSv1.2\n');
  const r = await roundTrip(s.acceptPort, 'tls 1.2');
  assert.equal(r.data.toString(), 'tls 1.2', s.stunnelLog());
  assert.equal(s.connected[0]?.protocol, 'TLSv1.2');
  assert.match(s.connected[0]?.cipher ?? '', /PSK/);
});

test('stunnel4 client with a wrong key is refused and no byte reaches the target', { skip: NO_STUNNEL, timeout: 30_000 }, async (t) => {
  const s = await setup(t, () => new Map([['laptop', ASCII_KEY]]), { laptop: 'not the right key at all' });
  const r = await roundTrip(s.acceptPort, 'should not arrive');
  assert.equal(r.data.length, 0);
  assert.equal(s.echo.accepted(), 0);
  await waitFor('the refusal to be reported', () => s.refused.length > 0);
  assert.match(s.refused[0]!, /^wrong key \(/);
  assert.equal(s.connected.length, 0);
});

test('stunnel4 client with an unknown identity is refused', { skip: NO_STUNNEL, timeout: 30_000 }, async (t) => {
  const s = await setup(t, () => new Map([['laptop', ASCII_KEY]]), { stranger: ASCII_KEY });
  const r = await roundTrip(s.acceptPort, 'should not arrive');
  assert.equal(r.data.length, 0);
  assert.equal(s.echo.accepted(), 0);
  await waitFor('the refusal to be reported', () => s.refused.length > 0);
  assert.match(s.refused[0]!, /^unknown identity/);
});

for (const [version, extra] of [['TLS 1.3', ''], ['TLS 1.2', 'sslVersionMax = TLSv1.2\n']] as const) {
  test(`after rotation the old identity is refused on the next connection, the new one works (${version}, no session resumption)`, { skip: NO_STUNNEL, timeout: 30_000 }, async (t) => {
    let identities = new Map([['laptop', ASCII_KEY]]);
    const s = await setup(t, () => identities, { laptop: ASCII_KEY }, extra);
    assert.equal((await roundTrip(s.acceptPort, 'before')).data.toString(), 'before', s.stunnelLog());

    // stunnel keeps its session for resumption: the endpoint must not honour it.
    identities = new Map([['laptop-2026', HEX_KEY]]);
    const after = await roundTrip(s.acceptPort, 'after');
    assert.equal(after.data.length, 0, 'the revoked identity still got through');
    assert.equal(s.echo.accepted(), 1);

    const renewed = await stunnelClient(t, s.endpointPort, { 'laptop-2026': HEX_KEY }, extra);
    assert.equal((await roundTrip(renewed.acceptPort, 'renewed')).data.toString(), 'renewed');
    assert.deepEqual(s.connected.map((c) => c.identity), ['laptop', 'laptop-2026']);
  });
}

test('a reply sent only after the stunnel client shuts down writing still arrives (half-close)', { skip: NO_STUNNEL, timeout: 30_000 }, async (t) => {
  const target = createServer({ allowHalfOpen: true }, (s) => {
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString()));
    s.on('end', () => s.end(`late reply to ${got}`));
  });
  const port = await listen(target);
  t.after(() => new Promise<void>((r) => target.close(() => r())));
  const endpoint = await startPskEndpoint({
    listen: { host: '127.0.0.1', port: 0 },
    target: { host: '127.0.0.1', port },
    identities: () => new Map([['laptop', ASCII_KEY]]),
  });
  t.after(() => endpoint.close());
  const client = await stunnelClient(t, endpoint.address.port, { laptop: ASCII_KEY });
  const r = await roundTrip(client.acceptPort, 'the request');
  assert.equal(r.data.toString(), 'late reply to the request', client.stunnelLog());
});
