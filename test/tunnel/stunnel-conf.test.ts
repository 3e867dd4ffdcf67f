// The client stunnel.conf has exactly the documented shape, and stunnel.conf
// files shipped in archives are read with precise errors.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EphError } from '../../src/core/errors.ts';
import { clientStunnelConf, parseStunnelConf } from '../../src/tunnel/stunnel-conf.ts';

test('clientStunnelConf gives exactly the shape of issue 5 §4', () => {
  assert.equal(
    clientStunnelConf({ service: 'mydb', accept: '127.0.0.1:5432', connect: 'db.example.org:40123' }),
    '[mydb]\nclient = yes\naccept = 127.0.0.1:5432\nconnect = db.example.org:40123\nPSKsecrets = psk.txt\n',
  );
  assert.match(
    clientStunnelConf({ service: 'cache', accept: '127.0.0.1:6379', connect: 'h:1', pskFile: 'cache-psk.txt' }),
    /\nPSKsecrets = cache-psk\.txt\n$/,
  );
});

test('clientStunnelConf refuses values that would inject options', () => {
  assert.throws(
    () => clientStunnelConf({ service: 'mydb', accept: '127.0.0.1:5432', connect: 'h:1\nexec = /bin/sh' }),
    (e: unknown) => e instanceof EphError && e.code === 'INVALID_VALUE' && /connect/.test(e.message),
  );
  assert.throws(() => clientStunnelConf({ service: 'my]db', accept: '127.0.0.1:5432', connect: 'h:1' }), EphError);
  assert.throws(() => clientStunnelConf({ service: ' ', accept: '127.0.0.1:5432', connect: 'h:1' }), EphError);
});

test('parseStunnelConf reads what clientStunnelConf writes', () => {
  const conf = parseStunnelConf(clientStunnelConf({ service: 'mydb', accept: '127.0.0.1:5432', connect: 'db.example.org:40123' }));
  assert.deepEqual(conf.global, {});
  assert.equal(conf.sections.length, 1);
  assert.equal(conf.sections[0]!.name, 'mydb');
  assert.equal(conf.sections[0]!.line, 1);
  assert.deepEqual(conf.sections[0]!.options, {
    client: 'yes',
    accept: '127.0.0.1:5432',
    connect: 'db.example.org:40123',
    psksecrets: 'psk.txt',
  });
});

test('parseStunnelConf: global options, comments, CRLF, case-insensitive names, repeated connect', () => {
  const text = [
    '; stunnel.conf shipped with the app',
    'foreground = yes',
    '',
    '[db]',
    '# primary, then replica',
    'Client = yes',
    'ACCEPT = 127.0.0.1:5432',
    'connect = a.example.org:5000',
    'connect = b.example.org:5000',
    'PSKsecrets = psk.txt',
    '[ cache ]',
    'accept=127.0.0.1:6379',
    'connect=c.example.org:5001',
  ].join('\r\n');
  const conf = parseStunnelConf(text);
  assert.deepEqual(conf.global, { foreground: 'yes' });
  assert.deepEqual(conf.sections.map((s) => [s.name, s.line]), [['db', 4], ['cache', 11]]);
  const db = conf.sections[0]!;
  assert.equal(db.options.client, 'yes');
  assert.equal(db.options.accept, '127.0.0.1:5432');
  assert.deepEqual(db.all.connect, ['a.example.org:5000', 'b.example.org:5000']);
  assert.equal(conf.sections[1]!.options.connect, 'c.example.org:5001');
});

test('parseStunnelConf errors name the line', () => {
  const err = (text: string): string => {
    try {
      parseStunnelConf(text);
    } catch (e) {
      assert.ok(e instanceof EphError);
      assert.equal(e.code, 'INVALID_CONFIG');
      return e.message;
    }
    assert.fail('accepted');
  };
  assert.equal(err('[db]\nclient yes\n'), "stunnel.conf line 2: expected NAME = VALUE, got 'client yes'");
  assert.equal(err('[db\n'), "stunnel.conf line 1: expected [SECTION], got '[db'");
  assert.equal(err('[]\n'), 'stunnel.conf line 1: empty section name');
  assert.equal(err('[db]\naccept = 1\n[db]\n'), 'stunnel.conf line 3: section [db] repeated (first on line 1)');
  assert.equal(err('[db]\naccept = 1\nAccept = 2\n'), "stunnel.conf line 3: 'accept' repeated in [db]");
  assert.equal(err('= value\n'), "stunnel.conf line 1: expected NAME = VALUE, got '= value'");
  assert.equal(err('__proto__ = x\n'), "stunnel.conf line 1: expected NAME = VALUE, got '__proto__ = x'");
  assert.equal(err('constructor = x\nconstructor = y\n'), "stunnel.conf line 2: 'constructor' repeated in the global options");
});
