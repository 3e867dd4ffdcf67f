import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { Clock } from '../core/clock.ts';
import { EphError } from '../core/errors.ts';
import type { User } from '../core/types.ts';
import type { InstanceService } from '../services/instances.ts';
import type { Store } from '../store/store.ts';
import { type CiRun, type CiRunStatus, type CiStep, FINAL_STATUSES } from './ci-run.ts';
import type { TestResult } from './test-report.ts';

export interface CiLimits {
  /** Time to live of a run when the client names none. */
  defaultTtlMs: number;
  minTtlMs: number;
  maxTtlMs: number;
  /** Finished runs kept per user; older ones are deleted. */
  keepRuns: number;
  /** Per-test results a run may record. */
  maxTests: number;
}

export const DEFAULT_CI_LIMITS: CiLimits = {
  defaultTtlMs: 15 * 60_000,
  minTtlMs: 10_000,
  maxTtlMs: 24 * 3600_000,
  keepRuns: 100,
  maxTests: 5000,
};

export interface CiServiceOptions {
  store: Store;
  instances: InstanceService;
  clock: Clock;
  limits?: Partial<CiLimits>;
  /** How often the deadline reaper looks (default 5 s). */
  reapIntervalMs?: number;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

export interface FinishReport {
  status: CiRunStatus;
  tests?: unknown;
  steps?: unknown;
  keep?: unknown;
  promotedTo?: unknown;
  error?: unknown;
}

const LOG_EXCERPT_BYTES = 4096;
const clip = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/**
 * CI runs: throw-away instances with a time to live that the server enforces, and the record of what
 * their tests answered. The client (`eph ci run`, or any HTTP client) drives the steps; the server keeps
 * the promise that no CI instance outlives its run, whatever happens to that client.
 */
export class CiService {
  readonly #o: CiServiceOptions;
  readonly #limits: CiLimits;
  #timer: NodeJS.Timeout | null = null;
  #reaping: Promise<void> | null = null;

  constructor(o: CiServiceOptions) {
    this.#o = o;
    this.#limits = { ...DEFAULT_CI_LIMITS, ...o.limits };
  }

  /** Starts the deadline reaper (runs left over by a previous process are reaped on its first pass). */
  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => void this.reapExpired(), this.#o.reapIntervalMs ?? 5000);
    this.#timer.unref();
    void this.reapExpired();
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#reaping;
  }

  async create(user: User, body: unknown): Promise<CiRun> {
    const b = objectOrEmpty(body);
    const unknown = Object.keys(b).filter((k) => !['name', 'ttlSeconds'].includes(k));
    if (unknown.length) throw new EphError('BAD_REQUEST', `unknown field(s): ${unknown.join(', ')}`);
    if (b.name !== undefined && (typeof b.name !== 'string' || b.name.length === 0 || b.name.length > 200)) {
      throw new EphError('INVALID_VALUE', 'name must be a string of 1 to 200 characters');
    }
    let ttl = this.#limits.defaultTtlMs;
    if (b.ttlSeconds !== undefined) {
      const s = b.ttlSeconds;
      if (typeof s !== 'number' || !Number.isFinite(s) || s * 1000 < this.#limits.minTtlMs || s * 1000 > this.#limits.maxTtlMs) {
        throw new EphError('INVALID_VALUE', `ttlSeconds must be a number from ${this.#limits.minTtlMs / 1000} to ${this.#limits.maxTtlMs / 1000}`);
      }
      ttl = Math.round(s * 1000);
    }
    const now = this.#o.clock.now();
    const run: CiRun = {
      id: `ci-${randomBytes(6).toString('hex')}`,
      userId: user.id,
      name: typeof b.name === 'string' ? b.name : 'ci run',
      status: 'running',
      hostname: null,
      createdAt: now,
      updatedAt: now,
      deadline: now + ttl,
      keep: false,
      promotedTo: null,
      steps: [],
      tests: [],
      logExcerpt: null,
      error: null,
    };
    await this.#o.store.putCiRun(run);
    await this.#prune(user.id);
    return run;
  }

  /** The run, if `user` owns it; another user's run is "not found", as if it did not exist. */
  async get(user: User, id: string): Promise<CiRun> {
    const run = await this.#o.store.getCiRun(id);
    if (!run || run.userId !== user.id) throw new EphError('NOT_FOUND', `CI run '${id}' not found`);
    return run;
  }

  list(user: User): Promise<CiRun[]> {
    return this.#o.store.listCiRuns(user.id, this.#limits.keepRuns);
  }

  /** Publishes the run's archive as its instance (counted against the plan like any instance). */
  async publish(user: User, id: string, body: Readable, name: string | undefined): Promise<CiRun> {
    const run = await this.get(user, id);
    if (run.status !== 'running') throw new EphError('CONFLICT', `CI run '${id}' has ended (${run.status})`);
    if (run.hostname) throw new EphError('CONFLICT', `CI run '${id}' has an instance already: ${run.hostname}`);
    const inst = await this.#o.instances.publish(user, body, name ?? run.name);
    // The run may have been reaped while the archive was uploading: its instance must not outlive it.
    const now = await this.#o.store.getCiRun(id);
    if (now?.status !== 'running') {
      await this.#o.instances.remove(user, inst.hostname).catch(() => undefined);
      throw new EphError('CONFLICT', `CI run '${id}' ended while its archive was uploading`);
    }
    const updated = { ...now, hostname: inst.hostname, updatedAt: this.#o.clock.now() };
    await this.#o.store.putCiRun(updated);
    return updated;
  }

  /** Records the client's result; the instance is deleted unless the run keeps it. */
  async finish(user: User, id: string, body: unknown): Promise<CiRun> {
    const b = objectOrEmpty(body);
    const unknown = Object.keys(b).filter((k) => !['status', 'tests', 'steps', 'keep', 'promotedTo', 'error'].includes(k));
    if (unknown.length) throw new EphError('BAD_REQUEST', `unknown field(s): ${unknown.join(', ')}`);
    const status = b.status;
    if (typeof status !== 'string' || !FINAL_STATUSES.includes(status as CiRunStatus) || status === 'timed-out') {
      throw new EphError('INVALID_VALUE', 'status must be passed, failed, error or interrupted');
    }
    const tests = testsOf(b.tests, this.#limits.maxTests);
    const steps = stepsOf(b.steps);
    if (b.keep !== undefined && typeof b.keep !== 'boolean') throw new EphError('INVALID_VALUE', 'keep must be true or false');
    if (b.promotedTo !== undefined && b.promotedTo !== null && typeof b.promotedTo !== 'string') throw new EphError('INVALID_VALUE', 'promotedTo must be a domain');
    if (b.error !== undefined && b.error !== null && typeof b.error !== 'string') throw new EphError('INVALID_VALUE', 'error must be a string');
    const run = await this.get(user, id);
    if (run.status !== 'running') throw new EphError('CONFLICT', `CI run '${id}' has ended (${run.status})`);
    const ended: CiRun = {
      ...run,
      status: status as CiRunStatus,
      tests,
      steps,
      keep: b.keep === true || typeof b.promotedTo === 'string',
      promotedTo: typeof b.promotedTo === 'string' ? b.promotedTo : null,
      error: typeof b.error === 'string' ? clip(b.error, 2000) : null,
    };
    return this.#end(user, ended);
  }

  /** Ends every running run whose deadline has passed, deleting its instance. */
  reapExpired(): Promise<void> {
    this.#reaping ??= (async () => {
      try {
        const now = this.#o.clock.now();
        for (const run of await this.#o.store.listRunningCiRuns()) {
          if (run.deadline > now) continue;
          const user = await this.#o.store.getUser(run.userId);
          if (!user) continue;
          await this.#end(user, { ...run, status: 'timed-out', keep: false, error: 'the run passed its time to live; its instance was deleted' });
          this.#o.log?.('ci: run timed out', { run: run.id, hostname: run.hostname });
        }
      } catch (e) {
        this.#o.log?.('ci: reaper failed', { error: e instanceof Error ? e.message : String(e) });
      } finally {
        this.#reaping = null;
      }
    })();
    return this.#reaping;
  }

  async #end(user: User, run: CiRun): Promise<CiRun> {
    const ended = { ...run, updatedAt: this.#o.clock.now() };
    if (run.hostname) {
      ended.logExcerpt = await this.#logExcerpt(run.hostname);
      if (!run.keep) {
        await this.#o.instances.remove(user, run.hostname).catch((e: unknown) => {
          // Already gone (deleted by hand, or by another replica's reaper) is what we wanted.
          if (!(e instanceof EphError && e.code === 'NOT_FOUND')) throw e;
        });
      }
    }
    await this.#o.store.putCiRun(ended);
    return ended;
  }

  async #logExcerpt(hostname: string): Promise<string | null> {
    const fh = await open(this.#o.instances.logFile(hostname), 'r').catch(() => null);
    if (!fh) return null;
    try {
      const { size } = await fh.stat();
      const start = Math.max(0, size - LOG_EXCERPT_BYTES);
      const buf = Buffer.alloc(size - start);
      await fh.read(buf, 0, buf.length, start);
      return buf.toString('utf8');
    } finally {
      await fh.close();
    }
  }

  async #prune(userId: string): Promise<void> {
    const runs = await this.#o.store.listCiRuns(userId, this.#limits.keepRuns + 50);
    for (const old of runs.slice(this.#limits.keepRuns)) {
      if (old.status !== 'running') await this.#o.store.deleteCiRun(old.id);
    }
  }
}

function objectOrEmpty(body: unknown): Record<string, unknown> {
  if (body === undefined || body === null || body === '') return {};
  if (typeof body !== 'object' || Array.isArray(body)) throw new EphError('BAD_REQUEST', 'expected a JSON object');
  return body as Record<string, unknown>;
}

function testsOf(raw: unknown, max: number): TestResult[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw new EphError('INVALID_VALUE', 'tests must be an array');
  if (raw.length > max) throw new EphError('INVALID_VALUE', `at most ${max} test results per run`);
  return raw.map((t, i) => {
    const o = (t ?? {}) as Record<string, unknown>;
    if (typeof o.name !== 'string' || typeof o.suite !== 'string' || !['pass', 'fail', 'skip'].includes(o.status as string)) {
      throw new EphError('INVALID_VALUE', `tests[${i}]: expected {"suite", "name", "status": "pass"|"fail"|"skip"}`);
    }
    return {
      suite: clip(o.suite, 200),
      name: clip(o.name, 500),
      status: o.status as TestResult['status'],
      ...(typeof o.message === 'string' ? { message: clip(o.message, 2000) } : {}),
      ...(typeof o.durationMs === 'number' && Number.isFinite(o.durationMs) ? { durationMs: o.durationMs } : {}),
    };
  });
}

function stepsOf(raw: unknown): CiStep[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw) || raw.length > 50) throw new EphError('INVALID_VALUE', 'steps must be an array of at most 50 steps');
  return raw.map((s, i) => {
    const o = (s ?? {}) as Record<string, unknown>;
    if (typeof o.name !== 'string' || !['ok', 'failed', 'skipped'].includes(o.status as string) || typeof o.ms !== 'number') {
      throw new EphError('INVALID_VALUE', `steps[${i}]: expected {"name", "status": "ok"|"failed"|"skipped", "ms"}`);
    }
    return { name: clip(o.name, 100), status: o.status as CiStep['status'], ms: o.ms, ...(typeof o.detail === 'string' ? { detail: clip(o.detail, 1000) } : {}) };
  });
}
