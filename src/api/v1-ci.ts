import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { CiRun } from '../ci/ci-run.ts';
import type { CiService } from '../ci/ci-service.ts';
import { toJunitXml } from '../ci/test-report.ts';
import type { User } from '../core/types.ts';
import { readUpload } from './upload.ts';

type I = { id: string };

/** The run as the API shows it: the owner's id is the caller's own, so it is left out. */
function runView(run: CiRun, gatePort: number): Omit<CiRun, 'userId'> & { url: string | null } {
  const { userId: _owner, ...rest } = run;
  const port = gatePort === 80 ? '' : `:${gatePort}`;
  return { ...rest, url: run.hostname ? `http://${run.hostname}${port}/` : null };
}

/**
 * `/v1/ci/runs`: CI runs recorded by the server (docs/ci.md). The client creates a run (its time to
 * live starts), uploads the archive as the run's instance, runs the tests, then reports the end; the
 * server deletes the instance at the end, or when the time to live passes, whatever the client does.
 */
export function ciRoutes(
  app: FastifyInstance,
  deps: { ci: CiService; maxArchiveBytes: number; gatePort: number; authenticate: (req: FastifyRequest) => Promise<User> },
): void {
  const { ci } = deps;
  const view = (r: CiRun) => runView(r, deps.gatePort);

  app.post('/v1/ci/runs', async (req, reply) => {
    const u = await deps.authenticate(req);
    return reply.status(201).send(view(await ci.create(u, req.body)));
  });

  app.get('/v1/ci/runs', async (req) => {
    const u = await deps.authenticate(req);
    return { runs: (await ci.list(u)).map(view) };
  });

  app.get('/v1/ci/runs/:id', async (req) => {
    const u = await deps.authenticate(req);
    return view(await ci.get(u, (req.params as I).id));
  });

  app.get('/v1/ci/runs/:id/junit', async (req, reply) => {
    const u = await deps.authenticate(req);
    const run = await ci.get(u, (req.params as I).id);
    return reply.type('application/xml; charset=utf-8').send(toJunitXml(`${run.name} (${run.id})`, run.tests));
  });

  app.post('/v1/ci/runs/:id/archive', async (req, reply) => {
    const u = await deps.authenticate(req);
    const id = (req.params as I).id;
    // Ownership first: another user's run id is refused before a byte of the archive is read.
    await ci.get(u, id);
    const upload = await readUpload(req, deps.maxArchiveBytes, 'archive');
    return reply.status(201).send(view(await ci.publish(u, id, upload.stream, upload.name)));
  });

  app.post('/v1/ci/runs/:id/finish', async (req) => {
    const u = await deps.authenticate(req);
    return view(await ci.finish(u, (req.params as I).id, req.body));
  });
}
