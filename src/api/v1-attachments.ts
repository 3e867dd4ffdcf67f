import type { FastifyInstance, FastifyRequest } from 'fastify';
import { EphError } from '../core/errors.ts';
import type { User } from '../core/types.ts';
import type { AttachmentService } from '../services/attachments.ts';
import type { ConfigVarService } from '../services/config-vars.ts';
import { flag } from './v1-config.ts';

type H = { host: string };
type A = { host: string; appliance: string };

export interface AttachmentRouteDeps {
  attachments: AttachmentService;
  configVars: ConfigVarService;
  authenticate: (req: FastifyRequest) => Promise<User>;
}

const NOTE = 'the tunnel opens and the config var reaches the app at its next start (restart: true to restart it now)';

/**
 * `/v1/instances/:host/attachments`: GET lists them; POST
 * `…/attachments/:appliance` `{"as": "DATABASE_URL", "restart": false}`
 * attaches the user's appliance; DELETE detaches it (its identity is
 * revoked at once). Another user's instance or appliance is 404.
 */
export function attachmentRoutes(app: FastifyInstance, deps: AttachmentRouteDeps): void {
  const { attachments, configVars } = deps;

  app.get('/v1/instances/:host/attachments', async (req) => {
    const user = await deps.authenticate(req);
    return { attachments: await attachments.list(user, (req.params as H).host) };
  });

  app.post('/v1/instances/:host/attachments/:appliance', async (req, reply) => {
    const user = await deps.authenticate(req);
    const b = req.body ?? {};
    if (typeof b !== 'object' || b === null || Array.isArray(b)) throw new EphError('BAD_REQUEST', 'expected a JSON object {"as": "NAME", "restart": false} or no body');
    const body = b as Record<string, unknown>;
    const unknown = Object.keys(body).filter((k) => k !== 'as' && k !== 'restart');
    if (unknown.length) throw new EphError('BAD_REQUEST', `unknown field(s): ${unknown.join(', ')} (expected as, restart)`);
    if (body.as !== undefined && typeof body.as !== 'string') throw new EphError('BAD_REQUEST', 'as: expected a config var name');
    if (body.restart !== undefined && typeof body.restart !== 'boolean') throw new EphError('BAD_REQUEST', 'restart: expected true or false');
    const { host, appliance } = req.params as A;
    const view = await attachments.attach(user, appliance, host, { as: body.as as string | undefined });
    const restarted = body.restart === true ? await configVars.restartIfRunning(user, view.hostname) : false;
    return reply.status(201).send({ ...view, restarted, note: NOTE });
  });

  app.delete('/v1/instances/:host/attachments/:appliance', async (req) => {
    const user = await deps.authenticate(req);
    const { host, appliance } = req.params as A;
    const restart = flag((req.query as Record<string, unknown>).restart, 'restart');
    const view = await attachments.detach(user, appliance, host);
    const restarted = restart ? await configVars.restartIfRunning(user, view.hostname) : false;
    return { detached: view, restarted };
  });
}
