/**
 * Failures the CLI reports as one line `eph: <message>` on stderr.
 * A CliError exits with status 1 (the operation failed); a UsageError with
 * status 2 (the command line itself is wrong, nothing was sent).
 */
export class CliError extends Error {
  /** Process exit status. */
  readonly exitCode: number = 1;
  /** The API's error code (e.g. `UNAUTHORIZED`) when the API answered with one. */
  readonly code: string | undefined;
  /** HTTP status of the answer, when there was one. */
  readonly status: number | undefined;

  constructor(message: string, opts: { code?: string; status?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'CliError';
    this.code = opts.code;
    this.status = opts.status;
  }
}

/** A wrong command line: bad argument, missing setting. Exit status 2. */
export class UsageError extends CliError {
  override readonly exitCode: number = 2;

  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
