// psk.txt is read the way stunnel reads it, and refused with the line number
// wherever stunnel would refuse it (or silently misread it).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { EphError } from '../../src/core/errors.ts';
import {
  choosePskIdentity,
  formatPskFile,
  generatePsk,
  parsePskFile,
  pskKeyBytes,
} from '../../src/tunnel/psk-file.ts';
import { NO_STUNNEL, STUNNEL, freePort, tempDir, writePskFile } from './fixtures.ts';

function refusal(text: string): string {
  try {
    parsePskFile(text);
  } catch (e) {
    assert.ok(e instanceof EphError);
    assert.equal(e.code, 'INVALID_VALUE');
    assert.equal(e.status, 400);
    return e.message;
  }
  assert.fail(`accepted ${JSON.stringify(text)}`);
}

test('reads identities and keys as written, skipping blank lines, # comments and CRs', () => {
  const text = '# laptops\r\nalice:correct horse battery\r\n\n   \nci:00112233445566778899AABBCCDDEEFF\n';
  assert.deepEqual([...parsePskFile(text)], [
    ['alice', 'correct horse battery'],
    ['ci', '00112233445566778899AABBCCDDEEFF'],
  ]);
});

test('splits at the first colon: the key may contain colons', () => {
  assert.equal(parsePskFile('id:abc:defghijklmnopqr').get('id'), 'abc:defghijklmnopqr');
});

test('malformed lines are refused with their line number', () => {
  assert.equal(
    refusal('alice:correct horse battery\n\nno colon here\n'),
    'psk.txt line 3: expected IDENTITY:KEY with a key of at least 16 characters',
  );
  assert.equal(refusal('alice:short\n'), 'psk.txt line 1: expected IDENTITY:KEY with a key of at least 16 characters');
  assert.equal(refusal('alice:\n'), 'psk.txt line 1: expected IDENTITY:KEY with a key of at least 16 characters');
  assert.equal(refusal(':correct horse battery\n'), 'psk.txt line 1: empty identity before ":"');
  assert.match(refusal('al ice:correct horse battery\n'), /^psk\.txt line 1: identity "al ice" may only hold printable ASCII/);
  assert.match(refusal('alice: correct horse battery\n'), /^psk\.txt line 1: the key starts or ends with a space/);
  assert.match(refusal(`${'x'.repeat(129)}:correct horse battery\n`), /^psk\.txt line 1: identity is longer than 128 bytes/);
});

test('duplicate identities are refused, naming both lines', () => {
  assert.equal(
    refusal('alice:correct horse battery\nbob:correct horse battery\nalice:another key of enough length\n'),
    'psk.txt line 3: duplicate identity "alice" (first on line 1)',
  );
});

test('an empty file is refused', () => {
  assert.equal(refusal('# nothing\n\n'), 'psk.txt: no IDENTITY:KEY line');
});

test('hex keys count their decoded bytes, as stunnel does', () => {
  // 16 ASCII characters would pass, but these 16 hex digits are only 8 bytes.
  assert.match(refusal('a:0123456789abcdef\n'), /^psk\.txt line 1: the key is 8 bytes written in hexadecimal; at least 16 bytes \(32 hex digits\)/);
  // Odd length: not hex, so 17 ASCII bytes.
  assert.equal(parsePskFile('a:0123456789abcdef0\n').get('a'), '0123456789abcdef0');
  assert.equal(parsePskFile('a:00112233445566778899aabbccddeeff\n').size, 1);
});

test('pskKeyBytes: even-length hex is binary, anything else is UTF-8', () => {
  assert.deepEqual(pskKeyBytes('00ff10'), Buffer.from([0, 255, 16]));
  assert.deepEqual(pskKeyBytes('00FF10'), Buffer.from([0, 255, 16]));
  assert.deepEqual(pskKeyBytes('00ff1'), Buffer.from('00ff1', 'utf8'));
  assert.deepEqual(pskKeyBytes('correct horse'), Buffer.from('correct horse', 'utf8'));
  assert.deepEqual(pskKeyBytes('clé'), Buffer.from([0x63, 0x6c, 0xc3, 0xa9]));
});

test('formatPskFile writes what parsePskFile reads, from a Map or a record, without comments', () => {
  const map = new Map([
    ['alice', 'correct horse battery'],
    ['ci', '00112233445566778899aabbccddeeff'],
  ]);
  const text = formatPskFile(map);
  assert.equal(text, 'alice:correct horse battery\nci:00112233445566778899aabbccddeeff\n');
  assert.deepEqual(parsePskFile(text), map);
  assert.equal(formatPskFile(Object.fromEntries(map)), text);
  assert.throws(() => formatPskFile({ alice: 'short' }), /psk\.txt line 1: expected IDENTITY:KEY/);
  assert.throws(() => formatPskFile({}), /no IDENTITY:KEY line/);
});

test('generatePsk gives a fresh 32-byte hex key for a valid identity', () => {
  const a = generatePsk('laptop');
  const b = generatePsk('laptop');
  assert.match(a, /^laptop:[0-9a-f]{64}$/);
  assert.notEqual(a, b);
  assert.equal(pskKeyBytes(parsePskFile(a).get('laptop')!).length, 32);
  assert.throws(() => generatePsk('two words'), EphError);
  assert.throws(() => generatePsk(''), EphError);
});

test('choosePskIdentity takes the first identity unless one is named', () => {
  const map = parsePskFile('first:correct horse battery\nsecond:00112233445566778899aabbccddeeff\n');
  assert.deepEqual(choosePskIdentity(map), { identity: 'first', key: 'correct horse battery' });
  assert.deepEqual(choosePskIdentity(map, 'second'), { identity: 'second', key: '00112233445566778899aabbccddeeff' });
  assert.throws(() => choosePskIdentity(map, 'third'), /psk\.txt has no identity "third"/);
});

/**
 * What real stunnel4 says of a psk.txt: 'accepted' once it logs
 * "Configuration successful" (it is then stopped), 'refused' when it exits
 * having logged that it could not read the secrets. stunnel has no
 * config-check mode, so wait for one of these two signals.
 */
async function stunnelVerdict(dir: string, psk: string): Promise<'accepted' | 'refused'> {
  writePskFile(dir, psk);
  const port = await freePort();
  const conf = join(dir, `check-${process.pid}-${Math.random().toString(36).slice(2)}.conf`);
  writeFileSync(conf, `foreground = yes\npid =\ndebug = 5\n[s]\naccept = 127.0.0.1:${port}\nconnect = 127.0.0.1:1\nPSKsecrets = psk.txt\nciphers = PSK\n`);
  const child = spawn('timeout', ['60', STUNNEL!, conf], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  return new Promise((resolve, reject) => {
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      log += d;
      if (/Configuration successful/.test(log)) {
        child.kill('SIGTERM');
        resolve('accepted');
      }
    });
    child.once('close', () => {
      if (/Failed to read PSK secrets|Configuration failed/.test(log)) resolve('refused');
      else reject(new Error(`stunnel4 stopped without a verdict:\n${log}`));
    });
  });
}

/** Our verdict on the same psk.txt. */
function ourVerdict(psk: string): 'accepted' | 'refused' {
  try {
    parsePskFile(psk);
    return 'accepted';
  } catch {
    return 'refused';
  }
}

// The 15/16-byte boundary, both ways of writing a key: ASCII (its bytes),
// hexadecimal (its decoded bytes) and non-ASCII UTF-8 (bytes, not characters).
const BOUNDARY: [string, string, 'accepted' | 'refused'][] = [
  ['9 ASCII bytes', 'a:ninebytes', 'refused'],
  ['15 ASCII bytes', 'a:fifteen-bytes!!', 'refused'],
  ['16 ASCII bytes', 'a:sixteen-bytes!!!', 'accepted'],
  ['15 bytes in hex (30 digits)', `a:${'ab'.repeat(15)}`, 'refused'],
  ['16 bytes in hex (32 digits)', `a:${'ab'.repeat(16)}`, 'accepted'],
  ['8 characters, 15 UTF-8 bytes', 'a:ééééééé!', 'refused'],
  ['8 characters, 16 UTF-8 bytes', 'a:éééééééé', 'accepted'],
];

test('key length: 9 and 15 bytes are refused, 16 accepted (ASCII, hex, UTF-8)', () => {
  for (const [what, line, verdict] of BOUNDARY) {
    assert.equal(ourVerdict(`${line}\n`), verdict, what);
  }
  assert.equal(refusal('a:fifteen-bytes!!\n'), 'psk.txt line 1: expected IDENTITY:KEY with a key of at least 16 characters');
  assert.match(refusal(`a:${'ab'.repeat(15)}\n`), /^psk\.txt line 1: the key is 15 bytes written in hexadecimal; at least 16 bytes \(32 hex digits\)/);
});

test('stunnel4 agrees on both sides of the 16-byte boundary, and loads every file we accept', { skip: NO_STUNNEL, timeout: 120_000 }, async (t) => {
  const dir = tempDir(t);
  for (const [what, line, verdict] of BOUNDARY) {
    assert.equal(await stunnelVerdict(dir, `${line}\n`), verdict, `stunnel4 on ${what}`);
    assert.equal(ourVerdict(`${line}\n`), verdict, `parsePskFile on ${what}`);
  }
  const good = formatPskFile(parsePskFile('alice:correct horse battery\nci:00112233445566778899aabbccddeeff\nodd:0123456789abcdef0\n'));
  assert.equal(await stunnelVerdict(dir, good), 'accepted');
  assert.equal(await stunnelVerdict(dir, 'a:0123456789abcdef\n'), 'refused');
  assert.throws(() => parsePskFile('a:0123456789abcdef\n'));
  assert.equal(await stunnelVerdict(dir, 'a:short\n'), 'refused');
  assert.throws(() => parsePskFile('a:short\n'));
});
