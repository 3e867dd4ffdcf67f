import type { FastifyRequest } from 'fastify';
import { EphError } from '../core/errors.ts';
import type { User } from '../core/types.ts';
import type { UserService } from '../services/users.ts';

/** Credentials as the original API takes them: HTTP Basic (userID:token), or `?auth=<token>` with the user from the path. */
export function credentials(req: FastifyRequest, pathUser?: string): { userId: string; token: string } | null {
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
  const q = req.query as Record<string, unknown>;
  const auth = typeof q.auth === 'string' ? q.auth : undefined;
  const user = pathUser ?? (typeof q.user === 'string' ? q.user : undefined);
  if (auth && user) return { userId: user, token: auth };
  return null;
}

export async function authenticate(users: UserService, req: FastifyRequest, pathUser?: string): Promise<User> {
  const c = credentials(req, pathUser);
  if (!c) throw new EphError('UNAUTHORIZED', 'credentials required: HTTP Basic (userID:token) or ?auth=<token>');
  if (pathUser !== undefined && c.userId !== pathUser) {
    throw new EphError('UNAUTHORIZED', 'the credentials are not those of the user in the path');
  }
  const user = await users.authenticate(c.userId, c.token);
  if (!user) throw new EphError('UNAUTHORIZED', 'unknown user or wrong token');
  return user;
}
