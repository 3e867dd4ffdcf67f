import assert from 'node:assert/strict';
import test from 'node:test';
import { KeyedLock } from '../../src/core/keyed-lock.ts';

const tick = () => new Promise((r) => setImmediate(r));

test('calls with one key run one at a time, in order, even after a failure; other keys do not wait', async () => {
  const lock = new KeyedLock();
  const log: string[] = [];
  let release!: () => void;
  const first = lock.run('a', async () => {
    log.push('a1 start');
    await new Promise<void>((r) => (release = r));
    log.push('a1 end');
    throw new Error('a1 failed');
  });
  const second = lock.run('a', async () => {
    log.push('a2');
    return 2;
  });
  const other = lock.run('b', async () => {
    log.push('b');
    return 'b';
  });
  assert.equal(await other, 'b');
  await tick();
  assert.deepEqual(log, ['a1 start', 'b'], 'a2 waits for a1; b does not');
  release();
  await assert.rejects(first, /a1 failed/);
  assert.equal(await second, 2);
  assert.deepEqual(log, ['a1 start', 'b', 'a1 end', 'a2']);
});
