// litmus (the WebDAV server test suite, Debian package litmus) against a
// static site's share on the real cloud, the way a user's client reaches it:
// the API's URL /v1/appliances/NAME/dav/, HTTP Basic with the user's id and
// token. Suites basic, copymove, props and locks must pass with no failure
// (litmus's warnings are not failures, as litmus itself counts them).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { startCloudFixture } from '../cli/cloud.fixtures.ts';
import type { CloudFixture } from '../cli/cloud.fixtures.ts';

const LITMUS = '/usr/bin/litmus';
const SUITES = ['basic', 'copymove', 'props', 'locks'];
const skip = existsSync(LITMUS) ? false : `${LITMUS} missing (install the Debian package litmus)`;

const cleanups: (() => Promise<void>)[] = [];
let fx: CloudFixture;
let share: string;
let token: string;

before(async () => {
  if (skip) return;
  fx = await startCloudFixture((fn) => void cleanups.push(fn));
  token = fx.env.EPH_TOKEN!;
  const auth = `Basic ${Buffer.from(`${fx.user.id}:${token}`).toString('base64')}`;
  const created = await request(`${fx.cloud.apiUrl}/v1/appliances`, {
    method: 'POST',
    headers: { authorization: auth, 'content-type': 'application/json' },
    body: JSON.stringify({ kind: 'static', name: `litmus${process.pid}` }),
  });
  assert.equal(created.statusCode, 201, await created.body.text());
  share = `${fx.cloud.apiUrl}/v1/appliances/litmus${process.pid}/dav/`;
});
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

interface Summary {
  run: number;
  passed: number;
  failed: number;
}

/** Runs litmus; answers its output and the summary of each suite. */
async function litmus(url: string, user: string, pass: string): Promise<{ output: string; summaries: Map<string, Summary> }> {
  const cwd = await mkdtemp(join(tmpdir(), 'eph-litmus-'));
  try {
    const child = spawn(LITMUS, ['-k', url, user, pass], { cwd, env: { ...process.env, TESTS: SUITES.join(' ') }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (output += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (output += c));
    const killer = setTimeout(() => child.kill('SIGKILL'), 240_000);
    await new Promise<void>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', () => resolve());
    });
    clearTimeout(killer);
    const summaries = new Map<string, Summary>();
    for (const m of output.matchAll(/<- summary for `(\w+)': of (\d+) tests run: (\d+) passed, (\d+) failed/g)) {
      summaries.set(m[1]!, { run: Number(m[2]), passed: Number(m[3]), failed: Number(m[4]) });
    }
    return { output, summaries };
  } finally {
    await rm(cwd, { recursive: true, force: true });
  }
}

/** The failed tests as `suite: name (litmus's reason)`. */
function failures(output: string): string[] {
  const out: string[] = [];
  let suite = '?';
  for (const line of output.split(/\r?\n/)) {
    const s = /^-> running `(\w+)'/.exec(line);
    if (s) suite = s[1]!;
    const f = /(\d+)\.\s+(\w+)\.*\s+FAIL\s*(.*)$/.exec(line);
    if (f) out.push(`${suite}: ${f[1]}. ${f[2]} ${f[3]}`.trim());
  }
  return out;
}

test('litmus basic, copymove, props and locks pass against a static site share on the real cloud', { skip, timeout: 300_000 }, async () => {
  const { output, summaries } = await litmus(share, fx.user.id, token);
  const failed = failures(output);
  assert.deepEqual(failed, [], `litmus failures:\n${failed.join('\n')}`);
  for (const suite of SUITES) {
    const s = summaries.get(suite);
    assert.ok(s, `no summary for the ${suite} suite (skipped?):\n${output.slice(-3000)}`);
    assert.equal(s.failed, 0, `${suite}: ${s.failed} failed`);
    assert.equal(s.passed, s.run, `${suite}: ${s.passed} of ${s.run} passed`);
  }
  // Class 2: the locks suite runs its tests instead of skipping them after "init".
  assert.ok(summaries.get('locks')!.run > 30, `locks ran ${summaries.get('locks')!.run} tests`);
});

test('litmus with a wrong token, or with another user\'s own credentials, gets nowhere and writes nothing', { skip, timeout: 300_000 }, async () => {
  const files = async (): Promise<unknown> => {
    const r = await request(`${fx.cloud.apiUrl}/v1/appliances/litmus${process.pid}/files`, {
      headers: { authorization: `Basic ${Buffer.from(`${fx.user.id}:${token}`).toString('base64')}` },
    });
    assert.equal(r.statusCode, 200);
    return r.body.json();
  };
  const before = await files();
  const wrong = await litmus(share, fx.user.id, `${token}x`);
  assert.match(wrong.output, /Could not authenticate|rejected Basic challenge/, wrong.output.slice(-2000));
  const bob = await fx.cloud.users.add(`bob${process.pid}`, 'standard');
  const other = await litmus(share, bob.user.id, bob.token);
  // Another user's share is not found (404), as every appliance route of another user.
  assert.match(other.output, /begin\.+\s+FAIL \(Could not create new collection[^\n]*404/, other.output.slice(-2000));
  for (const run of [wrong, other]) {
    for (const suite of SUITES) assert.ok((run.summaries.get(suite)?.passed ?? 0) <= 1, `${suite} went past begin:\n${run.output.slice(-2000)}`);
  }
  assert.deepEqual(await files(), before);
});
