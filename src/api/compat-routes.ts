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
  type Handler = (req: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply>;
  // Every version of the original docs writes `…/user/<id>/?auth=…`: each route answers with and without
  // the trailing slash (per route: a global ignoreTrailingSlash would also change WebDAV collection paths).
  const route = (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, handler: Handler): void => {
    app.route({ method, url, handler });
    app.route({ method, url: `${url}/`, handler });
  };

  route('POST', base, async (req, reply) => {
    const u = await user(req);
    const upload = await readUpload(req, deps.maxArchiveBytes);
    const inst = await deps.instances.publish(u, upload.stream, upload.name);
    return json(reply, inst.hostname);
  });

  route('GET', base, async (req, reply) => {
    const u = await user(req);
    const list = (await deps.instances.list(u)).map(compatInstance);
    // `used`/`limit` as in the 2016 docs: running instances and the plan's maximum of them.
    const used = list.filter((i) => i.isRunning).length;
    return json(reply, { ephemerics: list, used, limit: deps.users.plan(u.plan).maxRunning });
  });

  route('GET', `${base}/:host`, async (req, reply) => {
    const u = await user(req);
    return json(reply, compatInstance(await deps.instances.get(u, (req.params as P).host!)));
  });

  route('GET', `${base}/:host/:prop`, async (req, reply) => {
    const u = await user(req);
    const { host, prop } = req.params as Required<P>;
    // The 2016 docs' "force pause": `GET …/<host>/stop`. Answers false, the new isRunning.
    if (prop === 'stop') return json(reply, await deps.instances.setRunning(u, host, false));
    const inst = await deps.instances.get(u, host);
    if (!(READABLE as readonly string[]).includes(prop)) throw new EphError('UNKNOWN_PROPERTY', `no property '${prop}'`);
    // The Pharo client's remote-debug helper reads these two; we expose no debug port.
    if (prop === 'mappedPorts') return json(reply, {});
    if (prop === 'debugPort') return json(reply, null);
    return json(reply, compatInstance(inst)[prop as Exclude<Readable, 'mappedPorts' | 'debugPort'> & keyof CompatInstance]);
  });

  route('PUT', `${base}/:host/:prop`, async (req, reply) => {
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

  route('DELETE', `${base}/:host`, async (req, reply) => {
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
