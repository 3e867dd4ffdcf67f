import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { EphError } from '../core/errors.ts';
import type { User } from '../core/types.ts';
import type { ApiDeps } from './deps.ts';
import { authenticate } from './auth.ts';
import { readUpload } from './upload.ts';
import { compatInstance, type CompatInstance } from './views.ts';

const READABLE = ['accessTime', 'createdTime', 'alias', 'isRunning', 'imageName', 'hostname', 'mappedPorts', 'debugPort'] as const;
type Readable = (typeof READABLE)[number];

/**
 * The original Pharocloud Ephemeric Cloud REST API, kept byte-compatible so
 * that existing curl scripts and the Pharo client work unchanged: every
 * success answer is JSON (the client parses all of them), and a PUT answers
 * the property's new value.
 */
export function compatRoutes(app: FastifyInstance, deps: ApiDeps): void {
  const base = '/api/ephemerics/user/:userId';
  type P = { userId: string; host?: string; prop?: string };
  const user = (req: FastifyRequest): Promise<User> => authenticate(deps.users, req, (req.params as P).userId);
  const json = (reply: FastifyReply, value: unknown): FastifyReply => reply.type('application/json').send(JSON.stringify(value));

  app.post(base, async (req, reply) => {
    const u = await user(req);
    const upload = await readUpload(req, deps.maxArchiveBytes);
    const inst = await deps.instances.publish(u, upload.stream, upload.name);
    return json(reply, inst.hostname);
  });

  app.get(base, async (req, reply) => {
    const u = await user(req);
    const list = await deps.instances.list(u);
    return json(reply, { ephemerics: list.map(compatInstance) });
  });

  app.get(`${base}/:host`, async (req, reply) => {
    const u = await user(req);
    return json(reply, compatInstance(await deps.instances.get(u, (req.params as P).host!)));
  });

  app.get(`${base}/:host/:prop`, async (req, reply) => {
    const u = await user(req);
    const { host, prop } = req.params as Required<P>;
    const inst = await deps.instances.get(u, host);
    if (!(READABLE as readonly string[]).includes(prop)) throw new EphError('UNKNOWN_PROPERTY', `no property '${prop}'`);
    // The Pharo client's remote-debug helper reads these two; we expose no debug port.
    if (prop === 'mappedPorts') return json(reply, {});
    if (prop === 'debugPort') return json(reply, null);
    return json(reply, compatInstance(inst)[prop as Exclude<Readable, 'mappedPorts' | 'debugPort'> & keyof CompatInstance]);
  });

  app.put(`${base}/:host/:prop`, async (req, reply) => {
    const u = await user(req);
    const { host, prop } = req.params as Required<P>;
    const value = putValue(req.body);
    switch (prop) {
      case 'isRunning':
        return json(reply, await deps.instances.setRunning(u, host, value));
      case 'alias':
        return json(reply, await deps.instances.setAlias(u, host, value));
      case 'imageName':
        return json(reply, await deps.instances.setImageName(u, host, value));
      default:
        await deps.instances.get(u, host);
        if ((READABLE as readonly string[]).includes(prop)) throw new EphError('INVALID_VALUE', `property '${prop}' is read-only`);
        throw new EphError('UNKNOWN_PROPERTY', `no property '${prop}'`);
    }
  });

  app.delete(`${base}/:host`, async (req, reply) => {
    const u = await user(req);
    await deps.instances.remove(u, (req.params as P).host!);
    return json(reply, true);
  });
}

/**
 * The Pharo client sends JSON with application/json; curl scripts often send
 * `-d true` as a form body. Both mean the same value.
 */
function putValue(body: unknown): unknown {
  if (typeof body !== 'string') return body;
  const text = body.trim();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
