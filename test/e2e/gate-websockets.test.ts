import assert from 'node:assert/strict';
import type { LookupFunction } from 'node:net';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { startTestCloud, until, type TestCloud } from '../helpers/cloud.ts';
import { versionApp, wsEchoApp } from './gate-apps.ts';

/**
 * WebSockets through the real gate to real instances: an upgrade to a
 * sleeping instance waits for its wake, over HTTP and HTTPS, and an open
 * socket keeps the instance from being reaped as idle (idle timeout 2 s).
 */
let cloud: TestCloud;
let wsInst: string;
let control: string;
let gatePort: number;
let tlsPort: number;

before(async () => {
  cloud = await startTestCloud({ idleTimeout: '2s', gateTls: '127.0.0.1:0' }, { reapIntervalMs: 200 });
  gatePort = cloud.gatePort;
  tlsPort = Number(new URL(cloud.gateTlsUrl!).port);
  [wsInst, control] = await Promise.all([wsEchoApp().then((z) => cloud.publish(z)), versionApp('control').then((z) => cloud.publish(z))]);
});
after(() => cloud?.close());

// Every *.eph.test name resolves to the gate on loopback, as DNS would point it at the gate.
const toLoopback = ((_host: string, opts: { all?: boolean }, cb: (...a: unknown[]) => void) => {
  if (opts?.all) cb(null, [{ address: '127.0.0.1', family: 4 }]);
  else cb(null, '127.0.0.1', 4);
}) as unknown as LookupFunction;

const running = (h: string) => cloud.instances.listRunning().some((r) => r.hostname === h);

function open(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { lookup: toLoopback, rejectUnauthorized: false, handshakeTimeout: 30_000 });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  });
}

function echo(ws: WebSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no echo within 10 s')), 10_000);
    ws.once('message', (data) => {
      clearTimeout(t);
      resolve(String(data));
    });
    ws.send(text);
  });
}

function closed(ws: WebSocket): Promise<void> {
  return new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve();
    ws.once('close', () => resolve());
    ws.close();
  });
}

test('over HTTP: an upgrade to a sleeping instance waits for the wake and echoes; an open socket is never reaped', async (t) => {
  assert.equal(running(wsInst), false, 'the instance sleeps before the first visitor');
  const ws = await open(`ws://${wsInst}:${gatePort}/chat`);
  t.after(() => ws.terminate());
  assert.equal(running(wsInst), true);
  assert.equal(await echo(ws, 'hello'), 'echo:hello');
  assert.match((await cloud.api('GET', '/metrics', { user: null })).text, /^eph_gate_websockets 1$/m);

  // A control instance woken now with no connection is reaped after 2 s; the one with the open socket is not.
  assert.equal((await cloud.visit(control)).body, 'control');
  await until('the idle control instance to be reaped', () => !running(control), 15_000, 100);
  assert.equal(running(wsInst), true, 'an instance with an open WebSocket is not idle');
  assert.equal(await echo(ws, 'still there'), 'echo:still there');

  await closed(ws);
  await until('the instance to be reaped once its socket closed', () => !running(wsInst), 15_000, 100);
});

test('over HTTPS (wss, SNI = the instance hostname): the upgrade waits for the wake too and echoes', async (t) => {
  assert.equal(running(wsInst), false, 'asleep again');
  const ws = await open(`wss://${wsInst}:${tlsPort}/`);
  t.after(() => ws.terminate());
  assert.equal(await echo(ws, 'über TLS'), 'echo:über TLS');
  const big = 'x'.repeat(5000);
  assert.equal(await echo(ws, big), `echo:${big}`);
  await closed(ws);
});
