import { EphError } from './errors.ts';

/**
 * The last line of defence of `eph serve` against errors nothing else caught
 * (`uncaughtException`, `unhandledRejection`). Every such error is logged and
 * counted (`eph_escaped_errors_total` in /metrics); then:
 *
 * - I/O errors of one stream, socket, file or child process (an errno-style
 *   `code` such as EPIPE, ECONNRESET, ENOSPC, or a stream state error such as
 *   ERR_STREAM_WRITE_AFTER_END), and the cloud's own EphErrors, are **contained**: they belong to one
 *   connection or one instance, whose own handlers already failed it, and
 *   exiting would take every other tenant down with it;
 * - anything else (TypeError, a failed assertion...) is a bug that may have
 *   left shared state half-updated: **fatal**, the process exits with code 70
 *   after logging, so that a supervisor restarts it and the start-up recovery
 *   repairs what was left behind.
 */

/** Counts of escaped errors, by how they escaped and whether they were fatal. */
export interface EscapedErrorCounts {
  uncaughtContained: number;
  uncaughtFatal: number;
  rejectionContained: number;
  rejectionFatal: number;
}

const counts: EscapedErrorCounts = { uncaughtContained: 0, uncaughtFatal: 0, rejectionContained: 0, rejectionFatal: 0 };

/** Exit code of a fatal escaped error (EX_SOFTWARE in sysexits.h). */
export const FATAL_EXIT_CODE = 70;

/** Node's stream state errors: a write or read on a stream that one side already ended or destroyed. */
const STREAM_STATE_CODES = new Set([
  'ERR_STREAM_WRITE_AFTER_END',
  'ERR_STREAM_DESTROYED',
  'ERR_STREAM_PREMATURE_CLOSE',
  'ERR_STREAM_ALREADY_FINISHED',
  'ERR_STREAM_CANNOT_PIPE',
  'ERR_STREAM_PUSH_AFTER_EOF',
  'ERR_STREAM_UNSHIFT_AFTER_END_EVENT',
  'ERR_SOCKET_CLOSED',
  'ERR_HTTP_HEADERS_SENT',
]);

/**
 * True when `e` is the failure of one stream, socket, file or child process
 * (contained), false when it is a programming error (fatal).
 */
export function isContainedError(e: unknown): boolean {
  // The cloud's own refusals (START_FAILED, STORAGE_FULL...) are about one request or instance.
  if (e instanceof EphError) return true;
  if (!(e instanceof Error)) return false;
  const { code } = e as NodeJS.ErrnoException;
  if (typeof code !== 'string') return false;
  // errno codes (EPIPE, ENOSPC, ECONNRESET...): a system call on one file or socket failed.
  return /^E[A-Z0-9]+$/.test(code) || STREAM_STATE_CODES.has(code);
}

/** The counts so far (all zero when the guard is not installed, as in tests that start the cloud in-process). */
export function escapedErrorCounts(): Readonly<EscapedErrorCounts> {
  return { ...counts };
}

/** Prometheus text of the counts, for /metrics. */
export function escapedErrorMetrics(): string {
  return [
    '# HELP eph_escaped_errors_total Errors no handler caught, by kind; contained ones did not stop the cloud.',
    '# TYPE eph_escaped_errors_total counter',
    `eph_escaped_errors_total{kind="uncaught",outcome="contained"} ${counts.uncaughtContained}`,
    `eph_escaped_errors_total{kind="uncaught",outcome="fatal"} ${counts.uncaughtFatal}`,
    `eph_escaped_errors_total{kind="rejection",outcome="contained"} ${counts.rejectionContained}`,
    `eph_escaped_errors_total{kind="rejection",outcome="fatal"} ${counts.rejectionFatal}`,
    '',
  ].join('\n');
}

/** Where the guard reports; `exit` is process.exit except in tests of the policy. */
export interface GuardSink {
  log(fields: { kind: 'uncaught' | 'rejection'; fatal: boolean; code?: string; err: string }, msg: string): void;
  exit(code: number): void;
}

/** Installs the guard on this process (once). */
export function installProcessGuard(sink: GuardSink): void {
  if (installed) return;
  installed = true;
  const handle = (kind: 'uncaught' | 'rejection', e: unknown): void => {
    const contained = isContainedError(e);
    if (kind === 'uncaught') counts[contained ? 'uncaughtContained' : 'uncaughtFatal']++;
    else counts[contained ? 'rejectionContained' : 'rejectionFatal']++;
    const code = (e as { code?: unknown } | null)?.code;
    const err = e instanceof Error ? (e.stack ?? e.message) : String(e);
    sink.log(
      { kind, fatal: !contained, ...(typeof code === 'string' ? { code } : {}), err },
      contained ? 'an error escaped its handler; contained (the cloud keeps serving)' : 'an error escaped its handler; exiting so that a supervisor restarts the cloud',
    );
    if (!contained) sink.exit(FATAL_EXIT_CODE);
  };
  process.on('uncaughtException', (e) => handle('uncaught', e));
  process.on('unhandledRejection', (e) => handle('rejection', e));
}

let installed = false;
