import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { HttpHealthCheck } from '../../src/gate/health-check.ts';
import { startUpstream } from './route-service.fixtures.ts';

const check = new HttpHealthCheck({ retryDelayMs: 20, maxRetryDelayMs: 100 });

test('a target that warms up within the deadline passes after retries', async (t) => {
  let n = 0;
  const up = await startUpstream((_req, res) => {
    res.statusCode = ++n < 3 ? 503 : 204;
    res.end();
  });
  t.after(() => up.close());
  const r = await check.check(up.address, 'www.example.org', '/ready', 3000);
  assert.deepEqual([r.ok, r.status, r.attempts], [true, 204, 3]);
  assert.deepEqual(up.seen, Array(3).fill('www.example.org /ready'));
});

test('4xx counts as healthy: only 5xx and silence refuse', async (t) => {
  const up = await startUpstream((_req, res) => {
    res.statusCode = 404;
    res.end('no such page');
  });
  t.after(() => up.close());
  const r = await check.check(up.address, 'x.test', '/', 1000);
  assert.deepEqual([r.ok, r.status, r.attempts], [true, 404, 1]);
});

test('the answer counts at the status line: an endless body does not hold the check', async (t) => {
  const up = await startUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: 1\n\n');
  });
  t.after(() => up.close());
  const t0 = Date.now();
  const r = await check.check(up.address, 'x.test', '/events', 2000);
  assert.equal(r.ok, true);
  assert.ok(Date.now() - t0 < 1000, `took ${Date.now() - t0} ms`);
});

test('a refused connection is retried until the deadline, then reported', async () => {
  // A port that was just free: nothing listens there.
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((r) => probe.close(() => r()));
  const t0 = Date.now();
  const r = await check.check({ host: '127.0.0.1', port }, 'x.test', '/', 400);
  const took = Date.now() - t0;
  assert.equal(r.ok, false);
  assert.equal(r.status, null);
  assert.match(r.reason, /ECONNREFUSED/);
  assert.ok(r.attempts >= 3, `${r.attempts} attempts`);
  assert.ok(took >= 300 && took < 1500, `took ${took} ms`);
});
