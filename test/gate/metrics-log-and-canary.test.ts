import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { STICKY_COOKIE } from '../../src/gate/routing-table.ts';
import { H1, H2, request, startApp, startGate, type App, type TestGate } from './gate.fixtures.ts';

let a: App;
let b: App;
let g: TestGate;
const lines: Array<Record<string, unknown>> = [];

before(async () => {
  a = await startApp((_req, res) => res.end('A'));
  b = await startApp((_req, res) => res.end('B'));
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  g = await startGate({ logger: pino({ base: null }, sink) }, [H1, H2]);
  g.backend.running.set(H1, a.upstream);
  g.backend.running.set(H2, b.upstream);
  g.table.set('www.split.test', [
    { hostname: H1, weight: 50 },
    { hostname: H2, weight: 50 },
  ]);
});

after(async () => {
  await g.gate.close(1000);
  await a.close();
  await b.close();
});

test('metrics: requests by status (public, no host), by route host (for owners), latency histogram, connections, running and reaps', async () => {
  await request(g.port, { host: H1 });
  await request(g.port, { host: H1 });
  await request(g.port, { host: 'unknown.split.test' });
  g.gate.setRunningInstances(3);
  g.gate.countIdleReap();
  const m = g.gate.metrics();
  assert.match(m, /^eph_gate_requests_total\{status="200"\} 2$/m);
  assert.match(m, /^eph_gate_requests_total\{status="404"\} 1$/m);
  assert.ok(!m.includes('host=') && !m.includes(H1) && !m.includes('unknown.split.test'), `the public text names no host:\n${m}`);
  const hostRe = new RegExp(`^eph_gate_host_requests_total\\{host="${H1.replace(/\./g, '\\.')}",status="200"\\} 2$`, 'm');
  const all = g.gate.hostMetrics(() => true);
  assert.match(all, hostRe);
  assert.match(all, /^eph_gate_host_requests_total\{host="",status="404"\} 1$/m, 'unknown hosts share one label');
  const own = g.gate.hostMetrics((h) => h === H1);
  assert.match(own, hostRe);
  assert.ok(!own.includes('host=""'), 'only the hosts asked for');
  assert.ok(!g.gate.hostMetrics((h) => h === H2).includes(H1));
  assert.match(m, /# TYPE eph_gate_request_duration_seconds histogram/);
  assert.match(m, /eph_gate_request_duration_seconds_bucket\{le="\+Inf"\} 3\n/);
  assert.match(m, /eph_gate_request_duration_seconds_count 3\n/);
  assert.match(m, /eph_gate_active_connections \d+\n/);
  assert.match(m, /eph_instances_running 3\n/);
  assert.match(m, /eph_idle_reaps_total 1\n/);
  assert.match(m, /eph_gate_wake_duration_seconds_count 0\n/);
  // Every sample line is `name{labels} value` or `name value`.
  for (const line of m.trim().split('\n')) if (!line.startsWith('#')) assert.match(line, /^[a-z_]+(\{[^}]*\})? [\d.e+-]+$/, line);
});

test('access log: one JSON line per request with host, instance, method, path, status and time', async () => {
  lines.length = 0;
  await request(g.port, { host: H2, path: '/logged?x=1', method: 'DELETE' });
  const l = lines.find((x) => x.path === '/logged?x=1');
  assert.ok(l, JSON.stringify(lines));
  assert.equal(l.host, H2);
  assert.equal(l.instance, H2);
  assert.equal(l.method, 'DELETE');
  assert.equal(l.status, 200);
  assert.equal(typeof l.ms, 'number');
  assert.equal(l.remote, '127.0.0.1');
});

test('a canary split sends visitors to both sides and keeps each on its side with a cookie', async () => {
  const seen = new Set<string>();
  for (let i = 0; i < 40 && seen.size < 2; i++) {
    const r = await request(g.port, { host: 'www.split.test' });
    seen.add(r.body);
    const cookie = String(r.headers['set-cookie']);
    assert.match(cookie, new RegExp(`^${STICKY_COOKIE}=eph-0000000[12]\\.eph\\.test; Path=/; HttpOnly`));
    // Coming back with the cookie lands on the same side every time, and sets no new cookie.
    const value = cookie.split(';')[0]!;
    for (let k = 0; k < 5; k++) {
      const again = await request(g.port, { host: 'www.split.test', headers: { cookie: `other=1; ${value}` } });
      assert.equal(again.body, r.body);
      assert.equal(again.headers['set-cookie'], undefined);
    }
  }
  assert.deepEqual([...seen].sort(), ['A', 'B']);
});

test('a sticky cookie for an instance no longer in the split is replaced', async () => {
  const r = await request(g.port, { host: 'www.split.test', headers: { cookie: `${STICKY_COOKIE}=eph-000000ff.eph.test` } });
  assert.match(String(r.headers['set-cookie']), new RegExp(`^${STICKY_COOKIE}=eph-0000000[12]`));
});
