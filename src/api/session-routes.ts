import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { EphError } from '../core/errors.ts';
import type { User } from '../core/types.ts';
import type { UserService } from '../services/users.ts';
import { authenticate, credentials } from './auth.ts';
import { cookieValue, SESSION_COOKIE, sessionCookie, sessionUser } from './session-cookie.ts';
import { sessionsOf, type Session } from './session-store.ts';

/** Header the console sends on each of its requests (see the onSend hook below). */
export const CONSOLE_HEADER = 'x-eph-console';

/**
 * The console's sign-in: `POST /v1/session` trades HTTP Basic credentials
 * (the form's User ID and Token) for a session cookie and a CSRF token;
 * `GET /v1/session` answers the session of the cookie (the console reloads
 * its CSRF token from it); `DELETE /v1/session` signs out (the session is
 * removed on the server, the cookie cleared). Failed sign-ins go through the
 * same throttling of failures as every other authentication.
 */
export function sessionRoutes(app: FastifyInstance, deps: { users: UserService }): void {
  const { users } = deps;
  const plan = (u: User) => users.plan(u.plan);
  const view = (s: Session) => ({
    userID: s.user.id,
    name: s.user.name,
    plan: s.user.plan,
    maxRunning: plan(s.user).maxRunning,
    csrfToken: s.csrf,
    expiresAt: new Date(s.expiresAt).toISOString(),
  });

  app.post('/v1/session', async (req, reply) => {
    // Explicit credentials only: a session cookie never extends itself into a new session.
    const c = credentials(req);
    if (!c) throw new EphError('UNAUTHORIZED', 'sign in with HTTP Basic credentials (User ID and Token)');
    // The API's own authentication: same answers, same throttling of failures (429 + Retry-After).
    const user = await authenticate(users, req);
    const store = sessionsOf(users);
    const old = cookieValue(req, SESSION_COOKIE);
    if (old !== null) store.remove(old);
    const { secret, session } = store.create(user);
    const maxAge = Math.floor((session.expiresAt - session.createdAt) / 1000);
    return reply.status(201).header('set-cookie', sessionCookie(req, secret, maxAge)).header('cache-control', 'no-store').send(view(session));
  });

  app.get('/v1/session', async (req, reply) => {
    const secret = cookieValue(req, SESSION_COOKIE);
    if (secret === null) throw new EphError('UNAUTHORIZED', 'not signed in to the console');
    sessionUser(users, req);
    return reply.header('cache-control', 'no-store').send(view(sessionsOf(users).get(secret)!));
  });

  app.delete('/v1/session', async (req, reply) => {
    const secret = cookieValue(req, SESSION_COOKIE);
    if (secret === null) throw new EphError('UNAUTHORIZED', 'not signed in to the console');
    const store = sessionsOf(users);
    // A live session is ended only with its CSRF token (no other site signs the user out);
    // a dead one has nothing left to protect, its cookie is just cleared.
    if (store.get(secret)) sessionUser(users, req);
    const ended = store.remove(secret);
    return reply.header('set-cookie', sessionCookie(req, '', 0)).send({ signedOut: ended });
  });

  // A 401 with `WWW-Authenticate: Basic` makes a browser open its own password dialog over the
  // console; the console's requests get the JSON error alone and show the sign-in form instead.
  app.addHook('onSend', async (req: FastifyRequest, reply: FastifyReply, payload) => {
    if (req.headers[CONSOLE_HEADER] !== undefined) reply.removeHeader('www-authenticate');
    return payload;
  });
}
