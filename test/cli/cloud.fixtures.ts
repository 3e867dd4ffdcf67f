/**
 * The real cloud (src/server.ts startCloud) on loopback ports chosen by the
 * system, in a temporary data dir, with one user, for CLI tests that go all
 * the way through the API, the image store, the runtime and the gate.
 */
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../src/core/config.ts';
import type { Instance, User } from '../../src/core/types.ts';
import { startCloud, type Cloud } from '../../src/server.ts';
import { buildZip } from '../../examples/make-archives.ts';
import { driverIsolation } from '../helpers/driver-isolation.ts';

export interface CloudFixture {
  cloud: Cloud;
  user: User;
  /** EPH_URL, EPH_USER, EPH_TOKEN for the CLI. */
  env: Record<string, string>;
  dir: string;
  /** examples/node-app as a zip file on disk. */
  appZip: string;
  appZipBytes: Buffer;
  /** Publishes the node app straight through the service (set-up, not under test). */
  publish(name: string): Promise<Instance>;
  /** GET through the gate with the given Host: status and body. */
  viaGate(host: string, path?: string): Promise<{ status: number; body: string }>;
}


/** Starts the cloud; `cleanup` receives what must run when the tests are done. */
export async function startCloudFixture(cleanup: (fn: () => Promise<void>) => void, opts: { maxArchive?: string } = {}): Promise<CloudFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'eph-cli-'));
  // Apps run as an unprivileged sandbox user that must read the unpacked images.
  await chmod(dir, 0o755);
  // Its own namespace prefix and subnet: test files run side by side, and a
  // cloud's start-up recovery removes namespaces of its prefix it does not know.
  const cloud = await startCloud(
    loadConfig({ data: join(dir, 'data'), api: '127.0.0.1:0', gate: '127.0.0.1:0', idleTimeout: '30m', wakeTimeout: '20s', logLevel: 'warn', ...opts }, {}),
    { driverOptions: driverIsolation('c') },
  );
  cleanup(async () => {
    await cloud.close();
    await rm(dir, { recursive: true, force: true });
  });
  const { user, token } = await cloud.users.add('alice', 'standard');
  const appZipBytes = await buildZip(fileURLToPath(new URL('../../examples/node-app', import.meta.url)));
  const appZip = join(dir, 'node-app.zip');
  await writeFile(appZip, appZipBytes);
  const gatePort = cloud.gatePort;
  return {
    cloud,
    user,
    env: { EPH_URL: cloud.apiUrl, EPH_USER: user.id, EPH_TOKEN: token },
    dir,
    appZip,
    appZipBytes,
    publish: (name) => cloud.instances.publish(user, Readable.from([appZipBytes]), name),
    viaGate: (host, path = '/') =>
      new Promise((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port: gatePort, path, headers: { host } }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.setTimeout(30_000, () => req.destroy(new Error('gate request timed out')));
        req.on('error', reject);
        req.end();
      }),
  };
}
