import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { Validator } from '@seriousme/openapi-schema-validator';
import { startTestCloud, type TestCloud } from '../helpers/cloud.ts';
import { handWrittenOperations } from '../../src/api/openapi.ts';

/**
 * The OpenAPI document at /v1/openapi.json (issue 9 item 5) is generated from the routes the
 * server registers: every /v1 route the API records (method + path, an independent list kept by
 * app.ts) is in it, everything in it is a registered route, it is valid OpenAPI 3.1 (the official
 * schema, plus what that schema leaves optional: responses, declared path parameters),
 * and the hand-written descriptions survive the generation.
 */

const OPERATIONS = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']);

interface Operation {
  summary?: unknown;
  responses?: Record<string, unknown>;
  parameters?: Array<{ name?: unknown; in?: unknown; required?: unknown }>;
}
type PathItem = Record<string, unknown> & { parameters?: Operation['parameters']; 'x-additionalOperations'?: Record<string, Operation> };
interface Doc {
  openapi?: unknown;
  info?: { title?: unknown; version?: unknown };
  paths?: Record<string, PathItem>;
  components?: { schemas?: Record<string, unknown> };
}

let cloud: TestCloud;
let doc: Doc;
/** The same document, as the validator takes it. */
let raw: Record<string, unknown>;

before(async () => {
  cloud = await startTestCloud();
  // Public, as a code generator fetches it: no credentials.
  const r = await request(`${cloud.apiUrl}/v1/openapi.json`);
  assert.equal(r.statusCode, 200);
  raw = (await r.body.json()) as Record<string, unknown>;
  doc = raw as Doc;
});

after(async () => {
  await cloud?.close();
});

/** Fastify's `/v1/x/:name/files/*` as an OpenAPI path template: `/v1/x/{name}/files/{*}`. */
function templateOf(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/\*$/, '{*}');
}

/** "METHOD /template" of every /v1 route the API registered; HEAD twins of GET routes are Fastify's, not routes of ours. */
function registered(): Set<string> {
  const routes = cloud.apiRoutes.filter((r) => r.url.startsWith('/v1/'));
  const gets = new Set(routes.filter((r) => r.method === 'GET').map((r) => r.url));
  return new Set(routes.filter((r) => !(r.method === 'HEAD' && gets.has(r.url))).map((r) => `${r.method} ${templateOf(r.url)}`));
}

/** "METHOD /template" of every operation in the document, with its operation object. */
function documented(): Map<string, Operation> {
  const out = new Map<string, Operation>();
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const [key, value] of Object.entries(item)) {
      if (OPERATIONS.has(key)) out.set(`${key.toUpperCase()} ${path}`, value as Operation);
    }
    for (const [method, op] of Object.entries(item['x-additionalOperations'] ?? {})) out.set(`${method} ${path}`, op);
  }
  return out;
}

test('every registered /v1 route is in the document', () => {
  const routes = registered();
  // A sanity floor: the API has dozens of /v1 routes (instances, gate, certs, config, appliances, CI…).
  assert.ok(routes.size > 30, `only ${routes.size} /v1 routes registered`);
  const ops = documented();
  const missing = [...routes].filter((r) => !ops.has(r) && !(r.startsWith('HEAD ') && ops.has(`GET ${r.slice(5)}`)));
  assert.deepEqual(missing, [], 'registered but not in /v1/openapi.json');
  for (const probe of ['PROPFIND', 'COPY', 'LOCK']) {
    assert.ok(routes.has(`${probe} /v1/appliances/{name}/dav/{*}`), `the WebDAV route answers ${probe}`);
  }
});

test('every documented operation is a registered route', () => {
  const routes = registered();
  const extra = [...documented().keys()].filter((k) => !routes.has(k) && !(k.startsWith('HEAD ') && routes.has(`GET ${k.slice(5)}`)));
  assert.deepEqual(extra, [], 'in /v1/openapi.json but not registered');
  for (const path of Object.keys(doc.paths ?? {})) assert.ok(path.startsWith('/v1/'), `${path}: only the /v1 API is described`);
});

test('every hand-written description is of a registered route (none left behind by a removed route)', () => {
  const routes = registered();
  const stale = handWrittenOperations().filter((k) => !routes.has(k) && !(k.startsWith('HEAD ') && routes.has(`GET ${k.slice(5)}`)));
  assert.deepEqual(stale, [], 'described in src/api/openapi.ts but not registered');
});

test('the document is structurally valid OpenAPI 3.x', async () => {
  // Against the official JSON schema of its OpenAPI version (3.1: no unknown operation names, etc.).
  const validator = new Validator();
  const result = await validator.validate(raw);
  assert.deepEqual(result.errors ?? [], [], 'invalid against the OpenAPI schema');
  assert.equal(result.valid, true);
  assert.equal(validator.version, '3.1');
  assert.match(String(doc.openapi), /^3\.\d+\.\d+$/);
  assert.equal(typeof doc.info?.title, 'string');
  assert.equal(typeof doc.info?.version, 'string');
  assert.equal(typeof doc.paths, 'object');
  const schemas = doc.components?.schemas ?? {};
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const key of Object.keys(item)) {
      assert.ok(OPERATIONS.has(key) || key === 'parameters' || key.startsWith('x-'), `${path}: "${key}" is not a field of a path item`);
    }
    const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
    for (const [name, op] of documented()) {
      if (!name.endsWith(` ${path}`)) continue;
      assert.equal(typeof op.summary, 'string', `${name}: summary`);
      assert.ok(op.responses && Object.keys(op.responses).length > 0, `${name}: an operation needs responses`);
      // Every template variable is declared as a required path parameter, on the path or the operation.
      const declared = [...(item.parameters ?? []), ...(op.parameters ?? [])].filter((p) => p.in === 'path');
      for (const v of templated) {
        const p = declared.find((d) => d.name === v);
        assert.ok(p, `${name}: path parameter {${v}} not declared`);
        assert.equal(p.required, true, `${name}: path parameter {${v}} must be required`);
      }
      for (const p of declared) assert.ok(templated.includes(String(p.name)), `${name}: parameter ${String(p.name)} is not in the path`);
    }
  }
  // Every $ref points at a schema the document defines.
  const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1]);
  assert.ok(refs.length > 0);
  for (const r of refs) assert.ok(r in schemas, `$ref to undefined schema ${r}`);
});

test('the hand-written descriptions are kept', () => {
  const ops = documented();
  assert.equal(ops.get('GET /v1/instances')?.summary, 'List instances');
  const publish = ops.get('POST /v1/instances') as (Operation & { requestBody?: { content?: Record<string, unknown> } }) | undefined;
  assert.ok(publish?.requestBody?.content?.['application/zip'], 'the publish body is described');
  assert.ok(publish?.responses?.['201'], 'publish answers 201');
  const host = doc.paths?.['/v1/instances/{host}']?.parameters?.find((p) => p.name === 'host') as { description?: unknown } | undefined;
  assert.equal(host?.description, 'Instance hostname or alias');
});
