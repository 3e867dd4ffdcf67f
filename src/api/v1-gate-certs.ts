import type { FastifyInstance, FastifyRequest } from 'fastify';
import { EphError } from '../core/errors.ts';
import type { User } from '../core/types.ts';
import type { CertService } from '../gate/cert-service.ts';

type D = { domain: string };

/**
 * `/v1/gate/certs`: per-domain certificates the gate serves by SNI. Keys go
 * in and are never shown again.
 */
export function gateCertRoutes(app: FastifyInstance, deps: { certs: CertService; authenticate: (req: FastifyRequest) => Promise<User> }): void {
  const { certs } = deps;

  app.get('/v1/gate/certs', async (req) => {
    const u = await deps.authenticate(req);
    return { certs: await certs.list(u.id) };
  });

  app.get('/v1/gate/certs/:domain', async (req) => {
    const u = await deps.authenticate(req);
    return certs.get(u.id, (req.params as D).domain);
  });

  app.put('/v1/gate/certs/:domain', async (req) => {
    const u = await deps.authenticate(req);
    const b = req.body;
    if (typeof b !== 'object' || b === null || Array.isArray(b)) throw new EphError('BAD_REQUEST', 'expected {"cert": PEM, "key": PEM}');
    const { cert, key } = b as Record<string, unknown>;
    if (typeof cert !== 'string' || typeof key !== 'string') throw new EphError('BAD_REQUEST', 'expected {"cert": PEM, "key": PEM} as JSON strings');
    return certs.put(u.id, (req.params as D).domain, cert, key);
  });

  app.delete('/v1/gate/certs/:domain', async (req) => {
    const u = await deps.authenticate(req);
    const domain = (req.params as D).domain;
    await certs.remove(u.id, domain);
    return { deleted: domain };
  });
}
