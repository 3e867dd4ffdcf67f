/**
 * The one error catalogue. Every failure a user can see is an EphError with a
 * stable code, an HTTP status and a message; the API maps them to JSON in one
 * place (src/api/errors.ts) and docs/errors.md lists the codes (a test keeps
 * both in sync).
 */
export const ERROR_CATALOGUE = {
  BAD_REQUEST: { status: 400, text: 'The request is malformed' },
  INVALID_HOSTNAME: { status: 400, text: 'The hostname is not valid' },
  INVALID_VALUE: { status: 400, text: 'The value is not valid for this property' },
  INVALID_CONFIG: { status: 400, text: 'The configuration is not valid' },
  ARCHIVE_INVALID: { status: 400, text: 'The archive cannot be read' },
  ARCHIVE_UNSAFE: { status: 400, text: 'The archive contains an unsafe entry' },
  ARCHIVE_NO_APP: { status: 422, text: 'The archive holds no runnable application' },
  ARCHIVE_TOO_LARGE: { status: 413, text: 'The archive is over the size limit' },
  UNAUTHORIZED: { status: 401, text: 'Missing or wrong credentials' },
  FORBIDDEN: { status: 403, text: 'Not allowed' },
  NOT_FOUND: { status: 404, text: 'Not found' },
  UNKNOWN_PROPERTY: { status: 404, text: 'No such property' },
  CONFLICT: { status: 409, text: 'The resource is held by someone else' },
  QUOTA_EXCEEDED: { status: 409, text: 'The plan limit of running instances is reached' },
  INSTANCE_QUOTA_EXCEEDED: { status: 409, text: 'The plan limit of instances per user is reached' },
  STORAGE_QUOTA_EXCEEDED: { status: 413, text: 'The plan limit of stored bytes per user is reached' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, text: 'The content type is not supported' },
  RATE_LIMITED: { status: 429, text: 'Too many failed authentications; retry after the time given' },
  START_FAILED: { status: 502, text: 'The instance failed to start' },
  WAKE_TIMEOUT: { status: 504, text: 'The instance did not accept connections in time' },
  UNAVAILABLE: { status: 503, text: 'The service is unavailable' },
  STORAGE_FULL: { status: 507, text: 'The disk of the cloud is full; delete instances or images to free space' },
  DEPENDENCY_MISSING: { status: 501, text: 'A required program is not installed' },
  INTERNAL: { status: 500, text: 'Internal error' },
  HEALTH_CHECK_FAILED: { status: 409, text: 'The target did not pass its health check; the route is unchanged' },
  NO_EARLIER_ROUTE: { status: 409, text: 'The route has no earlier state to roll back to' },
  CONFIG_TOO_LARGE: { status: 413, text: 'The config vars are over the plan limit' },
} as const;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export class EphError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Seconds a client should wait before retrying (sent as Retry-After). */
  readonly retryAfter?: number;

  constructor(code: ErrorCode, message?: string, opts: { cause?: unknown; retryAfter?: number } = {}) {
    super(message ?? ERROR_CATALOGUE[code].text, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'EphError';
    this.code = code;
    this.status = ERROR_CATALOGUE[code].status;
    if (opts.retryAfter !== undefined) this.retryAfter = opts.retryAfter;
  }
}

export const notFound = (what: string): EphError => new EphError('NOT_FOUND', `${what} not found`);

export function isEphError(e: unknown): e is EphError {
  return e instanceof EphError;
}

/** True for the errors of a full disk or an exhausted quota of the file system (ENOSPC, EDQUOT), however wrapped. */
export function isDiskFull(e: unknown): boolean {
  for (let cur: unknown = e, depth = 0; cur && depth < 5; cur = (cur as { cause?: unknown }).cause, depth++) {
    const code = (cur as { code?: unknown }).code;
    // SQLITE_FULL: the database's own write failed; 53100: PostgreSQL's disk_full.
    if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL' || code === '53100') return true;
  }
  return false;
}

/** A STORAGE_FULL error saying what could not be written because the disk is full. */
export const storageFull = (what: string | null, cause?: unknown): EphError =>
  new EphError('STORAGE_FULL', `the disk of the cloud is full${what ? ` while ${what}` : ''}: delete instances or images to free space`, cause === undefined ? {} : { cause });
