// Our client tunnel → our endpoint → a TCP service: integrity, backpressure,
// half-close, failures on either side, revocation of live connections.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer } from 'node:net';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { startPskClient } from '../../src/tunnel/psk-client.ts';
import { startPskEndpoint } from '../../src/tunnel/psk-server.ts';
import type { PskEndpoint } from '../../src/tunnel/psk-server.ts';
import { freePort, listen, roundTrip, startEcho, waitFor } from './fixtures.ts';

const KEY = '00112233445566778899aabbccddeeff';

async function tunnelTo(
  t: TestContext,
  targetPort: number,
  identities: () => Map<string, string> = () => new Map([['laptop', KEY]]),
  client: { identity: string; key: string } = { identity: 'laptop', key: KEY },
): Promise<{ port: number; endpoint: PskEndpoint }> {
  const endpoint = await startPskEndpoint({
    listen: { host: '127.0.0.1', port: 0 },
    target: { host: '127.0.0.1', port: targetPort },
    identities,
  });
  t.after(() => endpoint.close());
  const tunnel = await startPskClient({ local: { host: '127.0.0.1', port: 0 }, remote: endpoint.address, ...client });
  t.after(() => tunnel.close());
  return { port: tunnel.address.port, endpoint };
}

/** A TCP server whose connection handler the test supplies; sockets destroyed at the end. */
async function service(t: TestContext, onSocket: (s: Socket) => void): Promise<number> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('error', () => s.destroy());
    onSocket(s);
  });
  const port = await listen(server);
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return port;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

test('16 MB of random bytes come back intact through client tunnel and endpoint', { timeout: 30_000 }, async (t) => {
  const echo = await startEcho(t);
  const { port } = await tunnelTo(t, echo.port);
  const payload = randomBytes(16 * 1024 * 1024);
  const r = await roundTrip(port, payload, 20_000);
  assert.equal(r.data.length, payload.length);
  assert.equal(sha(r.data), sha(payload));
  assert.equal(echo.bytes(), payload.length);
});

test('a reply sent only after the client shuts down writing arrives (half-close crosses the tunnel)', { timeout: 20_000 }, async (t) => {
  const target = await service(t, (s) => {
    let got = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (got += d));
    s.on('end', () => s.end(`received ${got.length} bytes: ${got.toUpperCase()}`));
  });
  const { port } = await tunnelTo(t, target);
  const r = await roundTrip(port, 'request body');
  assert.equal(r.data.toString(), 'received 12 bytes: REQUEST BODY');
  assert.equal(r.error, null);
});

test('a target that speaks first and closes delivers its bytes and the end of stream', { timeout: 20_000 }, async (t) => {
  const target = await service(t, (s) => s.end('220 hello then bye\r\n'));
  const { port } = await tunnelTo(t, target);
  const s = connect(port, '127.0.0.1');
  let got = '';
  s.setEncoding('utf8');
  s.on('data', (d: string) => (got += d));
  await new Promise((r) => s.once('end', r));
  s.destroy();
  assert.equal(got, '220 hello then bye\r\n');
});

test('a slow target holds the sender back instead of the tunnel buffering everything', { timeout: 30_000 }, async (t) => {
  const TOTAL = 64 * 1024 * 1024;
  let targetSocket: Socket | null = null;
  let received = 0;
  const hash = createHash('sha256');
  const target = await service(t, (s) => {
    targetSocket = s;
    s.pause(); // reads nothing until the test says so
    s.on('data', (d: Buffer) => {
      received += d.length;
      hash.update(d);
    });
  });
  const { port } = await tunnelTo(t, target);
  const chunk = randomBytes(256 * 1024);
  const sent = createHash('sha256');
  const s = connect(port, '127.0.0.1');
  t.after(() => s.destroy());
  let accepted = 0; // bytes whose write callback fired: handed to the kernel
  let lastProgress = Date.now();
  let queued = 0;
  const pump = (): void => {
    while (queued < TOTAL) {
      queued += chunk.length;
      sent.update(chunk);
      const more = s.write(chunk, () => {
        accepted += chunk.length;
        lastProgress = Date.now();
      });
      if (!more) {
        s.once('drain', pump);
        return;
      }
    }
    s.end();
  };
  pump();
  await waitFor('the sender to stall', () => Date.now() - lastProgress > 400 && accepted > 0, 20_000);
  // Kernel socket buffers on three hops plus small stream buffers: far below the total.
  assert.ok(accepted < TOTAL / 2, `${accepted} of ${TOTAL} bytes accepted while the target read nothing`);
  assert.equal(received, 0);
  (targetSocket as Socket | null)?.resume();
  await waitFor('all bytes to arrive', () => received === TOTAL, 20_000);
  assert.equal(hash.digest('hex'), sent.digest('hex'));
});

test('an unreachable target closes the client connection with nothing delivered', { timeout: 20_000 }, async (t) => {
  const { port } = await tunnelTo(t, await freePort());
  const r = await roundTrip(port, 'anyone there?');
  assert.equal(r.data.length, 0);
});

test('after the identities change, our client with the old identity is refused on its next connection', { timeout: 20_000 }, async (t) => {
  const echo = await startEcho(t);
  let identities = new Map([['laptop', KEY]]);
  const { port } = await tunnelTo(t, echo.port, () => identities);
  assert.equal((await roundTrip(port, 'one')).data.toString(), 'one');
  assert.equal((await roundTrip(port, 'two')).data.toString(), 'two');
  identities = new Map([['laptop', 'a completely new key for laptop']]);
  assert.equal((await roundTrip(port, 'three')).data.length, 0);
  assert.equal(echo.accepted(), 2);
});

test('disconnect(identity) cuts that identity\'s live connections; connections() counts them', { timeout: 20_000 }, async (t) => {
  const echo = await startEcho(t);
  const { port, endpoint } = await tunnelTo(t, echo.port);
  const sockets = [connect(port, '127.0.0.1'), connect(port, '127.0.0.1')];
  const closed = sockets.map((s) => new Promise((r) => s.once('close', r)));
  for (const s of sockets) {
    s.on('error', () => {});
    s.resume(); // read the echo, else 'end' (and so 'close') never comes
    s.write('x');
  }
  await waitFor('two live connections', () => endpoint.connections() === 2);
  assert.equal(endpoint.disconnect('someone-else'), 0);
  assert.equal(endpoint.disconnect('laptop'), 2);
  await Promise.all(closed);
  await waitFor('no live connection', () => endpoint.connections() === 0);
});

test('close() stops the endpoint and cuts live connections', { timeout: 20_000 }, async (t) => {
  const echo = await startEcho(t);
  const { port, endpoint } = await tunnelTo(t, echo.port);
  const s = connect(port, '127.0.0.1');
  s.on('error', () => {});
  s.resume();
  const closed = new Promise((r) => s.once('close', r));
  s.write('x');
  await waitFor('a live connection', () => endpoint.connections() === 1);
  await endpoint.close();
  await closed;
  const refused = await new Promise<string>((resolve) => {
    const probe = connect(endpoint.address.port, '127.0.0.1');
    probe.on('connect', () => {
      probe.destroy();
      resolve('connected');
    });
    probe.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
  assert.equal(refused, 'ECONNREFUSED');
});
