import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { onPath } from '../../src/appliances/binaries.ts';
import { eph } from '../cli/run-eph.ts';
import { procfileApp, startTestCloud, type TestCloud } from '../helpers/cloud.ts';

/**
 * `eph config` and `eph appliance attach|detach` as a user types them: the
 * real CLI against a real cloud, one line per outcome, non-zero exits with
 * one line on failure, secrets redacted unless --reveal.
 */

const NO_STUNNEL = onPath('stunnel4') || onPath('stunnel') ? false : 'stunnel4 missing (Debian package stunnel4)';
const APP = `import { createServer } from 'node:http';
createServer((q, s) => s.end(process.env[decodeURIComponent(q.url.slice(1))] ?? '(unset)')).listen(Number(process.env.PORT));
`;

let cloud: TestCloud;
let env: Record<string, string>;
let host: string;

before(async () => {
  cloud = await startTestCloud({ publicBind: '0.0.0.0' });
  env = { EPH_URL: cloud.apiUrl, EPH_USER: cloud.alice.id, EPH_TOKEN: cloud.alice.token };
  host = await cloud.publish(await procfileApp(APP));
});
after(async () => {
  await cloud?.close();
});

test('eph config set / show / --reveal / unset, and the app sees the vars after --restart', async () => {
  const set = await eph(['config', 'set', host, 'GREETING=hello=world', 'EMPTY='], { env });
  assert.equal(set.code, 0, set.stderr);
  assert.match(set.stdout, /^set GREETING, EMPTY on .*: the app sees it at its next start \(--restart to restart it now\)\n$/);
  const asleep = await eph(['config', 'set', host, 'TOKEN=first', '--restart'], { env });
  assert.match(asleep.stdout, /not running: the app sees it when it starts\n$/);
  assert.equal((await cloud.visit(host, '/TOKEN')).body, 'first');
  const secret = await eph(['config', 'set', host, 'TOKEN=top secret value', '--secret', '--restart'], { env });
  assert.equal(secret.code, 0, secret.stderr);
  assert.match(secret.stdout, /\(secret\) on .*restarted: the app sees it now/);

  const shown = await eph(['config', host], { env });
  assert.equal(shown.code, 0, shown.stderr);
  assert.equal(shown.stdout, 'EMPTY=\nGREETING=hello=world\nTOKEN=********  (secret)\n');
  assert.ok(!shown.stdout.includes('top secret'));
  const revealed = await eph(['config', host, '--reveal'], { env });
  assert.match(revealed.stdout, /^TOKEN="top secret value" {2}\(secret\)$/m);
  const json = await eph(['config', host, '--json'], { env });
  assert.equal((JSON.parse(json.stdout) as { vars: unknown[] }).vars.length, 3);

  assert.equal((await cloud.visit(host, '/TOKEN')).body, 'top secret value');
  assert.equal((await cloud.visit(host, '/GREETING')).body, 'hello=world');

  const unset = await eph(['config', 'unset', host, 'EMPTY', 'GREETING'], { env });
  assert.equal(unset.code, 0, unset.stderr);
  assert.equal((await eph(['config', host], { env })).stdout, 'TOKEN=********  (secret)\n');
});

test('bad input: one line and a non-zero exit, nothing changed', async () => {
  const before = (await eph(['config', host, '--reveal'], { env })).stdout;
  for (const [args, reason] of [
    [['config', 'set', host, 'NOEQUALS'], /expected KEY=VALUE, got 'NOEQUALS'/],
    [['config', 'set', host, 'PATH=/evil'], /config var name 'PATH' is reserved/],
    [['config', 'set', host, 'LD_PRELOAD=/x.so'], /reserved/],
    [['config', 'set', host, 'A=1', 'A=2'], /A is given twice/],
    [['config', 'unset', host, 'NEVER_SET'], /NEVER_SET not set/],
    [['config', 'eph-00000000.eph.test'], /not found/],
    [['appliance', 'attach', 'nosuchdb', host], /appliance 'nosuchdb' not found/],
    [['appliance', 'detach', 'nosuchdb', host], /not attached/],
  ] as const) {
    const r = await eph(args, { env });
    assert.notEqual(r.code, 0, `${args.join(' ')}: ${r.stdout}`);
    assert.match(r.stderr, reason);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  assert.equal((await eph(['config', host, '--reveal'], { env })).stdout, before);
});

test('eph appliance attach / detach set and remove the config var', { skip: NO_STUNNEL }, async () => {
  const created = await cloud.api('POST', '/v1/appliances', { body: { kind: 'static', name: `cli${process.pid}` } });
  assert.equal(created.status, 201, created.text);
  const name = `cli${process.pid}`;
  const a = await eph(['appliance', 'attach', name, host, '--as', 'FILES_URL'], { env });
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stdout, new RegExp(`^attached ${name} to ${host.replace(/\./g, '\\.')} as FILES_URL \\(tunnel on 127\\.0\\.0\\.1:\\d+ inside\\): the app sees it at its next start`));
  assert.match((await eph(['config', host], { env })).stdout, new RegExp(`^FILES_URL=\\*{8} {2}\\(secret, attachment ${name}\\)$`, 'm'));
  const d = await eph(['appliance', 'detach', name, host], { env });
  assert.equal(d.code, 0, d.stderr);
  assert.match(d.stdout, /^detached .*: FILES_URL is gone/);
  assert.doesNotMatch((await eph(['config', host], { env })).stdout, /FILES_URL/);
});
