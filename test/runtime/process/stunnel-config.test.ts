import { test } from 'node:test';
import assert from 'node:assert/strict';
import { instanceStunnelConfig, withStunnel } from '../../../src/runtime/process/stunnel.ts';
import { execFileSync } from 'node:child_process';

test('the instance copy of stunnel.conf forces foreground and no pid file, and drops options the sandbox cannot honour', () => {
  const src = ['foreground = no', 'pid = /var/run/stunnel.pid', 'setuid = stunnel4', 'output = /var/log/stunnel.log', '', '[db]', 'client = yes', 'accept = 127.0.0.1:5432', 'connect = db.example.org:27037', 'PSKsecrets = psk.txt'].join('\r\n');
  const out = instanceStunnelConfig(src);
  const lines = out.split('\n');
  assert.deepEqual(lines.slice(1, 3), ['foreground = yes', 'pid =']);
  assert.doesNotMatch(out, /foreground = no|\/var\/run|setuid|\/var\/log|\r/);
  // Service sections come after the global options, unchanged.
  assert.ok(out.endsWith('[db]\nclient = yes\naccept = 127.0.0.1:5432\nconnect = db.example.org:27037\nPSKsecrets = psk.txt\n'));
});

test('withStunnel starts stunnel in the background and execs the app with its arguments intact', () => {
  const argv = withStunnel(['/bin/echo', 'app', 'with spaces', '$HOME'], '/bin/echo', 'stunnel-conf');
  const out = execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  assert.deepEqual(out.split('\n').filter(Boolean).sort(), ['app with spaces $HOME', 'stunnel-conf']);
});
