import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildZip } from '../helpers/archives.ts';
import { procfileApp, startTestCloud, until, type TestCloud } from '../helpers/cloud.ts';

/**
 * A crashed app is restarted by the next request and its crash is in its
 * log; a start that fails (missing VM, app exiting at once) gives the
 * visitor a 502 page naming the reason and shows it in the API.
 */
let cloud: TestCloud;
const MISSING_VM = join(tmpdir(), 'eph-no-such-dir', 'pharo');

before(async () => {
  cloud = await startTestCloud({ pharoVm: MISSING_VM, wakeTimeout: '10s' });
});
after(() => cloud?.close());

const show = (h: string) => cloud.instance(h);
const logs = async (h: string): Promise<string> => {
  const r = await cloud.api('GET', `/v1/instances/${h}/logs`);
  assert.equal(r.status, 200, r.text);
  return r.text;
};

// Serves one request, then exits with code 3 as soon as the answer is out.
const CRASHES_AFTER_FIRST_REQUEST = `
import { createServer } from 'node:http';
const boot = Math.random().toString(36).slice(2, 10);
console.log('crashy up, boot ' + boot);
const server = createServer((req, res) => {
  res.end('boot ' + boot + '\\n', () => {
    console.error('crashy: simulated crash after ' + req.url);
    process.exit(3);
  });
});
server.listen(Number(process.env.PORT));
`;

test('an app that crashes after its first request is restarted by the next request; the crash is in its log', async () => {
  const h = await cloud.publish(await procfileApp(CRASHES_AFTER_FIRST_REQUEST), { name: 'crashy' });
  const first = await cloud.visit(h, '/one');
  assert.equal(first.status, 200);
  assert.match(first.body, /^boot \w+\n$/);

  await until('the crash to be noticed', async () => !(await show(h)).isRunning, 10_000);
  const crashed = await show(h);
  assert.match(crashed.lastError ?? '', /exited with code 3/);
  assert.equal(crashed.state, 'asleep', 'asleep, to be woken again, not failed');

  const second = await cloud.visit(h, '/two');
  assert.equal(second.status, 200, second.body);
  assert.match(second.body, /^boot \w+\n$/);
  assert.notEqual(second.body, first.body, 'served by a new process');

  const text = await logs(h);
  assert.match(text, /crashy: simulated crash after \/one/);
  assert.match(text, /exited with code 3/);
  assert.equal(text.match(/crashy up, boot/g)?.length, 2, 'two boots in the log');
  // The restart clears the error once the app is up again.
  assert.equal((await show(h)).lastError, null);
});

test('a request sent right after a crash, before the exit is reported, is served by a restarted app', async () => {
  const h = await cloud.publish(await procfileApp(CRASHES_AFTER_FIRST_REQUEST), { name: 'crashy-now' });
  const first = await cloud.visit(h, '/one');
  assert.equal(first.status, 200);
  // No waiting: the gate finds the connection refused and asks for a wake; the service restarts it.
  for (let i = 0; i < 3; i++) {
    const next = await cloud.visit(h, `/again-${i}`);
    assert.equal(next.status, 200, next.body);
    assert.match(next.body, /^boot \w+\n$/);
  }
});

test('a Pharo archive whose VM is missing: the visitor gets a 502 page naming the reason; the API shows lastError', async () => {
  const h = await cloud.publish(await buildZip('examples/pharo-app'), { name: 'pharo-app.zip' });
  const r = await cloud.visit(h, '/', { headers: { accept: 'text/html' } });
  assert.equal(r.status, 502, r.body);
  assert.match(String(r.headers['content-type']), /text\/html/);
  assert.match(r.body, /failed to start/);
  assert.ok(r.body.includes(`Pharo VM not found: ${MISSING_VM}`), `the page names the missing VM: ${r.body}`);
  const v = await show(h);
  assert.equal(v.isRunning, false);
  assert.equal(v.state, 'failed');
  assert.ok(v.lastError, 'lastError is set');
  assert.ok(v.lastError.includes(MISSING_VM), `lastError names the missing VM: ${v.lastError}`);
  // The compat API keeps its six fields and says it is not running.
  const compat = await cloud.api('GET', `${cloud.compatBase()}/${h}/isRunning`);
  assert.equal(compat.json, false);
});

test('a Procfile app that exits at once: 502 page with the exit code and its last words; lastError says the same', async () => {
  const h = await cloud.publish(await procfileApp("console.error('fatal: DATABASE_URL is not set');\nprocess.exit(7);\n"), { name: 'quitter' });
  const r = await cloud.visit(h, '/');
  assert.equal(r.status, 502, r.body);
  assert.match(r.body, /exited with code 7/);
  assert.match(r.body, /DATABASE_URL is not set/);
  const v = await show(h);
  assert.equal(v.state, 'failed');
  assert.match(v.lastError ?? '', /exited with code 7/);
  assert.match(v.lastError ?? '', /DATABASE_URL is not set/);
  assert.match(await logs(h), /fatal: DATABASE_URL is not set/);
  assert.equal(cloud.driver.isRunning(h), false);
});

test('a failed start is retried by the next request (and fails the same way, without a stuck start)', async () => {
  const h = await cloud.publish(await procfileApp('process.exit(9);\n'), { name: 'always-fails' });
  const first = await cloud.visit(h);
  const second = await cloud.visit(h);
  assert.deepEqual([first.status, second.status], [502, 502], first.body + second.body);
  assert.match(second.body, /exited with code 9/);
  assert.equal((await logs(h)).match(/exited with code 9/g)?.length, 2, 'two attempts');
});

test('an explicit start of an app that cannot start is a 502 JSON error naming the reason', async () => {
  const h = await cloud.publish(await procfileApp('process.exit(5);\n'), { name: 'no-start' });
  const r = await cloud.api('POST', `/v1/instances/${h}/start`);
  assert.equal(r.status, 502, r.text);
  const e = (r.json as { error: { code: string; message: string } }).error;
  assert.equal(e.code, 'START_FAILED');
  assert.match(e.message, /exited with code 5/);
});
