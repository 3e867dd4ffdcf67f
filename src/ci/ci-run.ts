import type { TestResult } from './test-report.ts';

/**
 * A CI run as the server records it. `running` until the client reports the end; the server ends it as
 * `timed-out` itself when its deadline passes (the client died, lost the network, was killed), deleting
 * its instance: CI instances never outlive their run's time to live.
 */
export type CiRunStatus = 'running' | 'passed' | 'failed' | 'error' | 'timed-out' | 'interrupted';

export const FINAL_STATUSES: readonly CiRunStatus[] = ['passed', 'failed', 'error', 'timed-out', 'interrupted'];

export interface CiStep {
  name: string;
  status: 'ok' | 'failed' | 'skipped';
  ms: number;
  detail?: string;
}

export interface CiRun {
  id: string;
  userId: string;
  name: string;
  status: CiRunStatus;
  /** The run's instance, once its archive is published. */
  hostname: string | null;
  createdAt: number;
  updatedAt: number;
  /** After this instant (epoch ms) the server ends the run and deletes its instance. */
  deadline: number;
  /** The instance stays after the run (`--keep`, or promoted). */
  keep: boolean;
  promotedTo: string | null;
  steps: CiStep[];
  tests: TestResult[];
  /** The end of the instance's log when the run ended (at most a few KiB). */
  logExcerpt: string | null;
  error: string | null;
}

/** Where CI runs live; both SQL stores implement it. */
export interface CiRunStore {
  /** Inserts or replaces the run. */
  putCiRun(run: CiRun): Promise<void>;
  getCiRun(id: string): Promise<CiRun | null>;
  /** The user's runs, newest first. */
  listCiRuns(userId: string, limit?: number): Promise<CiRun[]>;
  /** Every run still `running`, whoever owns it (for the deadline reaper). */
  listRunningCiRuns(): Promise<CiRun[]>;
  deleteCiRun(id: string): Promise<void>;
}
