import type { FastifyRequest } from 'fastify';
import { EphError } from '../core/errors.ts';
import type { User } from '../core/types.ts';
import type { UserService } from '../services/users.ts';
import { sessionUser } from './session-cookie.ts';

export interface Credentials {
  userId: string;
  token: string;
}

/**
 * Credentials from HTTP Basic (userID:token) or `Bearer userID:token`; with
 * `allowQuery`, also `?auth=<token>` with the user from the path, as the
 * original API took them. Only the compatibility API allows the query form:
 * a token in a URL ends up in proxy logs, shell history and Referer headers.
 */
export function credentials(req: FastifyRequest, pathUser?: string, allowQuery = false): Credentials | null {
  const h = req.headers.authorization;
  if (h && /^basic /i.test(h)) {
    const decoded = Buffer.from(h.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) return null;
    return { userId: decoded.slice(0, colon), token: decoded.slice(colon + 1) };
  }
  if (h && /^bearer /i.test(h)) {
    // `Bearer userID:token`: for clients that cannot send Basic.
    const v = h.slice(7).trim();
    const colon = v.indexOf(':');
    return colon > 0 ? { userId: v.slice(0, colon), token: v.slice(colon + 1) } : null;
  }
  if (!allowQuery || pathUser === undefined) return null;
  const q = req.query as Record<string, unknown>;
  const auth = typeof q.auth === 'string' ? q.auth : undefined;
  return auth ? { userId: pathUser, token: auth } : null;
}

/** One authentication per request: the early check of a request with a body (app.ts) and the route share it. */
const done = new WeakMap<FastifyRequest, Promise<User>>();

/**
 * The authenticated user of the request, or UNAUTHORIZED / RATE_LIMITED.
 * `pathUser` is the user id of a compatibility route's path; its presence
 * also allows `?auth=`.
 */
export function authenticate(users: UserService, req: FastifyRequest, pathUser?: string): Promise<User> {
  let p = done.get(req);
  if (!p) {
    p = check(users, req, pathUser);
    done.set(req, p);
  }
  return p;
}

async function check(users: UserService, req: FastifyRequest, pathUser?: string): Promise<User> {
  const compat = pathUser !== undefined;
  const c = credentials(req, pathUser, compat);
  if (!c) {
    // The web console's session cookie (with its CSRF token on changes); /v1 only, never the compat API.
    const viaSession = compat ? null : sessionUser(users, req);
    if (viaSession) return viaSession;
    const how = compat ? 'HTTP Basic (userID:token) or ?auth=<token>' : 'HTTP Basic (userID:token) or Bearer userID:token (the query string is not accepted here)';
    throw new EphError('UNAUTHORIZED', `credentials required: ${how}`);
  }
  if (compat && c.userId !== pathUser) {
    throw new EphError('UNAUTHORIZED', 'the credentials are not those of the user in the path');
  }
  const user = await users.authenticate(c.userId, c.token, req.ip);
  if (!user) throw new EphError('UNAUTHORIZED', 'unknown user or wrong token');
  return user;
}
