import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { EphError } from '../../src/core/errors.ts';
import { H1, request, startApp, startGate, until, type App, type TestGate } from './gate.fixtures.ts';

let app: App;
let hashApp: App;

before(async () => {
  app = await startApp();
  hashApp = await startApp((req, res) => {
    const h = createHash('sha256');
    let n = 0;
    req.on('data', (c: Buffer) => {
      h.update(c);
      n += c.length;
    });
    req.on('end', () => res.end(`${n} ${h.digest('hex')}`));
  });
});

after(async () => {
  await app.close();
  await hashApp.close();
});

/** A wake that the test releases by hand. */
function manualWake(g: TestGate, up: () => { host: string; port: number }): { release(): void } {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  g.backend.wakeWith = async () => {
    await gate;
    return up();
  };
  return { release };
}

test('the first request to a sleeping instance wakes it; concurrent requests share one wake and are all served in order', async (t) => {
  const g = await startGate();
  t.after(() => g.gate.close(1000));
  const w = manualWake(g, () => app.upstream);
  app.seen.length = 0;
  const replies: Array<Promise<{ status: number; body: string }>> = [];
  for (let i = 0; i < 8; i++) {
    replies.push(request(g.port, { path: `/r${i}` }));
    // Each request is in the gate before the next is sent, so arrival order is defined.
    await until(() => g.gate.activeCount(H1) === i + 1, 2000, `request ${i} held`);
  }
  assert.equal(app.seen.length, 0, 'nothing reaches the app before it is awake');
  w.release();
  const got = await Promise.all(replies);
  for (let i = 0; i < 8; i++) {
    assert.equal(got[i]!.status, 200);
    assert.equal(got[i]!.body, `ok GET /r${i} 0`);
  }
  assert.deepEqual(g.backend.wakeCalls, [H1], 'one wake for all of them');
  assert.deepEqual(
    app.seen.map((s) => s.url),
    replies.map((_, i) => `/r${i}`),
    'served in arrival order',
  );
  assert.match(g.gate.metrics(), /eph_gate_wakes_total\{result="ok"\} 1/);
});

test('a large POST sent during a wake is held (not buffered) and arrives intact', async (t) => {
  const g = await startGate();
  t.after(() => g.gate.close(1000));
  const w = manualWake(g, () => hashApp.upstream);
  const body = randomBytes(8 * 1024 * 1024);
  const want = `${body.length} ${createHash('sha256').update(body).digest('hex')}`;
  const reply = request(g.port, { method: 'POST', path: '/upload', body, headers: { 'content-type': 'application/octet-stream' } });
  await until(() => g.gate.activeCount(H1) === 1, 2000, 'POST held');
  await new Promise((r) => setTimeout(r, 200)); // give the client time to push what it can
  const rss = process.memoryUsage().rss;
  w.release();
  const r = await reply;
  assert.equal(r.status, 200);
  assert.equal(r.body, want);
  assert.ok(process.memoryUsage().rss - rss < 64 * 1024 * 1024, 'the body was streamed, not gathered');
});

/**
 * Issue 17 §5: what the gate holds of a visitor's body while the instance
 * wakes, counted where it happens: the bytes the gate has read from the
 * visitor's socket (the socket's own count). The rest waits in the visitor
 * (TCP backpressure), not in the gate's memory.
 */
for (const [name, framing] of [
  ['Content-Length', 'length'],
  ['chunked', 'chunked'],
] as const) {
  test(`a ${name} body of 8 MiB sent during a wake: the gate reads at most ~64 KiB of it until the instance is up`, async (t) => {
    const g = await startGate();
    t.after(() => g.gate.close(1000));
    const w = manualWake(g, () => hashApp.upstream);
    const body = randomBytes(8 * 1024 * 1024);
    const want = `${body.length} ${createHash('sha256').update(body).digest('hex')}`;
    const head =
      `POST /upload HTTP/1.1\r\nHost: ${H1}\r\nConnection: close\r\n` +
      (framing === 'length' ? `Content-Length: ${body.length}\r\n\r\n` : 'Transfer-Encoding: chunked\r\n\r\n');
    const wire =
      framing === 'length'
        ? Buffer.concat([Buffer.from(head, 'latin1'), body])
        : Buffer.concat([Buffer.from(`${head}${body.length.toString(16)}\r\n`, 'latin1'), body, Buffer.from('\r\n0\r\n\r\n', 'latin1')]);
    const s = connect({ host: '127.0.0.1', port: g.port });
    t.after(() => s.destroy());
    await once(s, 'connect');
    const answer = new Promise<string>((resolve) => {
      let text = '';
      s.on('data', (c: Buffer) => (text += c.toString('latin1')));
      s.on('close', () => resolve(text));
      s.on('error', () => {});
    });
    // Written in 16 KiB pieces: a piece's callback says the visitor's kernel took it.
    let handed = 0;
    let off = 0;
    const pump = (): void => {
      while (off < wire.length) {
        const piece = wire.subarray(off, Math.min(off + 16 * 1024, wire.length));
        off += piece.length;
        if (!s.write(piece, () => (handed += piece.length))) {
          s.once('drain', pump);
          return;
        }
      }
    };
    pump();
    await until(() => g.gate.activeCount(H1) === 1, 30_000, 'POST held');
    // The signal that the gate has stopped reading: what the visitor has handed to its kernel
    // stops moving (the kernel buffers on both sides are full). The gate runs in this process:
    // while it reads, every turn of the event loop would move it, so a still count means paused.
    // A gate that buffered would read on until the whole body had left the visitor.
    let last = -1;
    let still = 0;
    await until(
      () => {
        still = handed === last ? still + 1 : 0;
        last = handed;
        return still >= 10 || handed === wire.length;
      },
      30_000,
      'the visitor to be held back or done',
    );
    const read = g.gate.bytesReadFrom(s.localPort!);
    assert.ok(read !== null, 'the gate has the visitor connected');
    t.diagnostic(`read by the gate during the wake: ${read} bytes; handed to the kernel by the visitor: ${last}`);
    const bound = head.length + 16 + 2 * 64 * 1024;
    assert.ok(read <= bound, `the gate read ${read} bytes of the visitor during the wake (at most ${bound} expected)`);
    assert.ok(handed < wire.length, 'the visitor could not send the whole body during the wake');
    w.release();
    const text = await answer;
    assert.match(text, /^HTTP\/1\.1 200 /);
    assert.ok(text.endsWith(`\r\n\r\n${want}`), text.slice(0, 300));
  });
}

test('a chunked POST during a wake arrives intact', async (t) => {
  const g = await startGate();
  t.after(() => g.gate.close(1000));
  const w = manualWake(g, () => hashApp.upstream);
  const parts = [randomBytes(100_000), randomBytes(5), randomBytes(300_000)];
  const all = Buffer.concat(parts);
  const res = new Promise<string>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: g.port, method: 'POST', path: '/c', headers: { host: H1 }, agent: false }, (r) => {
      let s = '';
      r.setEncoding('utf8');
      r.on('data', (c: string) => (s += c));
      r.on('end', () => resolve(s));
    });
    req.on('error', reject);
    for (const p of parts) req.write(p);
    req.end();
  });
  await until(() => g.gate.activeCount(H1) === 1, 2000, 'chunked POST held');
  w.release();
  assert.equal(await res, `${all.length} ${createHash('sha256').update(all).digest('hex')}`);
});

test('a browser asking for HTML during a slow wake gets a self-refreshing starting page; the wake carries on', async (t) => {
  const g = await startGate({ wakeHtmlAfterMs: 150 });
  t.after(() => g.gate.close(1000));
  const w = manualWake(g, () => app.upstream);
  const r = await request(g.port, { headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' } });
  assert.equal(r.status, 503);
  assert.match(r.body, /<meta http-equiv="refresh" content="\d+">/);
  assert.match(r.body, /starting/i);
  assert.ok(r.headers['retry-after']);
  // A client that does not ask for HTML keeps waiting and is served.
  const api = request(g.port, { headers: { accept: 'application/json' }, path: '/api' });
  await new Promise((r2) => setTimeout(r2, 300));
  w.release();
  assert.equal((await api).body, 'ok GET /api 0');
  // The refresh lands on the awake instance.
  const again = await request(g.port, { headers: { accept: 'text/html' } });
  assert.equal(again.status, 200);
  assert.deepEqual(g.backend.wakeCalls, [H1]);
});

test('wakeHtmlAfterMs 0 disables the starting page', async (t) => {
  const g = await startGate({ wakeHtmlAfterMs: 0 });
  t.after(() => g.gate.close(1000));
  const w = manualWake(g, () => app.upstream);
  const r = request(g.port, { headers: { accept: 'text/html' } });
  await new Promise((r2) => setTimeout(r2, 300));
  w.release();
  assert.equal((await r).status, 200);
});

test('wake errors become pages: quota 503 + Retry-After, start failure 502 naming the reason, timeout 504, gone 404', async (t) => {
  const g = await startGate();
  t.after(() => g.gate.close(1000));
  const cases: Array<[EphError, number, RegExp]> = [
    [new EphError('QUOTA_EXCEEDED', 'plan free allows 1 running instance', { retryAfter: 30 }), 503, /plan free allows 1 running instance/],
    [new EphError('START_FAILED', 'pharo: command not found'), 502, /pharo: command not found/],
    [new EphError('WAKE_TIMEOUT'), 504, /did not accept connections in time/],
    [new EphError('NOT_FOUND', 'instance not found'), 404, /no application/i],
  ];
  for (const [err, status, text] of cases) {
    g.backend.wakeWith = async () => {
      throw err;
    };
    const r = await request(g.port, {});
    assert.equal(r.status, status, err.code);
    assert.match(r.body, text, err.code);
    assert.match(String(r.headers['content-type']), /text\/html/);
    if (err.code === 'QUOTA_EXCEEDED') assert.equal(r.headers['retry-after'], '30');
  }
  assert.match(g.gate.metrics(), /eph_gate_wakes_total\{result="error"\} 4/);
});

test('the reason in a start-failure page is HTML-escaped', async (t) => {
  const g = await startGate();
  t.after(() => g.gate.close(1000));
  g.backend.wakeWith = async () => {
    throw new EphError('START_FAILED', '<script>alert(1)</script>');
  };
  const r = await request(g.port, {});
  assert.equal(r.status, 502);
  assert.ok(!r.body.includes('<script>'));
  assert.match(r.body, /&#60;script&#62;/);
});

test('an app that crashed (connection refused) is woken once more and the request retried', async (t) => {
  const g = await startGate();
  t.after(() => g.gate.close(1000));
  // A port that nothing listens on: the backend still believes the app runs there.
  const probe = http.createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const deadPort = (probe.address() as { port: number }).port;
  await new Promise<void>((r) => probe.close(() => r()));
  g.backend.running.set(H1, { host: '127.0.0.1', port: deadPort });
  g.backend.wakeWith = async () => app.upstream;
  const r = await request(g.port, { method: 'POST', path: '/after-crash', body: 'abc' });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'ok POST /after-crash 3');
  assert.deepEqual(g.backend.wakeCalls, [H1]);
});

test('an app that dies mid-connection (reset) is woken again and an idempotent request retried', async (t) => {
  const crashy = http.createServer((req) => req.socket.destroy());
  crashy.listen(0, '127.0.0.1');
  await once(crashy, 'listening');
  t.after(() => crashy.close());
  const g = await startGate();
  t.after(() => g.gate.close(1000));
  g.backend.running.set(H1, { host: '127.0.0.1', port: (crashy.address() as { port: number }).port });
  g.backend.wakeWith = async () => app.upstream;
  const r = await request(g.port, { path: '/again' });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'ok GET /again 0');
  assert.deepEqual(g.backend.wakeCalls, [H1]);
  // A non-idempotent request whose body was sent is not replayed: 502.
  g.backend.running.set(H1, { host: '127.0.0.1', port: (crashy.address() as { port: number }).port });
  const p = await request(g.port, { method: 'POST', path: '/once', body: 'x' });
  assert.equal(p.status, 502);
});

test('a visitor who leaves during a wake does not break it for others', async (t) => {
  const g = await startGate();
  t.after(() => g.gate.close(1000));
  const w = manualWake(g, () => app.upstream);
  const s = connect({ host: '127.0.0.1', port: g.port });
  await once(s, 'connect');
  s.write(`GET /gone HTTP/1.1\r\nHost: ${H1}\r\n\r\n`);
  await until(() => g.gate.activeCount(H1) === 1, 2000, 'held');
  s.destroy();
  const other = request(g.port, { path: '/stay' });
  await until(() => g.gate.activeCount(H1) >= 1, 2000, 'second held');
  w.release();
  assert.equal((await other).body, 'ok GET /stay 0');
  await until(() => g.gate.activeCount(H1) === 0, 2000, 'nothing left active');
});
