import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import type { InstanceView } from '../../src/api/views.ts';
import { startCloudFixture, type CloudFixture } from './cloud.fixtures.ts';
import { eph, outputWatcher, spawnEph, stopChild } from './run-eph.ts';

const HOSTNAME = /^eph-[0-9a-f]{8}\.eph\.localhost$/;

// One real cloud for the file: tests run in order and share its state.
let fx: CloudFixture;
const afterAll: (() => Promise<void>)[] = [];
before(async () => {
  fx = await startCloudFixture((fn) => afterAll.push(fn));
});
after(async () => {
  for (const fn of afterAll.reverse()) await fn();
});

let published: InstanceView;

test('publish --json --progress: the instance view on stdout, the progress bar on stderr', async () => {
  const r = await eph(['publish', fx.appZip, '--json', '--progress'], { env: fx.env });
  assert.equal(r.code, 0, r.stderr);
  published = JSON.parse(r.stdout) as InstanceView;
  assert.match(published.hostname, HOSTNAME);
  assert.equal(published.state, 'asleep');
  assert.equal(published.imageName, 'node-app.zip', 'the name defaults to the file name');
  assert.equal(published.url, `http://${published.hostname}:${fx.cloud.gatePort}/`);
  assert.equal(published.isRunning, false);
  assert.match(published.imageDigest, /^[0-9a-f]{64}$/);
  assert.match(r.stderr, /uploading node-app\.zip \[[=-]+\] 100% /, `progress bar on stderr: ${r.stderr}`);
  assert.ok(r.stderr.includes(`${fx.appZipBytes.length} B/${fx.appZipBytes.length} B`), r.stderr);
  // What the CLI said exists, exists.
  const stored = await fx.cloud.instances.get(fx.user, published.hostname);
  assert.equal(stored.imageName, 'node-app.zip');
});

test('publish --wait starts the instance and prints its URL; the gate serves it', async () => {
  const r = await eph(['publish', fx.appZip, '--name', 'shop', '--wait'], { env: fx.env, timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  const m = /^(eph-[0-9a-f]{8}\.eph\.localhost)  running  (http:\/\/\S+)\n$/.exec(r.stdout);
  assert.ok(m, `one line hostname, state, url: ${JSON.stringify(r.stdout)}`);
  assert.equal(m[2], `http://${m[1]}:${fx.cloud.gatePort}/`);
  assert.doesNotMatch(r.stderr, /\[=/, 'no progress bar when stderr is not a terminal');
  const inst = await fx.cloud.instances.get(fx.user, m[1]!);
  assert.equal(inst.state, 'running');
  assert.equal(inst.imageName, 'shop');
  const res = await fx.viaGate(m[1]!);
  assert.equal(res.status, 200);
  assert.equal(res.body, 'hello from node-app\n');
});

test('ls --json is the API list; ls prints a table', async () => {
  const [json, human] = await Promise.all([eph(['ls', '--json'], { env: fx.env }), eph(['ls'], { env: fx.env })]);
  assert.equal(json.code, 0, json.stderr);
  const list = JSON.parse(json.stdout) as { instances: InstanceView[] };
  assert.deepEqual(Object.keys(list), ['instances']);
  assert.deepEqual(list.instances.map((i) => i.imageName).sort(), ['node-app.zip', 'shop']);
  assert.equal(human.code, 0, human.stderr);
  const lines = human.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^HOSTNAME\s+STATE\s+ALIAS\s+NAME\s+ACCESSED$/);
  assert.equal(lines.length, 3);
  assert.ok(lines.some((l) => l.startsWith(published.hostname) && /\sasleep\s/.test(l) && l.includes('node-app.zip')));
});

test('alias sets and clears an alias; show finds the instance by it', async () => {
  const set = await eph(['alias', published.hostname, 'beta.example.org', '--json'], { env: fx.env });
  assert.equal(set.code, 0, set.stderr);
  assert.equal((JSON.parse(set.stdout) as InstanceView).alias, 'beta.example.org');
  const shown = await eph(['show', 'beta.example.org'], { env: fx.env });
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, new RegExp(`^hostname:\\s+${published.hostname.replace(/\./g, '\\.')}$`, 'm'));
  assert.match(shown.stdout, /^alias:\s+beta\.example\.org$/m);
  const cleared = await eph(['alias', published.hostname, '--clear'], { env: fx.env });
  assert.equal(cleared.code, 0, cleared.stderr);
  assert.equal(cleared.stdout, `${published.hostname}  no alias\n`);
  assert.equal((await fx.cloud.instances.get(fx.user, published.hostname)).alias, null);
});

test('logs shows the app output; logs -f keeps streaming new output until interrupted', async (t) => {
  const started = await eph(['start', published.hostname], { env: fx.env, timeoutMs: 60_000 });
  assert.equal(started.code, 0, started.stderr);
  assert.equal(started.stdout, `${published.hostname}  running  ${published.url}\n`);

  const json = await eph(['logs', published.hostname, '--json'], { env: fx.env });
  assert.equal(json.code, 0, json.stderr);
  const body = JSON.parse(json.stdout) as { hostname: string; log: string };
  assert.equal(body.hostname, published.hostname);
  assert.match(body.log, /node-app listening on 8080/);

  const follow = spawnEph(['logs', published.hostname, '-f'], { env: fx.env });
  t.after(() => stopChild(follow, 'SIGKILL'));
  const out = outputWatcher(follow.stdout);
  await out.waitFor(/node-app listening on 8080/);
  // A restart writes a second line to the same log while -f is attached.
  await fx.cloud.instances.stop(published.hostname);
  await fx.cloud.instances.setRunning(fx.user, published.hostname, true);
  await out.waitFor(/node-app listening on 8080[^]*node-app listening on 8080/);
  const end = await stopChild(follow);
  assert.equal(end.signal, 'SIGTERM');
});

test('stop, then rm; the removed instance is then not found (exit 1, one line)', async () => {
  const stopped = await eph(['stop', published.hostname, '--json'], { env: fx.env });
  assert.equal(stopped.code, 0, stopped.stderr);
  assert.equal((JSON.parse(stopped.stdout) as InstanceView).state, 'asleep');
  const removed = await eph(['rm', published.hostname], { env: fx.env });
  assert.equal(removed.code, 0, removed.stderr);
  assert.equal(removed.stdout, `deleted ${published.hostname}\n`);
  const gone = await eph(['show', published.hostname], { env: fx.env });
  assert.equal(gone.code, 1);
  assert.equal(gone.stdout, '');
  assert.match(gone.stderr, /^eph: [^\n]*not found[^\n]*\n$/);
});

test('wrong credentials against the real API: exit 1 with its message', async () => {
  const r = await eph(['ls'], { env: { ...fx.env, EPH_TOKEN: 'not-the-token' } });
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'eph: unknown user or wrong token\n');
});

test('publish --wait over the plan limit: exit 1 saying it was published but not started, with the quota reason', async () => {
  const { user: bob, token } = await fx.cloud.users.add('bob', 'free');
  const first = await fx.cloud.instances.publish(bob, Readable.from([fx.appZipBytes]), 'first');
  await fx.cloud.instances.setRunning(bob, first.hostname, true);
  const r = await eph(['publish', fx.appZip, '--wait'], { env: { ...fx.env, EPH_USER: bob.id, EPH_TOKEN: token }, timeoutMs: 60_000 });
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  const m = /^eph: published (eph-[0-9a-f]{8}\.eph\.localhost) but it did not start: ([^\n]+)\n$/.exec(r.stderr);
  assert.ok(m, r.stderr);
  assert.match(m[2]!, /free/, 'the reason names the plan');
  assert.equal((await fx.cloud.instances.get(bob, m[1]!)).state, 'asleep');
});
