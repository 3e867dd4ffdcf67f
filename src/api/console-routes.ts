import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { EphError } from '../core/errors.ts';

/**
 * The console's only sources: its own script and style sheet, no inline code,
 * nothing from another origin; it talks to this API only (connect-src).
 */
export const CONSOLE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** The files of the built console (scripts/build-console.mjs), by the URL they are served at. */
const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/console/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/console/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
};

const NOT_BUILT = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Ephemeric</title></head>
<body><h1>Ephemeric</h1><p>The web console is not built. Run <code>npm run build</code> in the Ephemeric directory, then reload this page.</p>
<p>The API answers at <a href="/v1/openapi.json">/v1/openapi.json</a>.</p></body></html>
`;

/** dist/console of the installation: found from this module, whether it runs from src/ or from the dist/cli bundle. */
export function defaultConsoleDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'dist', 'console');
    const up = dirname(dir);
    if (up === dir) return join(process.cwd(), 'dist', 'console');
    dir = up;
  }
}

/**
 * Serves the web console at `/` (index.html, /console/app.js, /console/app.css)
 * with a strict Content-Security-Policy; read from disk on each request (a few
 * KiB) so that a rebuild shows without a restart. ETag + `no-cache`: the
 * browser revalidates and gets 304 while the file is unchanged. When the
 * console is not built, `/` says how to build it.
 */
export function consoleRoutes(app: FastifyInstance, opts: { dir?: string } = {}): void {
  const dir = opts.dir ?? defaultConsoleDir();
  const serve = async (req: FastifyRequest, reply: FastifyReply, path: string): Promise<FastifyReply> => {
    const f = FILES[path]!;
    securityHeaders(reply);
    const body = await readFile(join(dir, f.file)).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return null;
      throw e;
    });
    if (body === null) {
      if (path !== '/') throw new EphError('NOT_FOUND', `the console is not built (npm run build): no ${path}`);
      return reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(NOT_BUILT);
    }
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
    reply.header('etag', etag).header('cache-control', 'no-cache');
    if (req.headers['if-none-match'] === etag) return reply.status(304).send();
    return reply.type(f.type).send(body);
  };
  app.get('/', (req, reply) => serve(req, reply, '/'));
  app.get('/console/:file', (req, reply) => {
    const path = `/console/${(req.params as { file: string }).file}`;
    if (!(path in FILES)) throw new EphError('NOT_FOUND', `no console file ${path}`);
    return serve(req, reply, path);
  });
}

function securityHeaders(reply: FastifyReply): void {
  reply
    .header('content-security-policy', CONSOLE_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'no-referrer')
    .header('cross-origin-opener-policy', 'same-origin');
}
