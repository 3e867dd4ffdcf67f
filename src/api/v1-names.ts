import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { User } from '../core/types.ts';
import type { NameRegistry } from '../services/names.ts';

type D = { domain: string };

/**
 * `/v1/names/:domain/verification`: the DNS TXT record that proves the
 * caller controls a domain, and whether this cloud requires it
 * (`--verify-domains`). The value is per user and per domain.
 */
export function nameRoutes(app: FastifyInstance, deps: { names: NameRegistry; authenticate: (req: FastifyRequest) => Promise<User> }): void {
  app.get('/v1/names/:domain/verification', async (req) => {
    const u = await deps.authenticate(req);
    const raw = (req.params as D).domain;
    const name = deps.names.claimable(raw.startsWith('*.') ? raw.slice(2) : raw, 'domain');
    const v = deps.names.verifier;
    if (!v) return { domain: name, required: false, record: `_ephemeric.${name}`, type: 'TXT', value: null, verified: null };
    return { ...v.record(u.id, name), required: true, verified: await v.verified(u.id, name) };
  });
}
