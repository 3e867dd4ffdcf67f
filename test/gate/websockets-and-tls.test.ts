import assert from 'node:assert/strict';
import { once } from 'node:events';
import https from 'node:https';
import { after, before, test } from 'node:test';
import { connect as tlsConnect, createSecureContext, type PeerCertificate, type SecureContext } from 'node:tls';
import { WebSocket, WebSocketServer, type ClientOptions } from 'ws';
import { createGate, type Gate } from '../../src/gate/gate.ts';
import { startIdleReaper } from '../../src/gate/idle-reaper.ts';
import { RoutingTable } from '../../src/gate/routing-table.ts';
import { selfSignedCert } from '../../src/gate/tls.ts';
import { H1, InMemoryBackend, rawExchange, startApp, until, type App } from './gate.fixtures.ts';

const SECURE = 'secure.example.test';
let app: App;
let wss: WebSocketServer;
let gate: Gate;
let backend: InMemoryBackend;
let table: RoutingTable;
let httpPort: number;
let httpsPort: number;
let devCert: { cert: string; key: string };
let exampleCert: { cert: string; key: string };

before(async () => {
  app = await startApp((req, res) => res.end(`tls-app ${req.headers['x-forwarded-proto']}`));
  wss = new WebSocketServer({ server: app.server });
  wss.on('connection', (ws, req) => {
    ws.send(`hello ${req.headers['x-forwarded-proto']}`);
    ws.on('message', (m) => ws.send(`echo ${String(m)}`));
  });
  [devCert, exampleCert] = await Promise.all([selfSignedCert('eph.test'), selfSignedCert('example.test')]);
  const exampleCtx: SecureContext = createSecureContext(exampleCert);
  table = new RoutingTable();
  table.set(H1, [{ hostname: H1, weight: 1 }]);
  table.set(SECURE, [{ hostname: H1, weight: 1 }], true);
  backend = new InMemoryBackend();
  gate = createGate({
    table,
    backend,
    wakeHtmlAfterMs: 0,
    tls: { defaultCert: devCert, sni: (name) => (name.endsWith('.example.test') ? exampleCtx : null) },
  });
  httpPort = (await gate.listen('127.0.0.1', 0)).port;
  httpsPort = (await gate.listenTls('127.0.0.1', 0)).port;
});

after(async () => {
  await gate.close(500);
  wss.close();
  await app.close();
});

function peerCert(servername: string): Promise<PeerCertificate> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: httpsPort, servername, rejectUnauthorized: false }, () => {
      resolve(s.getPeerCertificate());
      s.destroy();
    });
    s.on('error', reject);
  });
}

test('HTTPS picks the certificate by SNI, and the development certificate otherwise', async () => {
  assert.equal((await peerCert('www.example.test')).subject.CN, '*.example.test');
  assert.equal((await peerCert(H1)).subject.CN, '*.eph.test');
});

test('serves HTTPS with a verifiable certificate and tells the app the protocol', async () => {
  backend.running.set(H1, app.upstream);
  const body = await new Promise<string>((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port: httpsPort, servername: H1, headers: { host: H1 }, ca: devCert.cert, agent: false },
      (res) => {
        let s = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (s += c));
        res.on('end', () => resolve(s));
      },
    );
    req.on('error', reject);
    req.end();
  });
  assert.equal(body, 'tls-app https');
});

test('redirects plain HTTP to HTTPS on a route that asks for it, keeping the path', async () => {
  const text = await rawExchange(httpPort, `GET /a?b=1 HTTP/1.1\r\nHost: ${SECURE}\r\nConnection: close\r\n\r\n`);
  assert.match(text, /^HTTP\/1\.1 308 /);
  assert.match(text, new RegExp(`Location: https://${SECURE}:${httpsPort}/a\\?b=1\\r\\n`));
  // The same host over HTTPS is served.
  const s = await new Promise<number>((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: httpsPort, servername: SECURE, headers: { host: SECURE }, ca: exampleCert.cert, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', reject);
    req.end();
  });
  assert.equal(s, 200);
});

async function openWs(url: string, opts: { ca?: string; servername?: string } = {}): Promise<{ ws: WebSocket; first: string }> {
  // ws hands unknown options on to tls.connect; its types do not list servername.
  const wsOpts: ClientOptions & { servername?: string } = { headers: { host: H1 }, ca: opts.ca };
  if (opts.servername !== undefined) wsOpts.servername = opts.servername;
  const ws = new WebSocket(url, wsOpts);
  const first = await new Promise<string>((resolve, reject) => {
    ws.once('message', (m) => resolve(String(m)));
    ws.once('error', reject);
  });
  return { ws, first };
}

async function echo(ws: WebSocket, text: string): Promise<string> {
  ws.send(text);
  const [m] = (await once(ws, 'message')) as [Buffer];
  return String(m);
}

test('WebSockets work over HTTP and HTTPS', async () => {
  backend.running.set(H1, app.upstream);
  const plain = await openWs(`ws://127.0.0.1:${httpPort}/ws`);
  assert.equal(plain.first, 'hello http');
  assert.equal(await echo(plain.ws, 'x'.repeat(100_000)), `echo ${'x'.repeat(100_000)}`);
  const secure = await openWs(`wss://127.0.0.1:${httpsPort}/ws`, { ca: devCert.cert, servername: H1 });
  assert.equal(secure.first, 'hello https');
  assert.equal(await echo(secure.ws, 'over tls'), 'echo over tls');
  assert.equal(gate.activeCount(H1), 2);
  assert.match(gate.metrics(), /eph_gate_websockets 2/);
  plain.ws.close();
  secure.ws.close();
  await until(() => gate.activeCount(H1) === 0, 3000, 'websockets released');
});

test('a WebSocket upgrade to a sleeping instance waits for the wake', async () => {
  backend.running.delete(H1);
  let release!: () => void;
  backend.wakeWith = () => new Promise((r) => (release = () => r(app.upstream)));
  const pending = openWs(`ws://127.0.0.1:${httpPort}/ws`);
  await until(() => backend.wakeCalls.length > 0, 2000, 'wake asked');
  await new Promise((r) => setTimeout(r, 100));
  release();
  const { ws, first } = await pending;
  assert.equal(first, 'hello http');
  assert.equal(await echo(ws, 'woke'), 'echo woke');
  ws.close();
  await until(() => gate.activeCount(H1) === 0, 3000, 'released');
});

test('the idle reaper does not stop an instance with an open WebSocket, and stops it once closed', async () => {
  backend.running.set(H1, app.upstream);
  const stopped: string[] = [];
  const { ws } = await openWs(`ws://127.0.0.1:${httpPort}/ws`);
  const reaper = startIdleReaper({
    intervalMs: 20,
    idleTimeoutMs: 1000,
    // Last access long ago: only the open connection keeps it alive.
    listRunning: () => (stopped.includes(H1) ? [] : [{ hostname: H1, accessAt: Date.now() - 60_000 }]),
    activeCount: (h) => gate.activeCount(h),
    stop: async (h) => {
      stopped.push(h);
    },
    onReap: () => gate.countIdleReap(),
  });
  try {
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(stopped, [], 'not reaped while the WebSocket is open');
    ws.close();
    await until(() => stopped.length === 1, 3000, 'reaped after close');
    assert.deepEqual(stopped, [H1]);
    await until(() => /eph_idle_reaps_total 1/.test(gate.metrics()), 1000, 'reap counted');
  } finally {
    reaper.stop();
  }
});

test('the idle reaper leaves recently used instances alone', async () => {
  const stopped: string[] = [];
  const now = 1_000_000;
  const reaper = startIdleReaper({
    intervalMs: 10,
    idleTimeoutMs: 1000,
    now: () => now,
    listRunning: () => [
      { hostname: 'recent', accessAt: now - 500 },
      { hostname: 'old', accessAt: now - 5000 },
    ],
    activeCount: () => 0,
    stop: async (h) => {
      stopped.push(h);
    },
  });
  try {
    await until(() => stopped.length > 0, 2000, 'a reap');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual([...new Set(stopped)], ['old']);
  } finally {
    reaper.stop();
  }
});

test('a declined upgrade is answered as a normal response', async () => {
  const plainApp = await startApp((_req, res) => {
    res.statusCode = 426;
    res.end('no upgrade here');
  });
  try {
    backend.running.set(H1, plainApp.upstream);
    const text = await rawExchange(
      httpPort,
      `GET /ws HTTP/1.1\r\nHost: ${H1}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
    );
    assert.match(text, /^HTTP\/1\.1 426 /);
    assert.match(text, /no upgrade here$/);
  } finally {
    await plainApp.close();
    backend.running.set(H1, app.upstream);
  }
});
