import Fastify, { type FastifyInstance } from 'fastify';
import multipart from '@fastify/multipart';
import type { Logger } from 'pino';
import type { ApiDeps } from './deps.ts';
import { errorHandler } from './errors.ts';
import { registerArchiveParser } from './upload.ts';
import { compatRoutes } from './compat-routes.ts';
import { v1Routes } from './v1-routes.ts';
import { registerOpenApi } from './openapi.ts';
import { EphError } from '../core/errors.ts';
import { authenticate } from './auth.ts';
import { expectsContinue, hasBody } from './body.ts';

export interface ApiRoute {
  method: string;
  url: string;
}

const LISTED = new WeakMap<FastifyInstance, ApiRoute[]>();

/** The routes of an API built by {@link buildApi} (method + URL pattern), HEAD twins included. */
export function apiRoutesOf(app: FastifyInstance): ApiRoute[] {
  return [...(LISTED.get(app) ?? [])];
}

/** Routes anyone may call (all without a body); every other route authenticates. */
const PUBLIC_ROUTES = new Set(['/v1/openapi.json', '/v1/health', '/metrics']);

/** Builds the control API (compat + /v1) over the services; `extra` lets server.ts add route plugins (appliances). */
export async function buildApi(deps: ApiDeps, logger: Logger | false, extra: Array<(app: FastifyInstance) => void> = []): Promise<FastifyInstance> {
  const app = Fastify({
    // Per-request lines only at debug: the gate's access log is the request log that matters.
    loggerInstance: logger ? logger.child({ part: 'api' }, { level: logger.level === 'debug' || logger.level === 'trace' ? logger.level : 'warn' }) : undefined,
    logger: logger ? undefined : false,
    // Publishes stream past this limit; it bounds only the small JSON bodies.
    bodyLimit: 1024 * 1024,
    // The Pharo client waits up to 60 s for a publish answer; big uploads on slow links need longer.
    requestTimeout: 0,
    return503OnClosing: true,
    forceCloseConnections: true,
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;
  // `Expect: 100-continue` (curl sends it for bodies over 1 MB): the body is asked for only once the
  // request is authenticated (the hook below), so that a stranger's upload is not even sent.
  app.server.on('checkContinue', (req, res) => app.server.emit('request', req, res));
  await app.register(multipart);
  // Before any route: the OpenAPI document is generated from the routes registered after this.
  await registerOpenApi(app);
  registerArchiveParser(app);
  // curl scripts send `-d true` as a form body; parse those as text and read the value in the route.
  app.addContentTypeParser(['text/plain', 'application/x-www-form-urlencoded'], { parseAs: 'string' }, (_req, body, done) => done(null, body));
  // curl users add `Content-Type: application/json` to bodiless DELETEs and POSTs out of habit: an empty body is no body.
  const json = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const text = String(body);
    if (text.trim() === '') return done(null, undefined);
    return json(req, text, done);
  });
  // A request with a body is authenticated before a byte of it is read: a stranger's upload is
  // answered 401 at once and its connection closed (errors.ts), never read to its end.
  app.addHook('onRequest', async (req, reply) => {
    const url = req.routeOptions.url;
    if (url === undefined) return;
    if (!PUBLIC_ROUTES.has(url) && hasBody(req.raw)) {
      const pathUser = url.startsWith('/api/ephemerics/user/:userId') ? (req.params as { userId?: string }).userId : undefined;
      await authenticate(deps.users, req, pathUser);
    }
    if (expectsContinue(req.raw)) reply.raw.writeContinue();
  });
  // Every route, recorded as it is added, so that tests can demand a row for each (tenant-isolation matrix).
  const listed: ApiRoute[] = [];
  LISTED.set(app, listed);
  app.addHook('onRoute', (r) => {
    for (const method of Array.isArray(r.method) ? r.method : [r.method]) listed.push({ method: String(method), url: r.url });
  });
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((req, reply) => errorHandler(new EphError('NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`), req, reply));
  compatRoutes(app, deps);
  v1Routes(app, deps);
  for (const add of extra) add(app);
  return app;
}
