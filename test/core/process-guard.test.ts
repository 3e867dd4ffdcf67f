import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { EphError } from '../../src/core/errors.ts';
import { isContainedError } from '../../src/core/process-guard.ts';

/**
 * The policy of `eph serve` for errors that escape every handler, run in a
 * real Node process with the guard installed: the I/O error of one stream is
 * logged, counted and survived; a programming error is logged, counted and
 * ends the process with code 70.
 */
const GUARD = fileURLToPath(new URL('../../src/core/process-guard.ts', import.meta.url));

const SCRIPT = `
import { Writable } from 'node:stream';
const { installProcessGuard, escapedErrorCounts, escapedErrorMetrics } = await import(${JSON.stringify(GUARD)});
installProcessGuard({
  log: (fields, msg) => process.stderr.write(JSON.stringify({ ...fields, msg }) + '\\n'),
  exit: (code) => process.exit(code),
});
// What took the cloud down in issue 15: a stream ended while someone still wrote to it, without an 'error' listener.
const w = new Writable({ write(_c, _e, cb) { cb(); } });
w.end();
w.write('late');
// A rejected promise nobody awaits, with an I/O error.
void Promise.reject(Object.assign(new Error('write EPIPE'), { code: 'EPIPE', syscall: 'write' }));
setTimeout(() => {
  console.log(JSON.stringify(escapedErrorCounts()));
  console.log(JSON.stringify(escapedErrorMetrics()));
  // A bug: not an I/O error of one stream.
  setTimeout(() => { null.boom(); }, 0);
  setTimeout(() => console.log('still alive after a programming error'), 1000);
}, 100);
`;

function run(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', SCRIPT], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('an I/O error that escapes is logged, counted and contained; a programming error exits with code 70', async () => {
  const { code, stdout, stderr } = await run();
  const lines = stdout.trim().split('\n');
  assert.deepEqual(JSON.parse(lines[0]!), { uncaughtContained: 1, uncaughtFatal: 0, rejectionContained: 1, rejectionFatal: 0 }, stderr);
  assert.match(JSON.parse(lines[1]!) as string, /eph_escaped_errors_total\{kind="uncaught",outcome="contained"\} 1/);
  assert.doesNotMatch(stdout, /still alive/);
  assert.equal(code, 70);
  const logged = stderr.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { kind: string; fatal: boolean; code?: string; err: string });
  assert.deepEqual(logged.map((l) => [l.kind, l.fatal, l.code ?? null]), [
    ['uncaught', false, 'ERR_STREAM_WRITE_AFTER_END'],
    ['rejection', false, 'EPIPE'],
    ['uncaught', true, null],
  ]);
  assert.match(logged[2]!.err, /TypeError/);
});

test('which errors are contained: errno codes, stream state errors, EphErrors; not plain errors or non-errors', () => {
  const withCode = (code: string) => Object.assign(new Error(code), { code });
  assert.equal(isContainedError(withCode('ENOSPC')), true);
  assert.equal(isContainedError(withCode('ECONNRESET')), true);
  assert.equal(isContainedError(withCode('ERR_STREAM_DESTROYED')), true);
  assert.equal(isContainedError(new EphError('START_FAILED', 'the app exited')), true);
  assert.equal(isContainedError(withCode('ERR_INVALID_ARG_TYPE')), false);
  assert.equal(isContainedError(new TypeError('x is undefined')), false);
  assert.equal(isContainedError('ENOSPC'), false);
  assert.equal(isContainedError(null), false);
});
