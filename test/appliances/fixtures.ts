// Shared pieces of the appliance tests: a real SQLite store with a user, an
// ApplianceService over a temporary data directory, and a client tunnel to an
// appliance's TLS-PSK endpoint.
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { systemClock } from '../../src/core/clock.ts';
import type { ApplianceRecord, User } from '../../src/core/types.ts';
import { ApplianceService } from '../../src/appliances/appliance-service.ts';
import { openSqliteStore } from '../../src/store/sqlite/open.ts';
import type { SqlStore } from '../../src/store/sql-store.ts';
import { choosePskIdentity } from '../../src/tunnel/psk-file.ts';
import { startPskClient } from '../../src/tunnel/psk-client.ts';
import type { PskClient } from '../../src/tunnel/psk-client.ts';

type After = Pick<TestContext, 'after'>;

export interface Cloud {
  dir: string;
  store: SqlStore;
  user: User;
  other: User;
  appliances: ApplianceService;
  /** A second service over the same store and data, as after a restart of the cloud. */
  restart(): Promise<ApplianceService>;
}

/**
 * A store, two users and an ApplianceService in a temporary directory that
 * the unprivileged database accounts can traverse. Torn down after the tests.
 */
export async function startCloud(t: After): Promise<Cloud> {
  const dir = mkdtempSync(join(tmpdir(), 'eph-appl-'));
  chmodSync(dir, 0o711);
  const store = await openSqliteStore(join(dir, 'store.db'));
  const user: User = { id: 'a1a1a1a1a1a1a1a1', name: 'alice', plan: 'free', tokenHash: 'x:y', createdAt: Date.now() };
  const other: User = { id: 'b2b2b2b2b2b2b2b2', name: 'bob', plan: 'free', tokenHash: 'x:y', createdAt: Date.now() };
  await store.createUser(user);
  await store.createUser(other);
  const make = (): ApplianceService =>
    new ApplianceService({ store, dataDir: join(dir, 'appliances'), publicHost: '127.0.0.1', clock: systemClock });
  const services: ApplianceService[] = [make()];
  t.after(async () => {
    for (const s of services) await s.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    dir,
    store,
    user,
    other,
    appliances: services[0]!,
    async restart(): Promise<ApplianceService> {
      const s = make();
      services.push(s);
      await s.load();
      return s;
    },
  };
}

/** Our Node client tunnel to the appliance's endpoint on a free local port, with its first identity. */
export async function tunnelTo(t: After, rec: ApplianceRecord): Promise<PskClient> {
  const { identity, key } = choosePskIdentity(new Map(Object.entries(rec.psk)));
  const client = await startPskClient({ local: { host: '127.0.0.1', port: 0 }, remote: { host: '127.0.0.1', port: rec.publicPort }, identity, key });
  t.after(() => client.close());
  return client;
}

/** The URL with its port replaced by the tunnel's actual local port. */
export function throughTunnel(url: string, localPort: number): string {
  const u = new URL(url);
  u.port = String(localPort);
  return u.toString();
}

/** Local addresses (as `a.b.c.d`) of the TCP sockets listening on `port`, from /proc/net/tcp and tcp6. */
export function listeningAddresses(port: number): string[] {
  const out: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 4 || f[3] !== '0A') continue; // 0A = LISTEN
      const [addr, p] = f[1]!.split(':') as [string, string];
      if (parseInt(p, 16) !== port) continue;
      out.push(addr.length === 8 ? ipv4(addr) : `ipv6:${addr}`);
    }
  }
  return out;
}

function ipv4(hex: string): string {
  // /proc prints the address in host (little-endian) byte order.
  return [6, 4, 2, 0].map((i) => parseInt(hex.slice(i, i + 2), 16)).join('.');
}
