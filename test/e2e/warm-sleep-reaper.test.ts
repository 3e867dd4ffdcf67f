import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startIdleReaper } from '../../src/gate/idle-reaper.ts';
import { until } from '../helpers/cloud.ts';

/**
 * The idle reaper's two tiers on their own (no root needed: the instances
 * are records, the clock is the test's): frozen after the warm idle timeout,
 * stopped after the idle timeout (frozen or not), never while a connection is
 * open, never frozen with the warm tier off, one freeze at a time.
 */

interface Rec {
  hostname: string;
  accessAt: number;
  frozen: boolean;
  stopped: boolean;
  active: number;
}

function harness(warmIdleTimeoutMs: number, idleTimeoutMs: number, opts: { slowFreeze?: boolean } = {}) {
  let now = 1_000_000;
  const recs = new Map<string, Rec>();
  const calls: string[] = [];
  let release: (() => void) | null = null;
  const reaper = startIdleReaper({
    intervalMs: 5,
    idleTimeoutMs,
    warmIdleTimeoutMs,
    now: () => now,
    listRunning: () => [...recs.values()].filter((r) => !r.stopped).map((r) => ({ hostname: r.hostname, accessAt: r.accessAt, frozen: r.frozen })),
    activeCount: (h) => recs.get(h)?.active ?? 0,
    stop: async (h) => {
      calls.push(`stop ${h}`);
      recs.get(h)!.stopped = true;
    },
    freeze: async (h) => {
      calls.push(`freeze ${h}`);
      if (opts.slowFreeze) await new Promise<void>((r) => (release = r));
      recs.get(h)!.frozen = true;
      return true;
    },
  });
  return {
    add(hostname: string, active = 0): Rec {
      const r = { hostname, accessAt: now, frozen: false, stopped: false, active };
      recs.set(hostname, r);
      return r;
    },
    advance(ms: number): void {
      now += ms;
    },
    calls,
    releaseFreeze: () => release?.(),
    close: () => reaper.stop(),
  };
}

/** Lets several sweeps run (the interval is 5 ms): for checks that something did not happen. */
const sweeps = (): Promise<void> => new Promise((r) => setTimeout(r, 60));

test('idle past the warm timeout an instance is frozen, past the idle timeout it is stopped although frozen', async () => {
  const h = harness(1000, 5000);
  try {
    const a = h.add('a');
    h.advance(1001);
    await until('a frozen', () => a.frozen, 30_000, 5);
    await sweeps();
    assert.deepEqual(h.calls, ['freeze a'], 'a frozen instance is not frozen again');
    h.advance(4000);
    await until('a stopped', () => a.stopped, 30_000, 5);
    assert.deepEqual(h.calls, ['freeze a', 'stop a'], 'frozen once, then stopped');
  } finally {
    h.close();
  }
});

test('an open connection keeps an instance from both tiers; with the warm tier off it is only stopped', async () => {
  const h = harness(1000, 5000);
  const off = harness(0, 5000);
  try {
    const busy = h.add('busy', 1);
    const idle = h.add('idle');
    const plain = off.add('plain');
    h.advance(6000);
    off.advance(1500);
    await until('the idle one stopped', () => idle.stopped, 30_000, 5);
    off.advance(4000);
    await until('the plain one stopped', () => plain.stopped, 30_000, 5);
    assert.equal(busy.frozen || busy.stopped, false, 'the busy one is left alone');
    assert.deepEqual(off.calls, ['stop plain'], 'never frozen with the warm tier off');
    busy.active = 0;
    await until('the busy one stopped once its connection closed', () => busy.stopped, 30_000, 5);
  } finally {
    h.close();
    off.close();
  }
});

test('a slow freeze is not started twice by the following sweeps', async () => {
  const h = harness(1000, 60_000, { slowFreeze: true });
  try {
    const a = h.add('a');
    h.advance(1001);
    await until('the freeze to begin', () => h.calls.length === 1, 30_000, 5);
    await sweeps();
    assert.deepEqual(h.calls, ['freeze a']);
    h.releaseFreeze();
    await until('a frozen', () => a.frozen, 30_000, 5);
  } finally {
    h.close();
  }
});
