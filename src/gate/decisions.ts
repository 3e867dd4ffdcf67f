/**
 * What the gate decides for a request, apart from how bytes move: which
 * answer a route calls for, which side of a split a visitor lands on, what a
 * failed wake shows, whether a request may be retried, how a response body is
 * framed. Pure functions of what they are given (no socket, no clock, no
 * table), so each rule is tested on its own (test/gate/decisions*.test.ts);
 * the connection modules only carry the outcome out.
 */
import { isEphError } from '../core/errors.ts';
import { PAGES, page, unknownHostPage } from './error-pages.ts';
import { cookieValue, type ResponseHead } from './http-parse.ts';
import { STICKY_COOKIE, type HostRoute } from './routing-table.ts';

// ---- routing ----------------------------------------------------------------

/** The host has no route (or a route without live targets): 404. */
export const ROUTE_UNKNOWN = 0;
/** Plain HTTP to a host that redirects to HTTPS: 308. */
export const ROUTE_REDIRECT = 1;
/** Forward to one of the route's instances. */
export const ROUTE_FORWARD = 2;
export type RouteAction = typeof ROUTE_UNKNOWN | typeof ROUTE_REDIRECT | typeof ROUTE_FORWARD;

/** What a request for a host with `route` gets; `tls`: it came over HTTPS. */
export function routeAction(route: HostRoute | undefined, tls: boolean): RouteAction {
  if (route === undefined || route.targets.length === 0) return ROUTE_UNKNOWN;
  if (!tls && route.httpsRedirect) return ROUTE_REDIRECT;
  return ROUTE_FORWARD;
}

/** The outcome of {@link chooseInstance}; one per connection, reused for each request. */
export class InstanceChoice {
  instance = '';
  /** A whole `Set-Cookie` line (CRLF included) to add to the response, or null. */
  setCookie: string | null = null;
}

/**
 * The instance a request for `route` goes to. A single target is the common
 * case and costs nothing; a split asks `table.pick` (the weighted draw),
 * keeping a visitor whose sticky cookie names a target on it, and sets the
 * cookie when the visitor has none or a stale one.
 */
export function chooseInstance(
  route: HostRoute,
  cookieHeader: string | null,
  table: { pick(route: HostRoute, sticky: string | undefined): string },
  out: InstanceChoice,
): void {
  if (route.cumulative === null) {
    out.instance = route.targets[0]!.hostname;
    out.setCookie = null;
    return;
  }
  const sticky = cookieValue(cookieHeader, STICKY_COOKIE);
  const instance = table.pick(route, sticky);
  out.instance = instance;
  out.setCookie = sticky === instance ? null : `Set-Cookie: ${STICKY_COOKIE}=${instance}; Path=/; HttpOnly; SameSite=Lax\r\n`;
}

/** The page for a request head the parser refused with `error` (400, 501 or 505). */
export function rejectionPage(error: number): Buffer {
  return error === 505 ? PAGES.badVersion : error === 501 ? PAGES.notImplemented : PAGES.badRequest;
}

// ---- waking -----------------------------------------------------------------

/**
 * True when a visitor waiting for a wake gets the self-refreshing "Starting…"
 * page after `afterMs`: a browser (asks for HTML) loading a page (GET or HEAD,
 * the request read whole, no upgrade), and the page is enabled (`afterMs` > 0).
 */
export function wantsStartingPage(method: string, accept: string | null, requestRead: boolean, upgrade: boolean, afterMs: number): boolean {
  return afterMs > 0 && (method === 'GET' || method === 'HEAD') && requestRead && !upgrade && accept?.includes('text/html') === true;
}

/** A page with its status. */
export interface Answer {
  status: number;
  page: Buffer;
}

/**
 * The answer to a request whose instance could not be woken. The backend's
 * EphErrors map to their statuses (QUOTA_EXCEEDED 503 + Retry-After,
 * START_FAILED 502, WAKE_TIMEOUT 504, NOT_FOUND 404, UNAVAILABLE 503, other
 * server errors 502); anything else is an unexpected 502 the caller logs.
 */
export function wakeFailureAnswer(err: unknown, host: string, close: boolean, head: boolean): Answer & { unexpected: boolean } {
  if (!isEphError(err)) {
    return { status: 502, page: page(502, 'Bad gateway', `The application at ${host} could not be started.`, { close, head }), unexpected: true };
  }
  let status: number;
  let p: Buffer;
  switch (err.code) {
    case 'QUOTA_EXCEEDED':
      status = 503;
      p = page(503, 'Over the plan limit', `The application at ${host} cannot start now: ${err.message}.`, {
        close,
        head,
        retryAfter: err.retryAfter ?? 60,
      });
      break;
    case 'START_FAILED':
      status = 502;
      p = page(502, 'The application failed to start', `The application at ${host} failed to start: ${err.message}`, { close, head });
      break;
    case 'WAKE_TIMEOUT':
      status = 504;
      p = page(504, 'The application did not start in time', `The application at ${host} did not accept connections in time.`, { close, head });
      break;
    case 'NOT_FOUND':
      status = 404;
      p = unknownHostPage(host, close, head);
      break;
    default:
      // UNAVAILABLE (e.g. a stopped static site) is the gate's own 503; other server errors are the app's 502.
      status = err.code === 'UNAVAILABLE' ? 503 : err.status >= 500 ? 502 : err.status;
      p = page(status, 'The application is unavailable', err.message, { close, head });
  }
  return { status, page: p, unexpected: false };
}

// ---- retries ----------------------------------------------------------------

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
/** A request that cannot be replayed only reuses connections idle for less than this (apps close idle ones after seconds). */
export const SAFE_REUSE_MS = 1000;
/** Sends of one request after the first, at most. */
export const MAX_RETRIES = 2;

/** A request may be sent again after a connection failed under it: whole (no body to replay) and idempotent. */
export function isRetryable(method: string, bodyless: boolean): boolean {
  return bodyless && IDEMPOTENT.has(method);
}

/**
 * How long a pooled connection may have been idle to carry this request:
 * -1 (a new connection) when retrying after a stale one, any age for a
 * request that can be replayed, else only a recent one.
 */
export function upstreamMaxIdleAge(fresh: boolean, retryable: boolean): number {
  return fresh ? -1 : retryable ? Infinity : SAFE_REUSE_MS;
}

/** What the gate knows when the upstream connection of an exchange closes. */
export interface UpstreamCloseFacts {
  /** Any byte of a response arrived. */
  gotResponse: boolean;
  /** The request head was written to this connection. */
  headSent: boolean;
  /** The connection came from the pool (carried an exchange before). */
  reused: boolean;
  /** This exchange already woke the instance again once. */
  woke: boolean;
  retryable: boolean;
  retries: number;
  /** The socket's error code; null when it closed without an error. */
  errorCode: string | null;
}

/** Connection never up: wake the instance again (once), then send. */
export const CLOSE_WAKE_AGAIN = 'wake-again';
/** A pooled connection the app had closed: send again on a new connection. */
export const CLOSE_RETRY_NEW = 'retry-new-connection';
/** Sent on a new connection that closed unanswered: wake the instance again (once), then send again. */
export const CLOSE_RETRY_AFTER_WAKE = 'retry-after-wake';
/** Nothing answered and no retry left: a 502 page. */
export const CLOSE_BAD_GATEWAY = 'bad-gateway';
/** Cut off in the middle of a response: the visitor can only be told by closing. */
export const CLOSE_CUT = 'cut';
export type UpstreamCloseAction =
  | typeof CLOSE_WAKE_AGAIN
  | typeof CLOSE_RETRY_NEW
  | typeof CLOSE_RETRY_AFTER_WAKE
  | typeof CLOSE_BAD_GATEWAY
  | typeof CLOSE_CUT;

const REFUSED = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE']);

/** The retry and re-wake rules: what to do when an exchange's upstream connection closes. */
export function afterUpstreamClose(f: UpstreamCloseFacts): UpstreamCloseAction {
  if (f.gotResponse) return CLOSE_CUT;
  if (!f.headSent) {
    // Never connected: the app behind a "running" upstream is gone.
    if (!f.woke && (f.errorCode === null || REFUSED.has(f.errorCode))) return CLOSE_WAKE_AGAIN;
    return CLOSE_BAD_GATEWAY;
  }
  if (!f.retryable || f.retries >= MAX_RETRIES) return CLOSE_BAD_GATEWAY;
  // An idle keep-alive connection the app had closed: its idle siblings may be just as stale.
  if (f.reused) return CLOSE_RETRY_NEW;
  return f.woke ? CLOSE_BAD_GATEWAY : CLOSE_RETRY_AFTER_WAKE;
}

/** The page when an app closed the connection without answering. */
export function noAnswerPage(host: string, close: boolean, head: boolean): Buffer {
  return page(502, 'Bad gateway', `The application at ${host} closed the connection without answering.`, { close, head });
}

/** The page when an app's response could not be read. */
export function malformedResponsePage(status: number, close: boolean, head: boolean): Buffer {
  return page(status, 'Bad gateway', 'The application sent a malformed response.', { close, head });
}

// ---- response framing (RFC 9112 §6.3) ---------------------------------------

/** Waiting for the response head. */
export const R_HEAD = 0;
/** No body (HEAD, 204, 304). */
export const R_NONE = 1;
/** A Content-Length body. */
export const R_LENGTH = 2;
/** A chunked body. */
export const R_CHUNKED = 3;
/** The body runs until the app closes. */
export const R_CLOSE = 4;
/** The response is complete. */
export const R_DONE = 5;

/** How the body of a final response with head `rs` is framed; `isHead`: it answers a HEAD request. */
export function responseFraming(rs: ResponseHead, isHead: boolean): number {
  if (isHead || rs.status === 204 || rs.status === 304) return R_NONE;
  if (rs.chunked) return R_CHUNKED;
  if (rs.contentLength >= 0) return R_LENGTH;
  return R_CLOSE;
}

/** True when the upstream connection may carry another exchange after this response. */
export function upstreamReusable(rs: ResponseHead, framing: number): boolean {
  return rs.minor === 1 && !rs.connClose && framing !== R_CLOSE;
}
