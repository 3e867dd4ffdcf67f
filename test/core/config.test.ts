import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig, parseDuration, parseHostPort, parseSize } from '../../src/core/config.ts';

test('embedded defaults: sqlite in ./.eph, API 7070, gate 8080, domain eph.localhost, idle 30m', () => {
  const c = loadConfig({}, {});
  assert.equal(c.dataDir, '.eph');
  assert.deepEqual(c.api, { host: '127.0.0.1', port: 7070 });
  assert.deepEqual(c.gate, { host: '127.0.0.1', port: 8080 });
  assert.equal(c.domain, 'eph.localhost');
  assert.equal(c.idleTimeoutMs, 30 * 60_000);
  assert.equal(c.store, 'sqlite');
  assert.equal(c.runtime, 'process');
  assert.equal(c.maxArchiveBytes, 50_000_000);
  assert.deepEqual(c.plans.map((p) => [p.name, p.maxRunning]), [['free', 1], ['standard', 10]]);
});

test('environment variables apply and flags win over them', () => {
  const env = { EPH_DATA: '/srv/eph', EPH_API: '0.0.0.0:9000', EPH_DOMAIN: 'Cloud.Example.org', EPH_IDLE_TIMEOUT: '2s', EPH_PLANS: 'free=2,team=20' };
  const c = loadConfig({ idleTimeout: '5m' }, env);
  assert.equal(c.dataDir, '/srv/eph');
  assert.deepEqual(c.api, { host: '0.0.0.0', port: 9000 });
  assert.equal(c.domain, 'cloud.example.org');
  assert.equal(c.idleTimeoutMs, 300_000);
  assert.deepEqual(c.plans.map((p) => [p.name, p.maxRunning]), [['free', 2], ['team', 20]]);
});

test('bad settings fail with the flag name and the value', () => {
  assert.throws(() => parseDuration('--idle-timeout', 'soon'), /--idle-timeout: expected a duration like 30m, got 'soon'/);
  assert.throws(() => parseHostPort('--api', 'localhost'), /--api: expected HOST:PORT/);
  assert.throws(() => parseHostPort('--api', '127.0.0.1:70000'), /--api/);
  assert.throws(() => parseSize('--max-archive', 'big'), /--max-archive/);
  assert.throws(() => loadConfig({ runtime: 'k8s' }, {}), /--runtime: expected process or swarm/);
  assert.throws(() => loadConfig({ store: 'mysql://x' }, {}), /--store/);
  assert.throws(() => loadConfig({}, { EPH_PLANS: 'free' }), /--plans/);
});

test('durations and sizes in every unit', () => {
  assert.equal(parseDuration('x', '1500ms'), 1500);
  assert.equal(parseDuration('x', '2'), 2000);
  assert.equal(parseDuration('x', '1h'), 3_600_000);
  assert.equal(parseSize('x', '50MB'), 50_000_000);
  assert.equal(parseSize('x', '1MiB'), 1_048_576);
});
