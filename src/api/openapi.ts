import swagger, { type FastifyDynamicSwaggerOptions, type SwaggerTransformObject } from '@fastify/swagger';
import type { FastifyInstance } from 'fastify';
import { ERROR_CATALOGUE } from '../core/errors.ts';

const json = (schema: object) => ({ content: { 'application/json': { schema } } });
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const ok = (schema: object, description = 'OK') => ({ description, ...json(schema) });
const errors = { default: { description: 'Error (see the error catalogue)', ...json(ref('Error')) } };
const hostParam = { name: 'host', in: 'path', required: true, description: 'Instance hostname or alias', schema: { type: 'string' } };
const domainParam = { name: 'domain', in: 'path', required: true, schema: { type: 'string' } };
const nameParam = { name: 'name', in: 'path', required: true, description: 'Appliance name', schema: { type: 'string' } };
const runParam = { name: 'id', in: 'path', required: true, description: 'CI run id', schema: { type: 'string' } };
const filePathParam = { name: '*', in: 'path', required: true, description: 'File path inside the site', schema: { type: 'string' } };
/** A static site's WebDAV share: one description per method (the methods the route registers are listed). */
const davOperations = Object.fromEntries(
  ['get', 'head', 'put', 'delete', 'options', 'propfind', 'proppatch', 'mkcol', 'copy', 'move', 'lock', 'unlock'].map((m) => [
    m,
    { summary: `WebDAV ${m.toUpperCase()} on a static site's files (class 1 and 2, see docs/appliances.md)`, responses: { 200: { description: 'The WebDAV answer' }, ...errors } },
  ]),
);
const configView = {
  type: 'object',
  properties: {
    hostname: { type: 'string' },
    vars: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          name: { type: 'string' },
          value: { type: 'string', nullable: true, description: 'null when redacted' },
          secret: { type: 'boolean' },
          redacted: { type: 'boolean' },
          attachment: { type: 'string', nullable: true, description: 'the appliance whose attachment set it' },
          updatedAt: { type: 'string' },
        },
      },
    },
    appliesAt: { type: 'string', enum: ['next start'] },
    restarted: { type: 'boolean' },
  },
};
const attachmentView = {
  type: 'object',
  properties: { hostname: { type: 'string' }, appliance: { type: 'string' }, var: { type: 'string' }, local: { type: 'string', description: '127.0.0.1:PORT inside the instance' }, createdAt: { type: 'string' } },
};

/**
 * Registers the generator of the /v1 OpenAPI document. It must run before any route is added: the
 * document's paths are the routes the app registers (collected by @fastify/swagger as they are added,
 * with their schemas), so that no route can be missing from it and no removed route stays in it.
 * The hand-written operations below only describe them (summaries, bodies, answers).
 */
export async function registerOpenApi(app: FastifyInstance): Promise<void> {
  const { paths: _described, ...base } = DOC;
  await app.register(swagger, {
    openapi: base as FastifyDynamicSwaggerOptions['openapi'],
    // The compat API and /metrics are described elsewhere (docs/api.md): only /v1 goes in.
    transform: ({ schema, url }) => ({ schema: url.startsWith('/v1/') ? schema : { ...schema, hide: true }, url }),
    transformObject: (doc) =>
      'openapiObject' in doc ? ({ ...doc.openapiObject, paths: describedPaths((doc.openapiObject.paths ?? {}) as Paths) } as ReturnType<SwaggerTransformObject>) : doc.swaggerObject,
  });
}

/** The /v1 API described for clients and generators; built once (after the app is ready), served at /v1/openapi.json. */
export function openApiDocument(app: FastifyInstance): object {
  return app.swagger();
}

type Operation = { [field: string]: unknown; parameters?: Parameter[]; responses?: Record<string, unknown>; summary?: string };
type Parameter = { name: string; in: string; [field: string]: unknown };
type PathItem = { [method: string]: unknown; parameters?: Parameter[] };
type Paths = Record<string, PathItem>;

/** The operations OpenAPI 3.1 allows in a path item; WebDAV's (PROPFIND, COPY…) go under x-additionalOperations. */
const OPERATION_FIELDS = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']);

/**
 * The generated paths (one per registered /v1 route), each operation completed by its hand-written
 * description when there is one; a route nobody described yet still appears, with its path parameters.
 */
export function describedPaths(generated: Paths): Paths {
  const written = DOC.paths as Paths;
  const out: Paths = {};
  for (const [path, item] of Object.entries(generated)) {
    // A trailing-slash twin (accepted as the original API did) shares the description of its path.
    const w: PathItem = written[path] ?? written[path.replace(/(.)\/$/, '$1')] ?? {};
    const shared = w.parameters ?? [];
    const merged: PathItem = shared.length > 0 ? { parameters: shared } : {};
    for (const [key, value] of Object.entries(item)) {
      if (key === 'parameters' || key === 'additionalOperations') continue;
      const op = describedOperation(value as Operation, w[key] as Operation | undefined, shared);
      if (OPERATION_FIELDS.has(key)) merged[key] = op;
      else merged['x-additionalOperations'] = { ...(merged['x-additionalOperations'] as object | undefined), [key.toUpperCase()]: op };
    }
    out[path] = merged;
  }
  return out;
}

/** "METHOD /path" of every hand-written description, so that a test can refuse one whose route is gone. */
export function handWrittenOperations(): string[] {
  return Object.entries(DOC.paths as Paths).flatMap(([path, item]) =>
    Object.keys(item)
      .filter((k) => k !== 'parameters')
      .map((k) => `${k.toUpperCase()} ${path}`),
  );
}

function describedOperation(generated: Operation, written: Operation | undefined, shared: Parameter[]): Operation {
  // Path parameters are generated for every operation; the hand-written ones (with descriptions) win.
  const own = written?.parameters ?? [];
  const known = new Set([...shared, ...own].map((p) => `${p.in}:${p.name}`));
  const parameters = [...(generated.parameters ?? []).filter((p) => !known.has(`${p.in}:${p.name}`)), ...own];
  const op: Operation = {
    ...generated,
    ...(written ?? { summary: 'Not described yet (see docs/api.md)', responses: { ...generated.responses, ...errors } }),
  };
  if (parameters.length > 0) op.parameters = parameters;
  else delete op.parameters;
  return op;
}

const DOC = {
  openapi: '3.1.0',
  info: {
    title: 'Ephemeric API',
    version: '1',
    description:
      'Modern API of Ephemeric. The original Pharocloud API lives at /api/ephemerics/user/{userID} and is kept byte-compatible. Authenticate with HTTP Basic (userID:token).',
  },
  components: {
    securitySchemes: { basic: { type: 'http', scheme: 'basic' } },
    schemas: {
      Error: {
        type: 'object',
        required: ['error'],
        properties: {
          error: {
            type: 'object',
            required: ['code', 'message'],
            properties: { code: { type: 'string', enum: Object.keys(ERROR_CATALOGUE) }, message: { type: 'string' } },
          },
        },
      },
      Instance: {
        type: 'object',
        properties: {
          hostname: { type: 'string', example: 'eph-865894e7.eph.localhost' },
          alias: { type: ['string', 'null'] },
          imageName: { type: 'string' },
          isRunning: { type: 'boolean' },
          state: { type: 'string', enum: ['asleep', 'starting', 'running', 'frozen', 'failed'] },
          accessTime: { type: 'string', format: 'date-time' },
          createdTime: { type: 'string', format: 'date-time' },
          url: { type: 'string' },
          lastError: { type: ['string', 'null'] },
          imageDigest: { type: 'string' },
        },
      },
      GateTarget: { type: 'object', required: ['hostname', 'weight'], properties: { hostname: { type: 'string' }, weight: { type: 'integer', minimum: 0, maximum: 100 } } },
      GateRoute: {
        type: 'object',
        properties: {
          domain: { type: 'string' },
          targets: { type: 'array', items: ref('GateTarget') },
          healthPath: { type: 'string' },
          httpsRedirect: { type: 'boolean' },
          updatedAt: { type: 'integer' },
        },
      },
      RouteChange: {
        type: 'object',
        properties: {
          domain: { type: 'string' },
          at: { type: 'integer' },
          by: { type: 'string' },
          action: { type: 'string' },
          from: { type: 'array', items: ref('GateTarget') },
          to: { type: 'array', items: ref('GateTarget') },
        },
      },
      GateCert: {
        type: 'object',
        description: 'A certificate, uploaded or automatic (ACME); the key is never shown',
        properties: {
          domain: { type: 'string', example: 'www.example.org' },
          source: { type: 'string', enum: ['uploaded', 'acme'] },
          status: { type: 'string', enum: ['pending', 'valid', 'renewing', 'failed'], description: 'An upload is valid; an automatic one is pending until first issued' },
          lastError: { type: 'string', nullable: true, description: "Why the last automatic order failed, in the ACME server's words" },
          nextAttempt: { type: 'integer', nullable: true, description: 'Automatic: when the next order (renewal or retry) is due, epoch milliseconds' },
          notAfter: { type: 'integer', nullable: true, description: 'Expiry, epoch milliseconds; null while none was issued' },
          expires: { type: 'string', format: 'date-time', nullable: true },
          names: { type: 'array', items: { type: 'string' } },
          subject: { type: 'string' },
          issuer: { type: 'string' },
          updatedAt: { type: 'integer' },
          active: { type: 'boolean', description: 'Served now: its owner still holds the domain' },
        },
      },
    },
  },
  security: [{ basic: [] }],
  paths: {
    '/v1/openapi.json': { get: { security: [], summary: 'This document, generated from the routes the server registers', responses: { 200: ok({ type: 'object' }) } } },
    '/v1/health': { get: { security: [], summary: 'Liveness', responses: { 200: ok({ type: 'object' }) } } },
    '/v1/metrics': {
      get: { summary: "Gate requests of the caller's own hosts, by host and status (Prometheus text)", responses: { 200: { description: 'Prometheus text' }, ...errors } },
    },
    '/v1/me': { get: { summary: 'The authenticated user and plan', responses: { 200: ok({ type: 'object' }), ...errors } } },
    '/v1/instances': {
      get: { summary: 'List instances', responses: { 200: ok({ type: 'object', properties: { instances: { type: 'array', items: ref('Instance') } } }), ...errors } },
      post: {
        summary: 'Publish an archive (zip, tar, tar.gz) as a new, sleeping instance',
        parameters: [{ name: 'X-Name', in: 'header', schema: { type: 'string' } }],
        requestBody: {
          content: {
            'application/zip': { schema: { type: 'string', format: 'binary' } },
            'application/gzip': { schema: { type: 'string', format: 'binary' } },
            'application/x-tar': { schema: { type: 'string', format: 'binary' } },
            'multipart/form-data': { schema: { type: 'object', properties: { archive: { type: 'string', format: 'binary' } } } },
          },
        },
        responses: { 201: ok(ref('Instance'), 'Created'), ...errors },
      },
    },
    '/v1/instances/{host}': {
      parameters: [hostParam],
      get: { summary: 'One instance', responses: { 200: ok(ref('Instance')), ...errors } },
      patch: {
        summary: 'Change alias, imageName or running',
        requestBody: json({ type: 'object', properties: { alias: { type: ['string', 'null'] }, imageName: { type: 'string' }, running: { type: 'boolean' } } }),
        responses: { 200: ok(ref('Instance')), ...errors },
      },
      delete: { summary: 'Stop and delete', responses: { 200: ok({ type: 'object' }), ...errors } },
    },
    '/v1/instances/{host}/start': { parameters: [hostParam], post: { summary: 'Start (within the plan limit)', responses: { 200: ok(ref('Instance')), ...errors } } },
    '/v1/instances/{host}/stop': { parameters: [hostParam], post: { summary: 'Stop', responses: { 200: ok(ref('Instance')), ...errors } } },
    '/v1/instances/{host}/logs': {
      parameters: [
        hostParam,
        { name: 'tail', in: 'query', schema: { type: 'integer' }, description: 'Bytes from the end (default 65536)' },
        { name: 'follow', in: 'query', schema: { type: 'boolean' } },
      ],
      get: { summary: 'The instance log (stdout and stderr)', responses: { 200: { description: 'Log text', content: { 'text/plain': { schema: { type: 'string' } } } }, ...errors } },
    },
    '/v1/gate/routes': { get: { summary: 'Gate routes', responses: { 200: ok({ type: 'object', properties: { routes: { type: 'array', items: ref('GateRoute') } } }), ...errors } } },
    '/v1/gate/routes/{domain}': {
      parameters: [domainParam],
      get: { summary: 'One route', responses: { 200: ok(ref('GateRoute')), ...errors } },
      put: {
        summary: 'Map a domain to an instance, or split it by weight (health-gated)',
        requestBody: json({
          type: 'object',
          properties: {
            hostname: { type: 'string' },
            targets: { type: 'array', items: ref('GateTarget') },
            healthPath: { type: 'string' },
            httpsRedirect: { type: 'boolean' },
            skipHealth: { type: 'boolean' },
          },
        }),
        responses: { 200: ok(ref('GateRoute')), ...errors },
      },
      delete: { summary: 'Unmap', responses: { 200: ok({ type: 'object' }), ...errors } },
    },
    '/v1/gate/promote': {
      post: {
        summary: 'Point `to` at the instance(s) `from` serves',
        requestBody: json({ type: 'object', required: ['from', 'to'], properties: { from: { type: 'string' }, to: { type: 'string' } } }),
        responses: { 200: ok(ref('GateRoute')), ...errors },
      },
    },
    '/v1/gate/routes/{domain}/rollback': { parameters: [domainParam], post: { summary: 'Back to the previous targets', responses: { 200: ok(ref('GateRoute')), ...errors } } },
    '/v1/gate/routes/{domain}/history': {
      parameters: [domainParam],
      get: { summary: 'Who changed the route, when, from what to what', responses: { 200: ok({ type: 'object', properties: { history: { type: 'array', items: ref('RouteChange') } } }), ...errors } },
    },
    '/v1/gate/certs': {
      get: { summary: 'Your uploaded certificates with their expiry', responses: { 200: ok({ type: 'object', properties: { certs: { type: 'array', items: ref('GateCert') } } }), ...errors } },
    },
    '/v1/gate/certs/{domain}': {
      parameters: [{ ...domainParam, description: 'A domain you route (gate route or alias), or *.parent for a wildcard' }],
      get: { summary: 'One certificate', responses: { 200: ok(ref('GateCert')), ...errors } },
      put: {
        summary: 'Upload the certificate the gate serves by SNI for the domain (400 with the reason when the cert does not cover the domain or does not match the key)',
        requestBody: json({ type: 'object', required: ['cert', 'key'], properties: { cert: { type: 'string', description: 'PEM chain, leaf first' }, key: { type: 'string', description: 'PEM private key' } } }),
        responses: { 200: ok(ref('GateCert')), ...errors },
      },
      delete: { summary: 'Delete it (and turn automatic HTTPS off for the domain): the gate serves its default certificate again', responses: { 200: ok({ type: 'object' }), ...errors } },
    },
    '/v1/gate/certs/{domain}/acme': {
      parameters: [{ ...domainParam, description: 'A domain you route (gate route or alias); not a wildcard' }],
      post: {
        summary: 'Automatic HTTPS: the cloud orders the certificate from its ACME directory now (HTTP-01, answered by the gate) and renews it; 202 while the order runs, 429 past the orders per hour, 503 when automatic HTTPS is off',
        responses: { 202: ok(ref('GateCert')), ...errors },
      },
    },
    '/v1/instances/{host}/config': {
      parameters: [hostParam],
      get: {
        summary: "The instance's config vars; secrets redacted (value null) unless ?reveal=true. They reach the app as environment variables at its next start",
        parameters: [{ name: 'reveal', in: 'query', required: false, schema: { type: 'boolean' } }],
        responses: { 200: ok(configView), ...errors },
      },
      patch: {
        summary: 'Set and unset several config vars at once, all or nothing (400 bad or reserved name, 413 CONFIG_TOO_LARGE past the plan); restart: restart a running instance now',
        requestBody: json({
          type: 'object',
          properties: {
            set: { type: 'object', additionalProperties: { type: 'string' } },
            unset: { type: 'array', items: { type: 'string' } },
            secret: { type: 'boolean', description: 'the values set are secrets (shown redacted)' },
            restart: { type: 'boolean' },
          },
        }),
        responses: { 200: ok(configView), ...errors },
      },
    },
    '/v1/instances/{host}/config/{key}': {
      parameters: [hostParam, { name: 'key', in: 'path', required: true, schema: { type: 'string' } }],
      delete: { summary: 'Remove one config var (404 when not set); ?restart=true restarts a running instance', responses: { 200: ok(configView), ...errors } },
    },
    '/v1/instances/{host}/attachments': {
      parameters: [hostParam],
      get: { summary: 'Appliances attached to the instance', responses: { 200: ok({ type: 'object', properties: { attachments: { type: 'array', items: attachmentView } } }), ...errors } },
    },
    '/v1/instances/{host}/attachments/{appliance}': {
      parameters: [hostParam, { name: 'appliance', in: 'path', required: true, schema: { type: 'string' } }],
      post: {
        summary: 'Attach your appliance: a TLS-PSK tunnel inside the instance from its next start, and a secret config var (DATABASE_URL…) with the local URL',
        requestBody: json({ type: 'object', properties: { as: { type: 'string' }, restart: { type: 'boolean' } } }),
        responses: { 201: ok(attachmentView), ...errors },
      },
      delete: { summary: "Detach: the var and the tunnel's identity are deleted; the identity is refused at once", responses: { 200: ok({ type: 'object' }), ...errors } },
    },
    // Described briefly here; the full story is in docs/appliances.md, docs/ci.md and docs/console.md.
    '/v1/appliances': {
      get: { summary: 'Your appliances (postgres, redis, static, mongo)', responses: { 200: ok({ type: 'object' }), ...errors } },
      post: { summary: 'Create an appliance; answers it with its TLS-PSK identity (see docs/appliances.md)', responses: { 201: ok({ type: 'object' }, 'Created'), ...errors } },
    },
    '/v1/appliances/{name}': {
      parameters: [nameParam],
      get: { summary: 'One appliance', responses: { 200: ok({ type: 'object' }), ...errors } },
      delete: { summary: 'Stop and delete it with its data', responses: { 204: { description: 'Deleted' }, ...errors } },
    },
    '/v1/appliances/{name}/start': { parameters: [nameParam], post: { summary: 'Start', responses: { 200: ok({ type: 'object' }), ...errors } } },
    '/v1/appliances/{name}/stop': { parameters: [nameParam], post: { summary: 'Stop', responses: { 200: ok({ type: 'object' }), ...errors } } },
    '/v1/appliances/{name}/backup': {
      parameters: [nameParam],
      get: { summary: 'A backup (pg_dump, RDB file or tar.gz of the files)', responses: { 200: { description: 'The backup, as an attachment' }, ...errors } },
    },
    '/v1/appliances/{name}/restore': { parameters: [nameParam], post: { summary: 'Restore a backup sent as the body', responses: { 200: ok({ type: 'object' }), ...errors } } },
    '/v1/appliances/{name}/psk': {
      parameters: [nameParam],
      get: { summary: 'The TLS-PSK identity and key of the stunnel client', responses: { 200: ok({ type: 'object' }), ...errors } },
      put: { summary: 'A new key (the old one is refused from then on)', responses: { 200: ok({ type: 'object' }), ...errors } },
    },
    '/v1/appliances/{name}/stunnel.conf': {
      parameters: [nameParam],
      get: { summary: 'A ready stunnel client configuration', responses: { 200: { description: 'stunnel configuration', content: { 'text/plain': { schema: { type: 'string' } } } }, ...errors } },
    },
    '/v1/appliances/{name}/files': { parameters: [nameParam], get: { summary: "A static site's files", responses: { 200: ok({ type: 'object' }), ...errors } } },
    '/v1/appliances/{name}/files/{*}': {
      parameters: [nameParam, filePathParam],
      get: { summary: 'One file (ETag, ranges)', responses: { 200: { description: 'The file' }, ...errors } },
      put: { summary: 'Write a file (the body); 201 when new', responses: { 200: ok({ type: 'object' }), 201: ok({ type: 'object' }, 'Created'), ...errors } },
      delete: { summary: 'Delete a file', responses: { 204: { description: 'Deleted' }, ...errors } },
    },
    '/v1/appliances/{name}/dav': { parameters: [nameParam], ...davOperations },
    '/v1/appliances/{name}/dav/{*}': { parameters: [nameParam, filePathParam], ...davOperations },
    '/v1/ci/runs': {
      get: { summary: 'Your CI runs, newest first (the last 100)', responses: { 200: ok({ type: 'object' }), ...errors } },
      post: {
        summary: 'Create a run (its time to live starts)',
        requestBody: json({ type: 'object', properties: { name: { type: 'string' }, ttlSeconds: { type: 'integer' } } }),
        responses: { 201: ok({ type: 'object' }, 'Created'), ...errors },
      },
    },
    '/v1/ci/runs/{id}': { parameters: [runParam], get: { summary: 'One run', responses: { 200: ok({ type: 'object' }), ...errors } } },
    '/v1/ci/runs/{id}/junit': {
      parameters: [runParam],
      get: { summary: 'The results as JUnit XML', responses: { 200: { description: 'JUnit XML', content: { 'application/xml': { schema: { type: 'string' } } } }, ...errors } },
    },
    '/v1/ci/runs/{id}/archive': { parameters: [runParam], post: { summary: "Publish the run's archive as its instance (as POST /v1/instances)", responses: { 201: ok({ type: 'object' }, 'Created'), ...errors } } },
    '/v1/ci/runs/{id}/finish': {
      parameters: [runParam],
      post: { summary: 'End the run: status, steps and per-test results (see docs/ci.md)', responses: { 200: ok({ type: 'object' }), ...errors } },
    },
    '/v1/session': {
      post: { summary: "The web console's sign-in (HTTP Basic): a session cookie and a CSRF token", responses: { 201: ok({ type: 'object' }, 'Signed in'), ...errors } },
      get: { summary: "The cookie's session, with its CSRF token", responses: { 200: ok({ type: 'object' }), ...errors } },
      delete: { summary: 'Sign out: the session is removed and the cookie cleared', responses: { 200: ok({ type: 'object' }), ...errors } },
    },
    '/v1/names/{domain}/verification': {
      parameters: [domainParam],
      get: {
        summary: 'The DNS TXT record proving you control the domain, and whether this cloud requires it (--verify-domains)',
        responses: {
          200: ok({
            type: 'object',
            properties: {
              domain: { type: 'string' },
              record: { type: 'string', description: '_ephemeric.<domain>' },
              type: { type: 'string', enum: ['TXT'] },
              value: { type: 'string', nullable: true, description: 'null when verification is not required' },
              required: { type: 'boolean' },
              verified: { type: 'boolean', nullable: true },
            },
          }),
          ...errors,
        },
      },
    },
  },
};
