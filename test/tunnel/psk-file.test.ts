// psk.txt is read the way stunnel reads it, and refused with the line number
// wherever stunnel would refuse it (or silently misread it).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { EphError } from '../../src/core/errors.ts';
import {
  choosePskIdentity,
  formatPskFile,
  generatePsk,
  parsePskFile,
  pskKeyBytes,
} from '../../src/tunnel/psk-file.ts';
import { NO_STUNNEL, STUNNEL, freePort, tempDir, writePskFile } from './fixtures.ts';

const run = promisify(execFile);

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

test('stunnel4 agrees: it loads every file we accept and refuses the short hex key we refuse', { skip: NO_STUNNEL, timeout: 20_000 }, async (t) => {
  const dir = tempDir(t);
  const check = async (psk: string): Promise<boolean> => {
    writePskFile(dir, psk);
    const port = await freePort();
    // stunnel has no config-check mode: it exits at once on a bad PSKsecrets
    // file and otherwise runs, so bound it to a second and read what it said.
    const conf = join(dir, 'check.conf');
    writeFileSync(conf, `foreground = yes\npid =\n[s]\naccept = 127.0.0.1:${port}\nconnect = 127.0.0.1:1\nPSKsecrets = psk.txt\nciphers = PSK\n`);
    const r = await run('timeout', ['1', STUNNEL!, conf], { cwd: dir }).catch((e: { stderr?: string }) => ({ stderr: e.stderr ?? '' }));
    return !/Failed to read PSK secrets|Configuration failed/.test(r.stderr);
  };
  const good = formatPskFile(parsePskFile('alice:correct horse battery\nci:00112233445566778899aabbccddeeff\nodd:0123456789abcdef0\n'));
  assert.equal(await check(good), true);
  assert.equal(await check('a:0123456789abcdef\n'), false);
  assert.throws(() => parsePskFile('a:0123456789abcdef\n'));
  assert.equal(await check('a:short\n'), false);
  assert.throws(() => parsePskFile('a:short\n'));
});
