import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Readable } from 'node:stream';
import { EphError } from '../core/errors.ts';
import type { User } from '../core/types.ts';
import type { ApplianceService } from '../appliances/appliance-service.ts';
import { serveFile } from '../appliances/static-site.ts';
import { handleWebDav, WEBDAV_METHODS } from '../appliances/webdav.ts';

export interface ApplianceRouteDeps {
  appliances: ApplianceService;
  authenticate: (req: FastifyRequest) => Promise<User>;
}

type N = { name: string };
type F = { name: string; '*': string };

/** psk.txt files are a few lines; anything bigger is a mistake. */
const MAX_PSK_BYTES = 64 * 1024;

/**
 * The /v1/appliances routes: create, list, show, start, stop, delete,
 * backup/restore (streams), the stunnel tab (psk.txt, stunnel.conf), and the
 * files of static appliances (API upload/list/delete, and a WebDAV share at
 * `/v1/appliances/NAME/dav/`, authenticated like the rest of the API).
 * Another user's appliance answers 404. Errors are thrown as EphError for
 * the API's one error handler.
 *
 * @example
 * applianceRoutes(app, { appliances, authenticate: (req) => authenticate(users, req) });
 */
export function applianceRoutes(app: FastifyInstance, deps: ApplianceRouteDeps): void {
  for (const m of WEBDAV_METHODS) if (!app.supportedMethods.includes(m)) app.addHttpMethod(m, { hasBody: true });
  void app.register(async (json) => jsonRoutes(json, deps));
  // Bodies taken as raw streams, whatever their type: backups, files, psk.txt, WebDAV.
  void app.register(async (raw) => {
    raw.removeAllContentTypeParsers();
    raw.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
    rawRoutes(raw, deps);
  });
}

function jsonRoutes(app: FastifyInstance, deps: ApplianceRouteDeps): void {
  const { appliances } = deps;

  app.post('/v1/appliances', async (req, reply) => {
    const user = await deps.authenticate(req);
    const body = req.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new EphError('BAD_REQUEST', 'expected a JSON object {"kind": "postgres|redis|static|mongo", "name": "..."}');
    }
    const b = body as Record<string, unknown>;
    const unknown = Object.keys(b).filter((k) => k !== 'kind' && k !== 'name');
    if (unknown.length) throw new EphError('BAD_REQUEST', `unknown field(s): ${unknown.join(', ')}`);
    if (typeof b.kind !== 'string' || typeof b.name !== 'string') throw new EphError('BAD_REQUEST', 'kind and name are required strings');
    const rec = await appliances.create(user, b.kind, b.name);
    // The only time a key leaves the cloud: the user saves this as psk.txt.
    return reply.status(201).send({ ...appliances.view(rec), psk: appliances.pskFile(rec) });
  });

  app.get('/v1/appliances', async (req) => {
    const user = await deps.authenticate(req);
    return { appliances: (await appliances.list(user)).map((a) => appliances.view(a)) };
  });

  app.get('/v1/appliances/:name', async (req) => {
    const user = await deps.authenticate(req);
    return appliances.view(await appliances.get(user, (req.params as N).name));
  });

  app.post('/v1/appliances/:name/start', async (req) => {
    const user = await deps.authenticate(req);
    return appliances.view(await appliances.start(user, (req.params as N).name));
  });

  app.post('/v1/appliances/:name/stop', async (req) => {
    const user = await deps.authenticate(req);
    return appliances.view(await appliances.stop(user, (req.params as N).name));
  });

  app.delete('/v1/appliances/:name', async (req, reply) => {
    const user = await deps.authenticate(req);
    await appliances.remove(user, (req.params as N).name);
    return reply.status(204).send();
  });

  app.get('/v1/appliances/:name/backup', async (req, reply) => {
    const user = await deps.authenticate(req);
    const { stream, filename, contentType } = await appliances.backup(user, (req.params as N).name);
    return reply.type(contentType).header('content-disposition', `attachment; filename="${filename}"`).send(stream);
  });

  app.get('/v1/appliances/:name/psk', async (req) => {
    const user = await deps.authenticate(req);
    return { identities: await appliances.pskIdentities(user, (req.params as N).name) };
  });

  app.get('/v1/appliances/:name/stunnel.conf', async (req, reply) => {
    const user = await deps.authenticate(req);
    return reply.type('text/plain; charset=utf-8').send(await appliances.stunnelConf(user, (req.params as N).name));
  });

  app.get('/v1/appliances/:name/files', async (req) => {
    const user = await deps.authenticate(req);
    return { files: await (await appliances.staticFiles(user, (req.params as N).name)).list() };
  });

  app.get('/v1/appliances/:name/files/*', async (req, reply) => {
    const user = await deps.authenticate(req);
    const { name, '*': path } = req.params as F;
    const e = await (await appliances.staticFiles(user, name)).entry(path);
    if (!e?.stats.isFile()) throw new EphError('NOT_FOUND', `file /${path} not found`);
    return sendRaw(reply, () => serveFile(req.raw, reply.raw, e));
  });

  app.delete('/v1/appliances/:name/files/*', async (req, reply) => {
    const user = await deps.authenticate(req);
    const { name, '*': path } = req.params as F;
    await (await appliances.staticFiles(user, name)).delete(path);
    return reply.status(204).send();
  });
}

function rawRoutes(app: FastifyInstance, deps: ApplianceRouteDeps): void {
  const { appliances } = deps;

  app.post('/v1/appliances/:name/restore', async (req) => {
    const user = await deps.authenticate(req);
    const rec = await appliances.restore(user, (req.params as N).name, bodyStream(req));
    return appliances.view(rec);
  });

  app.put('/v1/appliances/:name/psk', async (req) => {
    const user = await deps.authenticate(req);
    const text = await readText(bodyStream(req), MAX_PSK_BYTES);
    return { identities: await appliances.setPsk(user, (req.params as N).name, text) };
  });

  app.put('/v1/appliances/:name/files/*', async (req, reply) => {
    const user = await deps.authenticate(req);
    const { name, '*': path } = req.params as F;
    const { created, info } = await (await appliances.staticFiles(user, name)).put(path, bodyStream(req), true);
    return reply.status(created ? 201 : 200).header('etag', info.etag).send(info);
  });

  const dav = async (req: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    const user = await deps.authenticate(req);
    const { name } = req.params as N;
    const files = await appliances.staticFiles(user, name);
    return sendRaw(reply, () => handleWebDav(files, req.raw, reply.raw, `/v1/appliances/${name}/dav`));
  };
  const methods = ['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', ...WEBDAV_METHODS];
  app.route({ method: methods, url: '/v1/appliances/:name/dav', handler: dav });
  app.route({ method: methods, url: '/v1/appliances/:name/dav/*', handler: dav });
}

/** Hands the raw response to a node-style handler (range requests, WebDAV). */
async function sendRaw(reply: FastifyReply, handler: () => Promise<void> | void): Promise<FastifyReply> {
  reply.hijack();
  try {
    await handler();
  } catch {
    reply.raw.destroy();
  }
  return reply;
}

function bodyStream(req: FastifyRequest): Readable {
  const body = req.body;
  if (body instanceof Readable) return body;
  // No body at all (Content-Length: 0): an empty stream.
  return Readable.from([]);
}

async function readText(stream: Readable, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of stream) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
    n += b.length;
    if (n > limit) throw new EphError('INVALID_VALUE', `psk.txt is over ${limit} bytes`);
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8');
}
