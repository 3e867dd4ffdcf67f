import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { startTestCloud, until, type TestCloud } from '../helpers/cloud.ts';
import { versionApp } from './gate-apps.ts';

/**
 * What an operator sees of the gate: /metrics on the API (Prometheus text)
 * and the JSON access log that EPH_ACCESS_LOG=1 turns on. Per-host series
 * (issue 8 §12): never on the public /metrics; on /v1/metrics for the host's
 * owner, and on /metrics with the operator's EPH_METRICS_TOKEN.
 */
let cloud: TestCloud;
let inst: string;
const OPERATOR_TOKEN = `operator-${process.pid}-0123456789abcdef`;
const lines: string[] = [];

/** A pino logger writing into `into`, one JSON line per entry, as pino writes to stdout. */
const capture = (into: string[]) => pino({ level: 'info' }, { write: (s: string) => void into.push(s) });
const accessEntries = (from: string[]) => from.map((l) => JSON.parse(l) as Record<string, unknown>).filter((e) => e.part === 'gate' && 'status' in e);

before(async () => {
  cloud = await startTestCloud(
    { idleTimeout: '2s' },
    { reapIntervalMs: 200, env: { EPH_ACCESS_LOG: '1', EPH_METRICS_TOKEN: OPERATOR_TOKEN }, logger: capture(lines) },
  );
  inst = await cloud.publish(await versionApp('v1'));
});
after(() => cloud?.close());

const metrics = async () => {
  const r = await cloud.api('GET', '/metrics', { user: null });
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /^text\/plain/);
  return r.text;
};
/** The value of one sample line, e.g. `eph_instances_running`; NaN when absent. */
const sample = (text: string, series: string) => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : NaN;
};

test('/metrics counts requests by status (no host names), wakes with their duration, running instances and idle reaps', async () => {
  const m0 = await metrics();
  assert.equal(sample(m0, 'eph_instances_running'), 0);
  assert.equal(sample(m0, 'eph_gate_wakes_total{result="ok"}'), 0);

  for (const p of ['/', '/a', '/b?x=1']) assert.equal((await cloud.visit(inst, p)).status, 200);
  assert.equal((await cloud.visit('nobody.example.test')).status, 404);

  const m = await metrics();
  assert.equal(sample(m, 'eph_gate_requests_total{status="200"}'), 3);
  assert.equal(sample(m, 'eph_gate_requests_total{status="404"}'), 1);
  assert.ok(!m.includes(inst) && !m.includes('host='), `the public text names no host:\n${m}`);
  assert.equal(sample(m, 'eph_gate_wakes_total{result="ok"}'), 1, 'three requests, one wake');
  assert.equal(sample(m, 'eph_gate_wake_duration_seconds_count'), 1);
  assert.ok(sample(m, 'eph_gate_wake_duration_seconds_sum') > 0);
  assert.equal(sample(m, 'eph_gate_request_duration_seconds_count'), 4);
  assert.equal(sample(m, 'eph_gate_request_duration_seconds_bucket{le="+Inf"}'), 4);
  assert.equal(sample(m, 'eph_instances_running'), 1);
  assert.match(m, /^# TYPE eph_gate_request_duration_seconds histogram$/m);

  // The API shows the last access of the instance.
  const view = (await cloud.api('GET', `/v1/instances/${inst}`)).json as { accessTime: string; state: string };
  assert.equal(view.state, 'running');
  assert.ok(Date.now() - Date.parse(view.accessTime) < 10_000, `accessTime ${view.accessTime} is the recent visit`);

  // Idle for 2 s: reaped, and the gauges follow.
  const after = await until('an idle reap in /metrics', async () => {
    const t = await metrics();
    return sample(t, 'eph_idle_reaps_total') === 1 ? t : null;
  }, 15_000, 200);
  assert.equal(sample(after, 'eph_instances_running'), 0);
});

test('EPH_ACCESS_LOG=1: one JSON line per request with host, instance, method, path, status, duration, client and time', async () => {
  const before = accessEntries(lines).length;
  assert.equal((await cloud.visit(inst, '/logged?q=1', { headers: { 'user-agent': 'test' } })).status, 200);
  assert.equal((await cloud.visit('unknown.example.test', '/x')).status, 404);
  const entries = await until('two access log lines', () => {
    const e = accessEntries(lines).slice(before);
    return e.length >= 2 ? e : null;
  });
  const [hit, miss] = entries as [Record<string, unknown>, Record<string, unknown>];
  assert.equal(hit.host, inst);
  assert.equal(hit.instance, inst);
  assert.equal(hit.method, 'GET');
  assert.equal(hit.path, '/logged?q=1');
  assert.equal(hit.status, 200);
  assert.equal(typeof hit.ms, 'number');
  assert.match(String(hit.remote), /^127\.0\.0\.1/);
  assert.equal(hit.tls, false);
  assert.ok(typeof hit.time === 'number' && Date.now() - hit.time < 60_000);
  assert.equal(miss.host, 'unknown.example.test');
  assert.equal(miss.status, 404);
  assert.equal(miss.instance, null);
});

test('without EPH_ACCESS_LOG the gate writes no access log', async (t) => {
  const quiet: string[] = [];
  const other = await startTestCloud({}, { logger: capture(quiet) });
  t.after(() => other.close());
  assert.equal((await other.visit('unknown.example.test')).status, 404);
  // The same request logged at once on the other cloud; here the metrics saw it and the log did not.
  assert.match((await other.api('GET', '/metrics', { user: null })).text, /eph_gate_requests_total\{status="404"\} 1/);
  assert.deepEqual(accessEntries(quiet), []);
});

test("per-host series: the owner's own on /v1/metrics, none of another's; every host's with the operator's token", async () => {
  const bob = await cloud.addUser(`bob${process.pid}`);
  const bobInst = await cloud.publish(await versionApp('bob'), { user: bob });
  assert.equal((await cloud.visit(inst, '/own')).status, 200);
  assert.equal((await cloud.visit(bobInst, '/bob')).status, 200);
  assert.equal((await cloud.visit('stranger.example.test')).status, 404);

  const host = (text: string, h: string, status: number) => sample(text, `eph_gate_host_requests_total{host="${h}",status="${status}"}`);
  const mine = await cloud.api('GET', '/v1/metrics');
  assert.equal(mine.status, 200);
  assert.match(String(mine.headers['content-type']), /^text\/plain/);
  assert.ok(host(mine.text, inst, 200) >= 1, mine.text);
  assert.ok(!mine.text.includes(bobInst) && !mine.text.includes('host=""'), `only the caller's hosts:\n${mine.text}`);

  const bobs = await cloud.api('GET', '/v1/metrics', { user: bob });
  assert.equal(bobs.status, 200);
  assert.equal(host(bobs.text, bobInst, 200), 1);
  assert.ok(!bobs.text.includes(inst), `not the first user's host:\n${bobs.text}`);

  assert.equal((await cloud.api('GET', '/v1/metrics', { user: null })).status, 401, 'no credentials, no per-host series');

  const op = await cloud.api('GET', '/metrics', { user: null, headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } });
  assert.equal(op.status, 200);
  assert.ok(host(op.text, inst, 200) >= 1 && host(op.text, bobInst, 200) === 1, op.text);
  assert.ok(host(op.text, '', 404) >= 1, 'unknown hosts too');
  assert.equal(sample(op.text, 'eph_gate_requests_total{status="404"}'), host(op.text, '', 404), 'and the aggregate series');
  const wrong = await cloud.api('GET', '/metrics', { user: null, headers: { authorization: 'Bearer not-the-operator-token' } });
  assert.equal(wrong.status, 401);
  assert.ok(!wrong.text.includes(inst));
});
