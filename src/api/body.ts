import type { IncomingMessage } from 'node:http';

/** Whether the request announces a body (chunked, or a Content-Length above zero). */
export function hasBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const len = req.headers['content-length'];
  return len !== undefined && len !== '0';
}

/**
 * Whether part of the request body is still unread: an answer sent now must
 * close the connection, else Node would read (and discard) the rest of it to
 * keep the connection alive, however large it is.
 */
export function bodyUnread(req: IncomingMessage): boolean {
  return hasBody(req) && !req.complete;
}

/** Whether the client waits for `100 Continue` before it sends the body. */
export function expectsContinue(req: IncomingMessage): boolean {
  const e = req.headers.expect;
  return typeof e === 'string' && e.toLowerCase() === '100-continue';
}
