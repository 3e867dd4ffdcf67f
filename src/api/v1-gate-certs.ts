import type { FastifyInstance, FastifyRequest } from 'fastify';
import { EphError } from '../core/errors.ts';
import type { User } from '../core/types.ts';
import type { AcmeService } from '../gate/acme-service.ts';
import type { CertService } from '../gate/cert-service.ts';

type D = { domain: string };

/**
 * `/v1/gate/certs`: per-domain certificates the gate serves by SNI, uploaded
 * (keys go in and are never shown again) or automatic (ACME: `POST
 * …/:domain/acme` turns it on and orders now; `DELETE` turns it off).
 */
export function gateCertRoutes(
  app: FastifyInstance,
  deps: { certs: CertService; acme: AcmeService | null; authenticate: (req: FastifyRequest) => Promise<User> },
): void {
  const { certs, acme } = deps;

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

  // 202: the order runs in the background; GET shows pending → valid, or failed with the directory's error.
  app.post('/v1/gate/certs/:domain/acme', async (req, reply) => {
    const u = await deps.authenticate(req);
    const domain = (req.params as D).domain;
    if (acme === null) {
      // Whose name it is comes first, so that another tenant's name is refused the same way on every cloud.
      await certs.checkHolder(u.id, domain);
      throw new EphError('UNAVAILABLE', 'automatic HTTPS is off on this cloud: the operator turns it on with --acme-email or --acme-directory (and --gate-tls)');
    }
    const view = await acme.request(u.id, domain);
    return reply.code(202).send(view);
  });

  app.delete('/v1/gate/certs/:domain', async (req) => {
    const u = await deps.authenticate(req);
    const domain = (req.params as D).domain;
    await certs.remove(u.id, domain);
    return { deleted: domain };
  });
}
