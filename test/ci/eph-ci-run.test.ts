/**
 * The testing environment end to end: `eph ci run` (the real CLI as a child process) and the plain
 * bash + curl script against a real cloud, with the example app that runs its own unit tests.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { buildZip } from '../helpers/archives.ts';
import { startTestCloud, type TestCloud, type TestUser } from '../helpers/cloud.ts';
import { eph, spawnEph } from '../cli/run-eph.ts';

const APP = resolve('examples/ci-app');
const SCRIPT = resolve('examples/ci/ephemeric-ci.sh');
const NO_GIT = spawnSync('git', ['--version']).status === 0 ? false : 'git is not installed (Debian package git)';
const NO_CURL = spawnSync('curl', ['--version']).status === 0 ? false : 'curl is not installed (Debian package curl)';

let cloud: TestCloud;
let work: string;

/** A copy of the example app; `fail` selects the variant whose rounding test fails. */
function project(fail: boolean): string {
  const dir = mkdtempSync(join(work, 'app-'));
  cpSync(APP, dir, { recursive: true });
  writeFileSync(join(dir, 'variant.json'), JSON.stringify({ fail }));
  return dir;
}

const envOf = (u: TestUser) => ({ EPH_URL: cloud.apiUrl, EPH_USER: u.id, EPH_TOKEN: u.token, EPH_GATE_URL: cloud.gateUrl });

async function instancesOf(u: TestUser): Promise<{ hostname: string; state: string }[]> {
  const r = await cloud.api('GET', '/v1/instances', { user: u });
  return (r.json as { instances: { hostname: string; state: string }[] }).instances;
}

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'eph-ci-test-'));
  cloud = await startTestCloud({}, { ciReapIntervalMs: 200 });
});

after(async () => {
  await cloud?.close();
  rmSync(work, { recursive: true, force: true });
});

test('a passing project: exit 0, JUnit with every test, promoted (route and kept instance), run recorded', { timeout: 180_000 }, async () => {
  const junit = join(work, 'pass.xml');
  const domain = 'beta.ci-pass.example';
  const r = await eph(
    ['ci', 'run', project(false), '--test', 'http:/tests', '--test', 'http:/tests?format=junit', '--test', `cmd:'curl -fsS -H "Host: $EPH_INSTANCE_HOST" "$EPH_GATE_URL/"'`, '--promote', domain, '--junit', junit],
    { env: envOf(cloud.alice), timeoutMs: 150_000 },
  );
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stderr, /publish/);
  assert.match(r.stdout, /passed, 7 passed, 0 failed/);
  const xml = readFileSync(junit, 'utf8');
  assert.equal((xml.match(/<testcase /g) ?? []).length, 7);
  assert.doesNotMatch(xml, /<failure/);
  // Promoted: the domain answers with the app, and its instance stayed.
  const visit = await cloud.visit(domain, '/');
  assert.equal(visit.status, 200);
  assert.match(visit.body, /ci-app/);
  const left = await instancesOf(cloud.alice);
  assert.equal(left.length, 1);
  const ls = await eph(['ci', 'ls', '--json'], { env: envOf(cloud.alice) });
  const run = (JSON.parse(ls.stdout) as { runs: { id: string; status: string; promotedTo: string; hostname: string; tests: unknown[] }[] }).runs[0]!;
  assert.equal(run.status, 'passed');
  assert.equal(run.promotedTo, domain);
  assert.equal(run.hostname, left[0]!.hostname);
  assert.equal(run.tests.length, 7);
  // Clean up for the next tests: the route, then the kept instance.
  assert.equal((await cloud.api('DELETE', `/v1/gate/routes/${domain}`)).status, 200);
  assert.equal((await cloud.api('DELETE', `/v1/instances/${run.hostname}`)).status, 200);
});

test('a failing project: exit 1, the failure in JUnit and in the run, not promoted, no instance left', { timeout: 180_000 }, async () => {
  const junit = join(work, 'fail.xml');
  const domain = 'beta.ci-fail.example';
  const r = await eph(['ci', 'run', project(true), '--test', 'http:/tests', '--promote', domain, '--junit', junit, '--json'], { env: envOf(cloud.alice), timeoutMs: 150_000 });
  assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
  const run = JSON.parse(r.stdout) as { id: string; status: string; promotedTo: string | null; logExcerpt: string; tests: { name: string; status: string }[] };
  assert.equal(run.status, 'failed');
  assert.equal(run.promotedTo, null);
  assert.deepEqual(run.tests.filter((t) => t.status === 'fail').map((t) => t.name), ['withTax rounds to cents']);
  assert.match(run.logExcerpt, /ci-app listening/);
  assert.match(readFileSync(junit, 'utf8'), /<testcase classname="http:\/tests" name="withTax rounds to cents"[^>]*><failure/);
  assert.equal((await cloud.api('GET', `/v1/gate/routes/${domain}`)).status, 404);
  assert.deepEqual(await instancesOf(cloud.alice), []);
  // The other API sees the same record.
  const show = await eph(['ci', 'show', run.id], { env: envOf(cloud.alice) });
  assert.equal(show.code, 0);
  assert.match(show.stdout, /status:\s+failed/);
});

test('--git clones a repository at a ref, builds with --build and tests what it built', { skip: NO_GIT, timeout: 180_000 }, async () => {
  const src = project(false);
  const git = (...a: string[]) => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.org', ...a], { cwd: src, stdio: 'pipe' });
  git('init', '-q');
  git('add', '.');
  git('commit', '-qm', 'good');
  git('tag', 'v1');
  // A later commit breaks the app: testing the tag must not see it.
  writeFileSync(join(src, 'variant.json'), '{"fail": true}');
  git('commit', '-qam', 'bad');
  const bare = join(work, 'repo.git');
  execFileSync('git', ['clone', '-q', '--bare', src, bare]);
  const r = await eph(['ci', 'run', '--git', bare, '--ref', 'v1', '--build', 'test -f variant.json && tar czf "$EPH_ARCHIVE" .', '--test', 'http:/tests'], { env: envOf(cloud.alice), timeoutMs: 150_000 });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stderr, /repo\.git@v1/);
  const head = await eph(['ci', 'run', '--git', bare, '--test', 'http:/tests'], { env: envOf(cloud.alice), timeoutMs: 150_000 });
  assert.equal(head.code, 1, `${head.stdout}\n${head.stderr}`);
  assert.deepEqual(await instancesOf(cloud.alice), []);
});

test('the bash + curl script over the compat API: 0 for a passing app, 1 for a failing one, nothing left', { skip: NO_CURL, timeout: 180_000 }, async () => {
  for (const [fail, code] of [
    [false, 0],
    [true, 1],
  ] as const) {
    const zip = join(work, `app-${fail}.zip`);
    writeFileSync(zip, await buildZip(project(fail)));
    // Not spawnSync: the cloud answering the script runs in this process.
    const r = await new Promise<{ status: number | null; stdout: string; stderr: string }>((done) => {
      const child = spawn('bash', [SCRIPT, zip, '/tests'], { env: { ...process.env, ...envOf(cloud.alice) } });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 150_000);
      child.once('close', (status) => {
        clearTimeout(timer);
        done({ status, stdout, stderr });
      });
    });
    assert.equal(r.status, code, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /3 tests, \d failed/);
    assert.match(r.stderr, /deleted eph-/);
    assert.deepEqual(await instancesOf(cloud.alice), []);
  }
});

test('a client killed with SIGKILL mid-test: the server deletes its instance when the time to live passes', { timeout: 180_000 }, async () => {
  const child = spawnEph(['ci', 'run', project(false), '--test', 'cmd:sleep 300', '--ttl', '12s', '--timeout', '10m'], { env: envOf(cloud.alice) });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  try {
    assert.deepEqual(await instancesOf(cloud.alice), [], 'no instance before the run');
    const host = await until('the run to reach its test step', async () => (/\btest cmd:sleep 300/.test(stderr) ? (await instancesOf(cloud.alice))[0]?.hostname : undefined), 120_000);
    assert.equal((await instancesOf(cloud.alice))[0]!.state, 'running');
    child.kill('SIGKILL');
    const runs = await until('the run to time out', async () => {
      const r = (await cloud.api('GET', '/v1/ci/runs')).json as { runs: { hostname: string; status: string }[] };
      const mine = r.runs.find((x) => x.hostname === host);
      return mine?.status === 'timed-out' ? r : undefined;
    });
    assert.ok(runs);
    assert.deepEqual(await instancesOf(cloud.alice), []);
  } finally {
    child.kill('SIGKILL');
  }
});

test('quota full: the run ends as an infrastructure failure (exit 3) naming the plan limit; its instance is deleted', { timeout: 180_000 }, async () => {
  const bob = await cloud.addUser('bob', 'free');
  const busy = await cloud.publish(await buildZip(project(false)), { user: bob });
  assert.equal((await cloud.api('POST', `/v1/instances/${busy}/start`, { user: bob })).status, 200);
  const r = await eph(['ci', 'run', project(false), '--test', 'http:/tests'], { env: envOf(bob), timeoutMs: 150_000 });
  assert.equal(r.code, 3, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stderr, /plan 'free' allows 1 running instance/);
  assert.deepEqual((await instancesOf(bob)).map((i) => i.hostname), [busy]);
  const runs = (await cloud.api('GET', '/v1/ci/runs', { user: bob })).json as { runs: { status: string; error: string }[] };
  assert.equal(runs.runs[0]!.status, 'error');
});

test("another user's run is not found on every CI route, and bad input changes nothing", { timeout: 60_000 }, async () => {
  const eve = await cloud.addUser('eve');
  const created = await cloud.api('POST', '/v1/ci/runs', { body: { name: 'mine', ttlSeconds: 600 } });
  assert.equal(created.status, 201);
  const id = (created.json as { id: string }).id;
  for (const [method, path] of [
    ['GET', `/v1/ci/runs/${id}`],
    ['GET', `/v1/ci/runs/${id}/junit`],
    ['POST', `/v1/ci/runs/${id}/finish`],
    ['POST', `/v1/ci/runs/${id}/archive`],
  ] as const) {
    const r = await cloud.api(method, path, { user: eve, ...(method === 'POST' ? { body: path.endsWith('finish') ? { status: 'passed' } : Buffer.from('PK') } : {}), ...(path.endsWith('archive') ? { headers: { 'content-type': 'application/zip' } } : {}) });
    assert.equal(r.status, 404, `${method} ${path}: ${r.text}`);
  }
  assert.deepEqual(((await cloud.api('GET', '/v1/ci/runs', { user: eve })).json as { runs: unknown[] }).runs, []);
  const bad = await cloud.api('POST', `/v1/ci/runs/${id}/finish`, { body: { status: 'bogus' } });
  assert.equal(bad.status, 400);
  assert.equal((await cloud.api('POST', '/v1/ci/runs', { body: { ttlSeconds: 1 } })).status, 400);
  assert.equal((await cloud.api('POST', '/v1/ci/runs', { body: { nope: 1 } })).status, 400);
  const still = (await cloud.api('GET', `/v1/ci/runs/${id}`)).json as { status: string };
  assert.equal(still.status, 'running');
  assert.equal((await cloud.api('POST', `/v1/ci/runs/${id}/finish`, { body: { status: 'interrupted' } })).status, 200);
  assert.ok(!existsSync(join(cloud.dataDir, 'nothing')));
});
