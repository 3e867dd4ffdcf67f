import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { EphError, isDiskFull, isEphError, storageFull, type ErrorCode } from '../core/errors.ts';
import { bodyUnread } from './body.ts';

/** Fastify's own failures, mapped onto our catalogue so every error body has one shape. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_BODY_TOO_LARGE: 'ARCHIVE_TOO_LARGE',
  FST_ERR_CTP_INVALID_JSON_BODY: 'BAD_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'BAD_REQUEST',
  FST_ERR_VALIDATION: 'BAD_REQUEST',
  FST_REQ_FILE_TOO_LARGE: 'ARCHIVE_TOO_LARGE',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
};

export function toEphError(err: unknown): EphError {
  if (isEphError(err)) return err;
  // ENOSPC wherever it came from (unpacking, the database, a log): 507, not a 500 that reads as a bug.
  if (isDiskFull(err)) return storageFull(null, err);
  const fe = err as Partial<FastifyError>;
  const code = fe.code ? FASTIFY_CODES[fe.code] : undefined;
  if (code) return new EphError(code, fe.message);
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new EphError('BAD_REQUEST', fe.message);
  }
  return new EphError('INTERNAL', 'internal error', { cause: err });
}

/** The one place errors become HTTP answers: `{"error":{"code","message"}}` with the catalogue's status. */
export function errorHandler(err: unknown, req: FastifyRequest, reply: FastifyReply): void {
  const e = toEphError(err);
  if (e.code === 'INTERNAL') req.log.error({ err }, 'internal error');
  if (e.retryAfter !== undefined) reply.header('retry-after', String(e.retryAfter));
  if (e.status === 401) reply.header('www-authenticate', 'Basic realm="ephemeric"');
  // An oversized upload (archive or plan storage limit) is left unread: closing is the only way not to read it all.
  if (e.status === 413) reply.header('connection', 'close');
  // The same for any refusal before the body is read (401 of a stranger's upload, 415, 400 on a header):
  // answering and closing costs nothing, reading a 2 GB body to keep the connection does.
  else if (bodyUnread(req.raw)) reply.header('connection', 'close');
  void reply.status(e.status).type('application/json').send({ error: { code: e.code, message: e.message } });
}
