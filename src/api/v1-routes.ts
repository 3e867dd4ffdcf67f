import type { FastifyInstance, FastifyRequest } from 'fastify';
import { createHash, timingSafeEqual } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { EphError } from '../core/errors.ts';
import type { GateTarget, User } from '../core/types.ts';
import type { ApiDeps } from './deps.ts';
import { authenticate } from './auth.ts';
import { readUpload } from './upload.ts';
import { MAX_IMAGE_NAME } from '../services/publish-quota.ts';
import { instanceView } from './views.ts';
import { openApiDocument } from './openapi.ts';
import { followLog } from './log-follow.ts';

type H = { host: string };
type D = { domain: string };

/** The modern API: same services as the compat API, JSON errors from the one catalogue, described at /v1/openapi.json. */
export function v1Routes(app: FastifyInstance, deps: ApiDeps): void {
  const user = (req: FastifyRequest): Promise<User> => authenticate(deps.users, req);
  const view = (i: Parameters<typeof instanceView>[0]) => instanceView(i, deps.gatePort);
  const routes = () => {
    if (!deps.routes) throw new EphError('UNAVAILABLE', 'the gate route service is not configured');
    return deps.routes;
  };

  app.get('/v1/openapi.json', async () => openApiDocument(app));
  app.get('/v1/health', async () => ({ ok: true }));
  // Scraped by Prometheus without credentials, as is customary: so it names no host (they are
  // tenants' business). The operator's token (EPH_METRICS_TOKEN) adds every host's series.
  app.get('/metrics', async (req, reply) => {
    let text = deps.metrics ? deps.metrics() : '';
    const auth = req.headers.authorization;
    if (auth !== undefined && /^bearer /i.test(auth)) {
      if (!deps.metricsToken || !sameSecret(auth.slice(7).trim(), deps.metricsToken)) {
        throw new EphError('UNAUTHORIZED', 'wrong metrics token (EPH_METRICS_TOKEN of the server)');
      }
      if (deps.hostMetrics) text += deps.hostMetrics(null);
    }
    return reply.type('text/plain; version=0.0.4').send(text);
  });
  // A tenant's own hosts, by host and status (Prometheus text; scrape with the user's credentials).
  app.get('/v1/metrics', async (req, reply) => {
    const u = await user(req);
    return reply.type('text/plain; version=0.0.4').send(deps.hostMetrics ? deps.hostMetrics(u.id) : '');
  });

  app.get('/v1/me', async (req) => {
    const u = await user(req);
    const plan = deps.users.plan(u.plan);
    return { userID: u.id, name: u.name, plan: u.plan, maxRunning: plan.maxRunning };
  });

  app.post('/v1/instances', async (req, reply) => {
    const u = await user(req);
    const upload = await readUpload(req, deps.maxArchiveBytes, 'archive');
    const inst = await deps.instances.publish(u, upload.stream, upload.name);
    return reply.status(201).send(view(inst));
  });

  app.get('/v1/instances', async (req) => {
    const u = await user(req);
    return { instances: (await deps.instances.list(u)).map(view) };
  });

  app.get('/v1/instances/:host', async (req) => {
    const u = await user(req);
    return view(await deps.instances.get(u, (req.params as H).host));
  });

  app.patch('/v1/instances/:host', async (req) => {
    const u = await user(req);
    const { host } = req.params as H;
    const body = req.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new EphError('BAD_REQUEST', 'expected a JSON object with alias, imageName and/or running');
    }
    const b = body as Record<string, unknown>;
    const unknown = Object.keys(b).filter((k) => !['alias', 'imageName', 'running'].includes(k));
    if (unknown.length) throw new EphError('BAD_REQUEST', `unknown field(s): ${unknown.join(', ')}`);
    // Validate every field before changing anything: a refused field leaves the others unchanged too.
    if ('running' in b && typeof b.running !== 'boolean') throw new EphError('INVALID_VALUE', 'running must be true or false');
    if ('imageName' in b && (typeof b.imageName !== 'string' || !b.imageName || b.imageName.length > MAX_IMAGE_NAME)) {
      throw new EphError('INVALID_VALUE', `imageName must be a non-empty string of at most ${MAX_IMAGE_NAME} characters`);
    }
    if ('alias' in b && b.alias !== null && typeof b.alias !== 'string') throw new EphError('INVALID_VALUE', 'alias must be a string or null');
    const before = await deps.instances.get(u, host);
    if (b.running === true && before.state !== 'running' && before.state !== 'starting') {
      // The one refusal that could come after the alias changed: check the plan's room first.
      const busy = (await deps.instances.list(u)).filter((i) => i.state === 'running' || i.state === 'starting').length;
      const plan = deps.users.plan(u.plan);
      if (busy >= plan.maxRunning) {
        throw new EphError('QUOTA_EXCEEDED', `plan '${plan.name}' allows ${plan.maxRunning} running instance${plan.maxRunning === 1 ? '' : 's'}; stop one first`);
      }
    }
    // The alias goes first: of the changes, only it can still be refused (syntax, another owner).
    if ('alias' in b) await deps.instances.setAlias(u, host, b.alias);
    if ('imageName' in b) await deps.instances.setImageName(u, host, b.imageName);
    if ('running' in b) await deps.instances.setRunning(u, host, b.running);
    return view(await deps.instances.get(u, host));
  });

  app.post('/v1/instances/:host/start', async (req) => {
    const u = await user(req);
    const { host } = req.params as H;
    await deps.instances.setRunning(u, host, true);
    return view(await deps.instances.get(u, host));
  });

  app.post('/v1/instances/:host/stop', async (req) => {
    const u = await user(req);
    const { host } = req.params as H;
    await deps.instances.setRunning(u, host, false);
    return view(await deps.instances.get(u, host));
  });

  app.delete('/v1/instances/:host', async (req) => {
    const u = await user(req);
    return { deleted: view(await deps.instances.remove(u, (req.params as H).host)) };
  });

  app.get('/v1/instances/:host/logs', async (req, reply) => {
    const u = await user(req);
    const inst = await deps.instances.get(u, (req.params as H).host);
    const q = req.query as Record<string, string | undefined>;
    const file = deps.instances.logFile(inst.hostname);
    const size = await stat(file).then((s) => s.size, () => 0);
    const tail = q.tail !== undefined ? Number(q.tail) : 64 * 1024;
    if (!Number.isInteger(tail) || tail < 0) throw new EphError('BAD_REQUEST', 'tail must be a number of bytes');
    const start = Math.max(0, size - tail);
    reply.type('text/plain; charset=utf-8');
    if (q.follow === '1' || q.follow === 'true') return reply.send(followLog(file, start, req.raw));
    if (size === 0) return reply.send('');
    return reply.send(createReadStream(file, { start }));
  });

  // ---- gate routes ------------------------------------------------------

  app.get('/v1/gate/routes', async (req) => {
    const u = await user(req);
    return { routes: await routes().list(u.id) };
  });

  app.get('/v1/gate/routes/:domain', async (req) => {
    const u = await user(req);
    return routes().get(u.id, (req.params as D).domain);
  });

  app.put('/v1/gate/routes/:domain', async (req) => {
    const u = await user(req);
    const b = objectBody(req.body);
    const domain = (req.params as D).domain;
    const opts = {
      by: u.name,
      ...(typeof b.healthPath === 'string' ? { healthPath: b.healthPath } : {}),
      ...(typeof b.httpsRedirect === 'boolean' ? { httpsRedirect: b.httpsRedirect } : {}),
      ...(b.skipHealth === true ? { skipHealth: true } : {}),
    };
    if (Array.isArray(b.targets)) return routes().split(u.id, domain, targetsOf(b.targets), u.name, opts);
    if (typeof b.hostname !== 'string') throw new EphError('BAD_REQUEST', 'expected {"hostname": "eph-…"} or {"targets": [{"hostname","weight"}]}');
    return routes().map(u.id, domain, b.hostname, opts);
  });

  app.delete('/v1/gate/routes/:domain', async (req) => {
    const u = await user(req);
    const domain = (req.params as D).domain;
    await routes().unmap(u.id, domain, u.name);
    return { unmapped: domain };
  });

  app.post('/v1/gate/promote', async (req) => {
    const u = await user(req);
    const b = objectBody(req.body);
    if (typeof b.from !== 'string' || typeof b.to !== 'string') throw new EphError('BAD_REQUEST', 'expected {"from": DOMAIN, "to": DOMAIN}');
    return routes().promote(u.id, b.from, b.to, u.name, b.skipHealth === true ? { skipHealth: true } : {});
  });

  app.post('/v1/gate/routes/:domain/rollback', async (req) => {
    const u = await user(req);
    const b = req.body ? objectBody(req.body) : {};
    return routes().rollback(u.id, (req.params as D).domain, u.name, b.skipHealth === true ? { skipHealth: true } : {});
  });

  app.get('/v1/gate/routes/:domain/history', async (req) => {
    const u = await user(req);
    return { history: await routes().history(u.id, (req.params as D).domain) };
  });
}

function objectBody(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new EphError('BAD_REQUEST', 'expected a JSON object');
  return body as Record<string, unknown>;
}

function targetsOf(raw: unknown[]): GateTarget[] {
  return raw.map((t, i) => {
    const o = t as Record<string, unknown>;
    if (typeof o?.hostname !== 'string' || typeof o.weight !== 'number') {
      throw new EphError('BAD_REQUEST', `targets[${i}]: expected {"hostname": string, "weight": number}`);
    }
    return { hostname: o.hostname, weight: o.weight };
  });
}

/** Compares a presented secret with the expected one in time that does not depend on where they differ. */
function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}
