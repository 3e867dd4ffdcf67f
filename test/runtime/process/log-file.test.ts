import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BoundedLog } from '../../../src/runtime/process/log-file.ts';
import { makeDir, removeDir } from './helpers.ts';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await removeDir(d);
});

async function tmp(): Promise<string> {
  const d = await makeDir({});
  dirs.push(d);
  return d;
}

test('output under the limit is appended unchanged, after what the file already held', async () => {
  const path = join(await tmp(), 'logs', 'a.log');
  const first = await BoundedLog.open(path, 1000);
  first.write('one\n');
  await first.close();
  const log = await BoundedLog.open(path, 1000);
  log.write('two\n');
  log.note('exited with code 0');
  await log.close();
  assert.match(await readFile(path, 'utf8'), /^one\ntwo\n\[eph\] \d{4}-\d\d-\d\dT[\d:.]+Z exited with code 0\n$/);
});

test('going over the limit keeps only the newest half, from a line start, after a marker line', async () => {
  const path = join(await tmp(), 'b.log');
  const log = await BoundedLog.open(path, 1000);
  for (let i = 0; i < 300; i++) log.write(`line ${String(i).padStart(3, '0')}\n`);
  await log.close();
  const text = await readFile(path, 'utf8');
  assert.ok(text.length <= 1000);
  const lines = text.split('\n');
  assert.match(lines[0]!, /^\[eph\] earlier output dropped/);
  assert.match(lines[1]!, /^line \d{3}$/);
  assert.equal(lines.at(-2), 'line 299');
  // Every kept line is whole and they are consecutive.
  const nums = lines.slice(1, -1).map((l) => Number(l.slice(5)));
  assert.deepEqual(nums, nums.map((_, i) => nums[0]! + i));
});

test('a single write bigger than the limit keeps its newest part', async () => {
  const path = join(await tmp(), 'c.log');
  const log = await BoundedLog.open(path, 200);
  log.write('x'.repeat(1000) + '\nlast line\n');
  await log.close();
  const text = await readFile(path, 'utf8');
  assert.ok(text.length <= 200, String(text.length));
  assert.match(text, /last line\n$/);
});

test('a file left over a larger limit is cut down when opened', async () => {
  const path = join(await tmp(), 'd.log');
  await writeFile(path, 'old line\n'.repeat(500));
  const log = await BoundedLog.open(path, 300);
  await log.close();
  assert.ok((await stat(path)).size <= 300);
});

test('writes after close are dropped without an error: a stop ending the log while a start or a pipe still writes to it', async () => {
  const path = join(await tmp(), 'e.log');
  const log = await BoundedLog.open(path, 10_000);
  const errors: Error[] = [];
  log.on('error', (e: Error) => errors.push(e));
  // The app's output keeps coming through a pipe while the log is closed under it.
  const { spawn } = await import('node:child_process');
  const app = spawn(process.execPath, ['-e', 'setInterval(() => process.stdout.write("tick\\n"), 5)'], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    app.stdout.pipe(log, { end: false });
    await new Promise<void>((r) => app.stdout.once('data', () => r()));
    log.write('before close\n');
    await log.close();
    // What the launch in the issue did after the stop: a note, and plain writes.
    log.note('namespace has no second name');
    const acked = await new Promise<Error | null | undefined>((r) => log.write('late\n', (e) => r(e)));
    assert.equal(acked, null);
    // A pipe attached after the stop (a start's stderr arriving late) writes into the closed log.
    const { Readable } = await import('node:stream');
    const late = Readable.from([Buffer.from('late pipe 1\n'), Buffer.from('late pipe 2\n')]);
    late.pipe(log, { end: false });
    await new Promise<void>((r) => late.once('end', () => r()));
    await new Promise((r) => setImmediate(r));
  } finally {
    app.kill('SIGKILL');
  }
  assert.deepEqual(errors.map((e) => e.message), []);
  assert.ok(log.droppedAfterEnd > 0);
  const text = await readFile(path, 'utf8');
  assert.match(text, /before close\n$/);
  assert.doesNotMatch(text, /late|second name/);
});

test('writes after destroy are dropped too, and close() after destroy resolves', async () => {
  const path = join(await tmp(), 'f.log');
  const log = await BoundedLog.open(path, 10_000);
  const errors: Error[] = [];
  log.on('error', (e: Error) => errors.push(e));
  log.destroy();
  log.note('after destroy');
  await log.close();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(errors, []);
  assert.equal(log.droppedAfterEnd > 0, true);
});
