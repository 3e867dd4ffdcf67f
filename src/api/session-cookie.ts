import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { EphError } from '../core/errors.ts';
import type { User } from '../core/types.ts';
import type { UserService } from '../services/users.ts';
import { sessionsOf } from './session-store.ts';

/** The console's session cookie. */
export const SESSION_COOKIE = 'eph_session';
export const CSRF_HEADER = 'x-csrf-token';

/** Methods that change nothing: the only ones a session cookie passes without the CSRF token. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The value of cookie `name` in the request's Cookie header(s), or null. */
export function cookieValue(req: FastifyRequest, name: string): string | null {
  const raw = req.headers.cookie;
  if (!raw) return null;
  for (const part of raw.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim() || null;
  }
  return null;
}

/**
 * The Set-Cookie value of a session: HttpOnly (page scripts never see it),
 * SameSite=Strict (no other site's page sends it), Path=/ and Secure when the
 * request came over TLS. `maxAgeS` 0 removes the cookie.
 */
export function sessionCookie(req: FastifyRequest, secret: string, maxAgeS: number): string {
  const secure = req.protocol === 'https' ? '; Secure' : '';
  return `${SESSION_COOKIE}=${secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeS}${secure}`;
}

/**
 * The user of the request's session cookie; null when there is no cookie.
 * A cookie of no live session is UNAUTHORIZED; a request that may change
 * something (not GET/HEAD/OPTIONS) must carry the session's CSRF token in
 * `X-CSRF-Token`, else FORBIDDEN: a page of another origin can make the
 * browser send the cookie, but cannot read the token.
 */
export function sessionUser(users: UserService, req: FastifyRequest): User | null {
  const secret = cookieValue(req, SESSION_COOKIE);
  if (secret === null) return null;
  const session = sessionsOf(users).get(secret);
  if (!session) throw new EphError('UNAUTHORIZED', 'the console session has expired or was signed out; sign in again');
  if (!SAFE_METHODS.has(req.method)) {
    const given = req.headers[CSRF_HEADER];
    if (typeof given !== 'string' || !sameSecret(given, session.csrf)) {
      throw new EphError('FORBIDDEN', `a request with the session cookie must carry the session's CSRF token in the X-CSRF-Token header`);
    }
  }
  return session.user;
}

function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}
