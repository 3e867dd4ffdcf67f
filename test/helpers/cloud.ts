import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { request } from 'undici';
import pino from 'pino';
import { standinVm } from './standin-vm.ts';
import { driverIsolation } from './driver-isolation.ts';
import { loadConfig, type ConfigInput } from '../../src/core/config.ts';
import { startCloud, type Cloud, type CloudOptions } from '../../src/server.ts';
import { zipFrom } from './archives.ts';
import { removeTree } from '../../src/images/fs-util.ts';

export const STANDIN_VM = standinVm();

let seq = 0;

export interface TestUser {
  id: string;
  token: string;
}

export interface ApiAnswer {
  status: number;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: unknown;
  text: string;
  headers: Record<string, string | string[] | undefined>;
}

export interface TestCloud extends Cloud {
  dataDir: string;
  alice: TestUser;
  /** Basic auth header for a user. */
  auth(u: TestUser): string;
  /** GET through the gate with a Host header. */
  visit(host: string, path?: string, init?: { method?: 'GET' | 'POST'; body?: string | Buffer; headers?: Record<string, string> }): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }>;
  /** Another user of this cloud (names are made unique). */
  addUser(name: string, plan?: string): Promise<TestUser>;
  /**
   * A call to the control API as `user` (default alice; null sends no
   * credentials). A `body` that is neither a Buffer nor an async iterable
   * (streamed, chunked) is sent as JSON.
   */
  api(method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, init?: { user?: TestUser | null; body?: unknown; headers?: Record<string, string> }): Promise<ApiAnswer>;
  /** The /v1 view of one of alice's instances (asserts a 200). */
  instance(host: string): Promise<{ isRunning: boolean; state: string; lastError: string | null }>;
  /** Publishes an archive as the Pharo client does (compat POST, raw body); answers the hostname. */
  publish(archive: Buffer, init?: { user?: TestUser; name?: string }): Promise<string>;
  /** `/api/ephemerics/user/<id>` of a user (default alice). */
  compatBase(user?: TestUser): string;
}

/**
 * A whole cloud in this process on loopback ports 0, with its own data dir,
 * namespace prefix and subnet so that test files can run side by side.
 * `opts.env` is the environment seen by the configuration (e.g. EPH_MAX_UNPACKED).
 */
export async function startTestCloud(
  flags: ConfigInput = {},
  opts: CloudOptions & { dataDir?: string; keepData?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<TestCloud> {
  seq++;
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'eph-e2e-'));
  // The sandboxed apps run as nobody: the image store must be traversable.
  chmodSync(dataDir, 0o755);
  const config = loadConfig(
    // Warm sleep off unless a test asks for it: on a loaded CI machine a slow test would otherwise see an
    // idle instance turn `frozen` after 60 s where it expects `running` (the warm-sleep tests set their own).
    { data: dataDir, api: '127.0.0.1:0', gate: '127.0.0.1:0', domain: 'eph.test', pharoVm: STANDIN_VM, logLevel: 'warn', warmIdleTimeout: '0', ...flags },
    opts.env ?? {},
  );
  const cloud = await startCloud(config, {
    logger: pino({ level: process.env.EPH_TEST_LOG ?? 'silent' }),
    driverOptions: driverIsolation('e'),
    ...opts,
  });
  const { user, token } = await cloud.users.add(`alice${seq}`, 'standard');
  const auth = (u: TestUser) => `Basic ${Buffer.from(`${u.id}:${u.token}`).toString('base64')}`;
  const alice = { id: user.id, token };
  const close = cloud.close.bind(cloud);
  let users = 0;
  const api: TestCloud['api'] = async (method, path, init = {}) => {
    const who = init.user === undefined ? alice : init.user;
    const headers: Record<string, string> = { ...(who ? { authorization: auth(who) } : {}) };
    let body: Buffer | string | Readable | undefined;
    if (Buffer.isBuffer(init.body)) body = init.body;
    else if (isAsyncIterable(init.body)) body = Readable.from(init.body);
    else if (init.body !== undefined) {
      body = JSON.stringify(init.body);
      headers['content-type'] = 'application/json';
    }
    Object.assign(headers, init.headers);
    const r = await request(`${cloud.apiUrl}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
    const text = await r.body.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: r.statusCode, json, text, headers: r.headers };
  };
  const compatBase = (u: TestUser = alice) => `/api/ephemerics/user/${u.id}`;
  return Object.assign(cloud, {
    dataDir,
    alice,
    auth,
    api,
    compatBase,
    async addUser(name: string, plan = 'standard') {
      const r = await cloud.users.add(`${name}${++users}x${seq}`, plan);
      return { id: r.user.id, token: r.token };
    },
    async instance(host: string) {
      const r = await api('GET', `/v1/instances/${host}`);
      assert.equal(r.status, 200, r.text);
      return r.json as { isRunning: boolean; state: string; lastError: string | null };
    },
    async publish(archive: Buffer, init: { user?: TestUser; name?: string } = {}) {
      const r = await api('POST', compatBase(init.user), {
        user: init.user ?? alice,
        body: archive,
        headers: { 'content-type': 'application/zip', 'x-name': init.name ?? 'app.zip' },
      });
      if (r.status !== 200 || typeof r.json !== 'string') throw new Error(`publish failed: ${r.status} ${r.text}`);
      return r.json;
    },
    async close() {
      await close();
      // Images are read-only trees (0555): a non-root user must make them writable to delete them.
      if (!opts.keepData) {
        if (process.getuid?.() === 0) rmSync(dataDir, { recursive: true, force: true });
        else await removeTree(dataDir);
      }
    },
    async visit(host: string, path = '/', init: { method?: 'GET' | 'POST'; body?: string | Buffer; headers?: Record<string, string> } = {}) {
      const r = await request(`${cloud.gateUrl}${path}`, {
        method: init.method ?? 'GET',
        headers: { host, ...init.headers },
        ...(init.body !== undefined ? { body: init.body } : {}),
      });
      return { status: r.statusCode, body: await r.body.text(), headers: r.headers };
    },
  });
}

function isAsyncIterable(v: unknown): v is AsyncIterable<Buffer> {
  return typeof v === 'object' && v !== null && Symbol.asyncIterator in v;
}

/** Polls `check` until it answers a truthy value (returned) or `timeoutMs` passes (throws naming `what`). */
export async function until<T>(what: string, check: () => T | Promise<T>, timeoutMs = 10_000, everyMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A Procfile app as a zip: `web: node app.mjs` with the given source (and more files). */
export function procfileApp(appSource: string, more: Record<string, string> = {}): Promise<Buffer> {
  return zipFrom([
    { name: 'Procfile', data: 'web: node app.mjs\n' },
    { name: 'app.mjs', data: appSource },
    ...Object.entries(more).map(([name, data]) => ({ name, data })),
  ]);
}
