import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { readIntoSharedBuffer } from '../../src/gate/read-into-shared-buffer.ts';
import { H1, readUntil, startApp, startGate, until, type App, type TestGate } from './gate.fixtures.ts';

let echo: App;
let g: TestGate;

before(async () => {
  // Answers with the SHA-256 of the body, so that any byte the gate loses or reuses shows.
  echo = await startApp((req, res) => {
    const h = createHash('sha256');
    req.on('data', (c: Buffer) => h.update(c));
    // A slow reader: the gate's writes to it then stay queued, holding on to what they were given.
    if (req.url === '/slow') {
      req.pause();
      setTimeout(() => req.resume(), 300);
    }
    req.on('end', () => res.end(h.digest('hex')));
  });
  g = await startGate({}, [H1]);
  g.backend.running.set(H1, echo.upstream);
});

after(async () => {
  await g.gate.close(1000);
  await echo.close();
});

test('an accepted socket reads into the shared buffer on this Node (the gate relies on it for speed)', async (t) => {
  const buf = Buffer.alloc(64 * 1024);
  const got: Buffer[] = [];
  let hooked: boolean | null = null;
  const server = createServer((s: Socket) => {
    hooked = readIntoSharedBuffer(s, buf, (n) => {
      got.push(Buffer.from(buf.subarray(0, n)));
      return true;
    });
    s.on('end', () => s.end());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const c = connect((server.address() as AddressInfo).port, '127.0.0.1');
  t.after(() => c.destroy());
  await once(c, 'connect');
  // 1 MiB in pieces: each read overwrites the buffer, so only copies made in the callback survive.
  const sent = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < sent.length; i++) sent[i] = (i * 7 + (i >> 10)) & 0xff;
  c.end(sent);
  await once(c, 'close');
  assert.equal(hooked, true);
  assert.ok(got.length > 0);
  assert.ok(Buffer.concat(got).equals(sent), 'bytes arrive whole and in order');
});

test('pipelined requests with bodies keep every body intact while later reads land in the buffer', async () => {
  const sock = connect(g.port, '127.0.0.1');
  await once(sock, 'connect');
  const bodies: string[] = [];
  const batch = (from: number, to: number): string => {
    let wire = '';
    for (let i = from; i < to; i++) {
      const body = `body-${i}-${String.fromCharCode(97 + (i % 26)).repeat(i * 37)}`;
      bodies.push(body);
      wire += `POST /p${i} HTTP/1.1\r\nHost: ${H1}\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    }
    return wire;
  };
  let text = '';
  sock.on('data', (c: Buffer) => (text += c.toString('latin1')));
  sock.write(batch(0, 20));
  // Once the first answer is here the gate holds the other 19 as read-ahead; the next
  // batch is then read into the same landing buffer, which must not clobber them.
  await until(() => /\r\n\r\n[0-9a-f]{64}/.test(text), 5000, 'first answer');
  sock.write(`${batch(20, 40)}GET /last HTTP/1.1\r\nHost: ${H1}\r\nConnection: close\r\n\r\n`);
  await once(sock, 'close');
  const digests = [...text.matchAll(/\r\n\r\n([0-9a-f]{64})/g)].map((m) => m[1]);
  const want = [...bodies, ''].map((b) => createHash('sha256').update(b).digest('hex'));
  assert.deepEqual(digests, want);
});

test('a body the app reads slowly is forwarded whole while later reads land in the buffer', async () => {
  const sock = connect(g.port, '127.0.0.1');
  await once(sock, 'connect');
  const body = Buffer.alloc(12 * 1024 * 1024);
  for (let i = 0; i < body.length; i += 4) body.writeUInt32LE(i, i);
  sock.write(`POST /slow HTTP/1.1\r\nHost: ${H1}\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
  sock.write(body);
  const text = await readUntil(sock, (s) => /\r\n\r\n[0-9a-f]{64}/.test(s), 10_000);
  sock.destroy();
  assert.match(text, new RegExp(createHash('sha256').update(body).digest('hex')));
});
