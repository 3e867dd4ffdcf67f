import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { H1, rawExchange, readUntil, request, startApp, startGate, statusLines, until, type App, type TestGate } from './gate.fixtures.ts';

let app: App;
let streamer: App;
let g: TestGate;
const H2S = 'eph-0000000f.eph.test';
let releaseStream: (() => void) | null = null;

before(async () => {
  app = await startApp();
  streamer = await startApp((req, res) => {
    if (req.url === '/chunked') {
      res.write('first;');
      setTimeout(() => res.end('second'), 30);
      return;
    }
    if (req.url === '/close-delimited') {
      res.shouldKeepAlive = false;
      res.useChunkedEncodingByDefault = false;
      res.removeHeader('transfer-encoding');
      res.write('until ');
      res.end('close');
      return;
    }
    if (req.url === '/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: one\n\n');
      releaseStream = () => res.end('data: bye\n\n');
      return;
    }
    if (req.url === '/continue') {
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => res.end(`got ${n}`));
      return;
    }
    res.statusCode = 418;
    res.end('?');
  });
  g = await startGate({}, [H1, H2S]);
  g.backend.running.set(H1, app.upstream);
  g.backend.running.set(H2S, streamer.upstream);
});

after(async () => {
  await g.gate.close(1000);
  await app.close();
  await streamer.close();
});

test('keeps the visitor connection alive and reuses one pooled connection to the app', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  app.seen.length = 0;
  const clientPorts = new Set<number>();
  for (let i = 0; i < 5; i++) {
    const r = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: g.port, path: `/k${i}`, headers: { host: H1 }, agent }, resolve);
      req.on('socket', (s) => s.once('connect', () => clientPorts.add(s.localPort!)));
      req.on('error', reject);
      req.end();
    });
    r.resume();
    await once(r, 'end');
    assert.equal(r.statusCode, 200);
  }
  agent.destroy();
  assert.equal(clientPorts.size, 1, 'one visitor connection');
  assert.equal(new Set(app.seen.map((s) => s.socketPort)).size, 1, 'one upstream connection');
});

test('serves pipelined requests in order on one connection', async () => {
  const reqs = [1, 2, 3].map((i) => `GET /p${i} HTTP/1.1\r\nHost: ${H1}\r\n\r\n`).join('');
  const text = await rawExchange(g.port, `${reqs}GET /last HTTP/1.1\r\nHost: ${H1}\r\nConnection: close\r\n\r\n`);
  assert.deepEqual(statusLines(text), [200, 200, 200, 200]);
  const bodies = [...text.matchAll(/ok GET (\/\w+) 0/g)].map((m) => m[1]);
  assert.deepEqual(bodies, ['/p1', '/p2', '/p3', '/last']);
  assert.match(text, /Connection: close/);
});

test('passes a chunked response through as it streams', async () => {
  const r = await request(g.port, { host: H2S, path: '/chunked' });
  assert.equal(r.body, 'first;second');
  assert.equal(r.headers['transfer-encoding'], 'chunked');
});

test('passes a chunked request body through', async () => {
  const text = await rawExchange(
    g.port,
    `POST /c HTTP/1.1\r\nHost: ${H1}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n`,
  );
  assert.match(text, /ok POST \/c 5$/);
});

test('forwards a close-delimited response and then closes the visitor connection', async () => {
  const text = await rawExchange(g.port, `GET /close-delimited HTTP/1.1\r\nHost: ${H2S}\r\n\r\n`);
  assert.match(text, /^HTTP\/1\.1 200 /);
  assert.match(text, /until close$/);
  assert.ok(!text.includes('<<deadline'));
});

test('HEAD responses carry no body and the connection stays usable', async () => {
  const text = await rawExchange(
    g.port,
    `HEAD /h HTTP/1.1\r\nHost: ${H1}\r\n\r\nGET /after-head HTTP/1.1\r\nHost: ${H1}\r\nConnection: close\r\n\r\n`,
  );
  assert.deepEqual(statusLines(text), [200, 200]);
  assert.match(text, /ok GET \/after-head 0$/);
});

test('relays 100 Continue before the final response', async () => {
  const s = connect({ host: '127.0.0.1', port: g.port });
  await once(s, 'connect');
  s.write(`POST /continue HTTP/1.1\r\nHost: ${H2S}\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n`);
  const interim = await readUntil(s, (t) => t.includes('\r\n\r\n'));
  assert.match(interim, /^HTTP\/1\.1 100 Continue/);
  s.write('body');
  const rest = await readUntil(s, (t) => t.includes('got 4'));
  assert.match(rest, /HTTP\/1\.1 200 /);
  s.destroy();
});

test('an open streaming response counts as activity until it ends', async () => {
  const s = connect({ host: '127.0.0.1', port: g.port });
  await once(s, 'connect');
  s.write(`GET /events HTTP/1.1\r\nHost: ${H2S}\r\n\r\n`);
  await readUntil(s, (t) => t.includes('data: one'));
  assert.equal(g.gate.activeCount(H2S), 1);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(g.gate.activeCount(H2S), 1, 'still active while the stream is open');
  releaseStream!();
  await readUntil(s, (t) => t.includes('data: bye'));
  await until(() => g.gate.activeCount(H2S) === 0, 2000, 'released after the stream ended');
  s.destroy();
});

test('the app answering with an error status is passed through unchanged', async () => {
  const r = await request(g.port, { host: H2S, path: '/unknown' });
  assert.equal(r.status, 418);
  assert.equal(r.body, '?');
});

test('an app that drops keep-alive connections right after answering: every idempotent request still succeeds', async (t) => {
  // Closes each connection just after the response without saying so, the race a pooled connection meets
  // when an app's keep-alive timeout fires as the gate reuses it.
  const rude = await startApp((req, res) => {
    res.on('finish', () => setImmediate(() => req.socket.destroy()));
    res.end(`rude ${req.url}`);
  });
  t.after(() => rude.close());
  const H3 = 'eph-0000000e.eph.test';
  g.table.set(H3, [{ hostname: H3, weight: 1 }]);
  g.backend.running.set(H3, rude.upstream);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  t.after(() => agent.destroy());
  const replies = await Promise.all(Array.from({ length: 60 }, (_, i) => request(g.port, { host: H3, path: `/${i}`, agent })));
  assert.deepEqual(
    replies.map((r) => r.status),
    replies.map(() => 200),
  );
  assert.deepEqual(
    replies.map((r) => r.body),
    replies.map((_, i) => `rude /${i}`),
  );
});

