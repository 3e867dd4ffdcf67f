// Failures around a tunnel are reported, never crash the process, and a
// taken port gives a message a user can act on.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { EphError } from '../../src/core/errors.ts';
import { startPskClient } from '../../src/tunnel/psk-client.ts';
import { startPskEndpoint } from '../../src/tunnel/psk-server.ts';
import { freePort, listen, roundTrip, startEcho, waitFor } from './fixtures.ts';

const KEY = 'correct horse battery staple';

test('an identities() that throws refuses the handshake and reports the error; the endpoint keeps serving', { timeout: 20_000 }, async (t) => {
  const echo = await startEcho(t);
  const errors: Error[] = [];
  let broken = true;
  const endpoint = await startPskEndpoint({
    listen: { host: '127.0.0.1', port: 0 },
    target: { host: '127.0.0.1', port: echo.port },
    identities: () => {
      if (broken) throw new Error('store unavailable');
      return new Map([['laptop', KEY]]);
    },
    onError: (e) => errors.push(e),
  });
  t.after(() => endpoint.close());
  const client = await startPskClient({ local: { host: '127.0.0.1', port: 0 }, remote: endpoint.address, identity: 'laptop', key: KEY });
  t.after(() => client.close());
  assert.equal((await roundTrip(client.address.port, 'while broken')).data.length, 0);
  assert.deepEqual(errors.map((e) => e.message), ['store unavailable']);
  broken = false;
  assert.equal((await roundTrip(client.address.port, 'repaired')).data.toString(), 'repaired');
});

test('a target that refuses connections is reported through onError', { timeout: 20_000 }, async (t) => {
  const errors: NodeJS.ErrnoException[] = [];
  const endpoint = await startPskEndpoint({
    listen: { host: '127.0.0.1', port: 0 },
    target: { host: '127.0.0.1', port: await freePort() },
    identities: () => new Map([['laptop', KEY]]),
    onError: (e) => errors.push(e),
  });
  t.after(() => endpoint.close());
  const client = await startPskClient({ local: { host: '127.0.0.1', port: 0 }, remote: endpoint.address, identity: 'laptop', key: KEY });
  t.after(() => client.close());
  assert.equal((await roundTrip(client.address.port, 'hello?')).data.length, 0);
  await waitFor('the error report', () => errors.length === 1);
  assert.equal(errors[0]!.code, 'ECONNREFUSED');
});

test('a local port already taken gives an UNAVAILABLE error naming the address', { timeout: 20_000 }, async (t) => {
  const holder = createServer();
  const port = await listen(holder);
  t.after(() => new Promise<void>((r) => holder.close(() => r())));
  await assert.rejects(
    startPskClient({ local: { host: '127.0.0.1', port }, remote: { host: '127.0.0.1', port: 1 }, identity: 'laptop', key: KEY }),
    (e: unknown) =>
      e instanceof EphError && e.code === 'UNAVAILABLE' && e.message === `tunnel: cannot listen on 127.0.0.1:${port}: address already in use`,
  );
  await assert.rejects(
    startPskEndpoint({ listen: { host: '127.0.0.1', port }, target: { host: '127.0.0.1', port: 1 }, identities: () => new Map() }),
    /^EphError: TLS-PSK endpoint: cannot listen on 127\.0\.0\.1:\d+: address already in use$/,
  );
});
