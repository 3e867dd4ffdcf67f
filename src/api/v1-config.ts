import type { FastifyInstance, FastifyRequest } from 'fastify';
import { EphError } from '../core/errors.ts';
import type { User } from '../core/types.ts';
import type { ConfigVarService, ConfigView } from '../services/config-vars.ts';

type H = { host: string };
type K = { host: string; key: string };

export interface ConfigRouteDeps {
  configVars: ConfigVarService;
  authenticate: (req: FastifyRequest) => Promise<User>;
}

/** What every answer about config vars adds, so that nobody expects a running app to see a change by itself. */
const NOTE = 'values reach the app as environment variables at its next start (restart: true to restart it now)';

/**
 * `/v1/instances/:host/config`: the instance's config vars (GET, secrets
 * redacted unless `?reveal=true`), PATCH `{"set": {"K": "V"}, "unset":
 * ["K"], "secret": true, "restart": true}` changing several at once, DELETE
 * `…/config/:key`. Another user's instance is 404. Bodies are never logged.
 */
export function configRoutes(app: FastifyInstance, deps: ConfigRouteDeps): void {
  const { configVars } = deps;
  const answer = async (user: User, view: ConfigView, restart: boolean) => {
    const restarted = restart ? await configVars.restartIfRunning(user, view.hostname) : false;
    return { ...view, restarted, note: NOTE };
  };

  app.get('/v1/instances/:host/config', async (req) => {
    const user = await deps.authenticate(req);
    const reveal = flag((req.query as Record<string, unknown>).reveal, 'reveal');
    return { ...(await configVars.view(user, (req.params as H).host, reveal)), note: NOTE };
  });

  app.patch('/v1/instances/:host/config', async (req) => {
    const user = await deps.authenticate(req);
    const b = req.body;
    if (typeof b !== 'object' || b === null || Array.isArray(b)) {
      throw new EphError('BAD_REQUEST', 'expected a JSON object {"set": {"NAME": "value"}, "unset": ["NAME"], "secret": false, "restart": false}');
    }
    const body = b as Record<string, unknown>;
    const unknown = Object.keys(body).filter((k) => !['set', 'unset', 'secret', 'restart'].includes(k));
    if (unknown.length) throw new EphError('BAD_REQUEST', `unknown field(s): ${unknown.join(', ')} (expected set, unset, secret, restart)`);
    const set = body.set ?? {};
    if (typeof set !== 'object' || set === null || Array.isArray(set)) throw new EphError('BAD_REQUEST', 'set: expected an object of NAME: "value"');
    for (const [k, v] of Object.entries(set)) {
      // The value itself is never quoted back: it may be a secret.
      if (typeof v !== 'string') throw new EphError('INVALID_VALUE', `config var ${k}: the value must be a JSON string`);
    }
    const unset = body.unset ?? [];
    if (!Array.isArray(unset) || unset.some((u) => typeof u !== 'string')) throw new EphError('BAD_REQUEST', 'unset: expected an array of names');
    if (body.secret !== undefined && typeof body.secret !== 'boolean') throw new EphError('BAD_REQUEST', 'secret: expected true or false');
    if (body.restart !== undefined && typeof body.restart !== 'boolean') throw new EphError('BAD_REQUEST', 'restart: expected true or false');
    const view = await configVars.change(user, (req.params as H).host, { set: set as Record<string, string>, unset: unset as string[], secret: body.secret === true });
    return answer(user, view, body.restart === true);
  });

  app.delete('/v1/instances/:host/config/:key', async (req) => {
    const user = await deps.authenticate(req);
    const { host, key } = req.params as K;
    const restart = flag((req.query as Record<string, unknown>).restart, 'restart');
    return answer(user, await configVars.unset(user, host, key), restart);
  });
}

/** `?reveal=true|1|false|0` (absent: false). */
export function flag(raw: unknown, name: string): boolean {
  if (raw === undefined || raw === 'false' || raw === '0') return false;
  if (raw === 'true' || raw === '1' || raw === '') return true;
  throw new EphError('BAD_REQUEST', `${name}: expected true or false`);
}
