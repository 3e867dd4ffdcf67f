import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request } from 'undici';
import pino from 'pino';
import { loadConfig, type ConfigInput } from '../../src/core/config.ts';
import { startCloud, type Cloud, type CloudOptions } from '../../src/server.ts';

export const STANDIN_VM = resolve('test/fixtures/pharo-vm-standin');

let seq = 0;

export interface TestCloud extends Cloud {
  dataDir: string;
  alice: { id: string; token: string };
  /** Basic auth header for a user. */
  auth(u: { id: string; token: string }): string;
  /** GET through the gate with a Host header. */
  visit(host: string, path?: string, init?: { method?: 'GET' | 'POST'; body?: string | Buffer; headers?: Record<string, string> }): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }>;
}

/**
 * A whole cloud in this process on loopback ports 0, with its own data dir,
 * namespace prefix and subnet so that test files can run side by side.
 */
export async function startTestCloud(flags: ConfigInput = {}, opts: CloudOptions & { dataDir?: string; keepData?: boolean } = {}): Promise<TestCloud> {
  const n = (process.pid % 200) * 10 + (seq++ % 10);
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'eph-e2e-'));
  // The sandboxed apps run as nobody: the image store must be traversable.
  chmodSync(dataDir, 0o755);
  const config = loadConfig(
    { data: dataDir, api: '127.0.0.1:0', gate: '127.0.0.1:0', domain: 'eph.test', pharoVm: STANDIN_VM, logLevel: 'warn', ...flags },
    {},
  );
  const cloud = await startCloud(config, {
    logger: pino({ level: process.env.EPH_TEST_LOG ?? 'silent' }),
    driverOptions: { prefix: `e${n.toString(36)}`, subnet: `10.${215 + Math.floor(n / 256) % 20}.${n % 256}.0/24` },
    ...opts,
  });
  const { user, token } = await cloud.users.add(`alice${seq}`, 'standard');
  const auth = (u: { id: string; token: string }) => `Basic ${Buffer.from(`${u.id}:${u.token}`).toString('base64')}`;
  const close = cloud.close.bind(cloud);
  return Object.assign(cloud, {
    dataDir,
    alice: { id: user.id, token },
    auth,
    async close() {
      await close();
      if (!opts.keepData) rmSync(dataDir, { recursive: true, force: true });
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
