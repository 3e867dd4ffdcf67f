import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { GateRoute, Instance } from '../../src/core/types.ts';
import type { StoredCert } from '../../src/store/cert-store.ts';
import { RoutingTable } from '../../src/gate/routing-table.ts';
import { NameRegistry, type NameStore } from '../../src/services/names.ts';
import { checkClaimableName, isIpLiteral, normalizeName } from '../../src/services/public-name.ts';

const DOMAIN = 'eph.test';
const SITE = `site.static.${DOMAIN}`;
const HA = `eph-0000000a.${DOMAIN}`;
const HB = `eph-0000000b.${DOMAIN}`;

/** Stored claims as plain arrays: the SQL stores answer the same questions. */
class Claims implements NameStore {
  routes: GateRoute[] = [];
  instances: Instance[] = [];
  certs: StoredCert[] = [];
  async getRoute(d: string) {
    return this.routes.find((r) => r.domain === d) ?? null;
  }
  async listRoutes() {
    return [...this.routes];
  }
  async findInstance(h: string) {
    return this.instances.find((i) => i.hostname === h || i.alias === h) ?? null;
  }
  async listInstances() {
    return [...this.instances];
  }
  async getCert(d: string) {
    return this.certs.find((c) => c.domain === d) ?? null;
  }
  async listCerts() {
    return [...this.certs];
  }
}

function instance(hostname: string, userId: string, alias: string | null): Instance {
  return { hostname, userId, alias, imageDigest: 'x', imageName: 'a', state: 'asleep', createdAt: 0, accessAt: 0, lastError: null, upstream: null };
}
const route = (domain: string, userId: string): GateRoute => ({ domain, userId, targets: [{ hostname: HA, weight: 100 }], healthPath: '/', httpsRedirect: false, updatedAt: 0 });
const cert = (domain: string, userId: string): StoredCert => ({ domain, userId, cert: '', key: '', notAfter: 0, updatedAt: 0 });

function world() {
  const table = new RoutingTable();
  const claims = new Claims();
  const names = new NameRegistry({ table, cloudDomain: DOMAIN, store: claims });
  return { table, claims, names };
}

async function refused(p: Promise<unknown>, code: string, status: number, message?: RegExp): Promise<void> {
  await assert.rejects(p, (e: Error & { code?: string; status?: number }) => {
    assert.equal(e.code, code, e.message);
    assert.equal(e.status, status);
    if (message) assert.match(e.message, message);
    return true;
  });
}

test('names are compared in one spelling: lower case, no trailing dot, no port', () => {
  assert.equal(normalizeName('WWW.Example.ORG.'), 'www.example.org');
  assert.equal(normalizeName('*.Alice.Test.'), '*.alice.test');
  assert.equal(normalizeName('www.example.org:8080'), null);
  assert.equal(normalizeName('a..b'), null);
  assert.equal(normalizeName(42), null);
});

test('IP literals in every spelling are recognised, DNS names are not', () => {
  for (const ip of ['127.0.0.1', '127.0.0.1.', '[::1]', '::1', '::ffff:127.0.0.1', '[fe80::1]', '10.1', '2130706433', '0x7f.0.0.1']) assert.ok(isIpLiteral(ip), ip);
  for (const name of ['www.example.org', 'eph-1.eph.test', '1password.com', 'x.y0']) assert.ok(!isIpLiteral(name), name);
});

test("claims of platform names (the cloud's domain and below) are 409; localhost and IP literals are 400", () => {
  for (const n of [DOMAIN, `${DOMAIN}.`, 'EPH.TEST', HA, SITE, `x.${DOMAIN}`, `*.${DOMAIN}`, `*.static.${DOMAIN}`]) {
    assert.throws(() => checkClaimableName(n, DOMAIN), { code: 'CONFLICT', status: 409, message: /belong to the platform/ }, n);
  }
  for (const n of ['localhost', 'LOCALHOST.', 'app.localhost', '127.0.0.1', '[::1]', '::1', '[::ffff:10.0.0.1]', '169.254.169.254', '*.localhost', '']) {
    assert.throws(() => checkClaimableName(n, DOMAIN), { code: 'INVALID_HOSTNAME', status: 400 }, n);
  }
  assert.equal(checkClaimableName('Shop.Example.Org.', DOMAIN), 'shop.example.org');
});

test("releasing a name removes it only for its holder: B clearing an alias never deletes A's static site", () => {
  const { table, names } = world();
  names.bind(SITE, { kind: 'static', userId: 'alice' }, [{ hostname: SITE, weight: 1 }]);
  assert.equal(names.release(SITE, { kind: 'alias', userId: 'bob' }), false);
  assert.equal(names.release(SITE, { kind: 'alias', userId: 'alice' }), false, 'the same user, another kind');
  assert.equal(names.release(SITE, { kind: 'static', userId: 'bob' }), false, 'the same kind, another user');
  assert.deepEqual(table.get(SITE)?.targets, [{ hostname: SITE, weight: 1 }]);
  assert.equal(names.release(`${SITE.toUpperCase()}.`, { kind: 'static', userId: 'alice' }), true);
  assert.equal(table.get(SITE), undefined);
});

test("a tenant cannot overwrite another holder's table entry; a platform name displaces a stale tenant claim", () => {
  const { table, names } = world();
  names.bind('www.example.org', { kind: 'route', userId: 'alice' }, [{ hostname: HA, weight: 100 }]);
  const version = table.version;
  assert.throws(() => names.bind('WWW.example.org', { kind: 'alias', userId: 'bob' }, [{ hostname: HB, weight: 1 }]), { code: 'CONFLICT' });
  assert.throws(() => names.bind('www.example.org', { kind: 'alias', userId: 'alice' }, [{ hostname: HB, weight: 1 }]), { code: 'CONFLICT' });
  assert.equal(table.version, version);
  assert.deepEqual(table.get('www.example.org')?.targets, [{ hostname: HA, weight: 100 }]);
  // An alias stored before names were checked must not shadow a static site at start-up.
  names.bindLoaded(SITE, { kind: 'alias', userId: 'bob' }, [{ hostname: HB, weight: 1 }]);
  names.bindLoaded(SITE, { kind: 'static', userId: 'alice' }, [{ hostname: SITE, weight: 1 }]);
  assert.deepEqual(names.holderOf(SITE), { kind: 'static', userId: 'alice' });
  assert.equal(names.release(SITE, { kind: 'alias', userId: 'bob' }), false);
  assert.deepEqual(table.get(SITE)?.targets, [{ hostname: SITE, weight: 1 }]);
});

test("claims of another user's route, alias or certificate-covered name are 409; the holder's own claim passes", async () => {
  const { claims, names } = world();
  claims.routes.push(route('www.alice.test', 'alice'));
  claims.instances.push(instance(HA, 'alice', 'app.alice.test'));
  claims.certs.push(cert('*.alice.test', 'alice'), cert('shop.carol.test', 'carol'));
  await refused(names.checkClaim('bob', 'WWW.alice.test.', 'alias'), 'CONFLICT', 409, /gate domain of another user/);
  await refused(names.checkClaim('bob', 'app.alice.test', 'gate domain'), 'CONFLICT', 409, /alias of another user/);
  // Nobody routes new.alice.test, but alice's wildcard certificate covers it.
  await refused(names.checkClaim('bob', 'new.alice.test', 'alias'), 'CONFLICT', 409, /covered by another user's certificate \(\*\.alice\.test\)/);
  await refused(names.checkClaim('bob', 'shop.carol.test', 'alias'), 'CONFLICT', 409, /certificate/);
  // A wildcard covers one label: deeper names and the apex are free.
  assert.equal(await names.checkClaim('bob', 'a.b.alice.test', 'alias'), 'a.b.alice.test');
  assert.equal(await names.checkClaim('bob', 'alice.test', 'alias'), 'alice.test');
  assert.equal(await names.checkClaim('alice', 'new.alice.test', 'alias'), 'new.alice.test');
  assert.equal(await names.checkClaim('alice', 'www.alice.test', 'gate domain'), 'www.alice.test');
});

test("a wildcard claim over another user's names is 409", async () => {
  const { claims, names } = world();
  claims.instances.push(instance(HB, 'bob', 'x.shared.test'));
  await refused(names.checkClaim('alice', '*.shared.test', 'certificate domain'), 'CONFLICT', 409, /x\.shared\.test/);
  claims.instances.length = 0;
  claims.routes.push(route('y.shared.test', 'bob'));
  await refused(names.checkClaim('alice', '*.shared.test', 'certificate domain'), 'CONFLICT', 409, /y\.shared\.test/);
  claims.routes.length = 0;
  claims.certs.push(cert('z.shared.test', 'bob'));
  await refused(names.checkClaim('alice', '*.shared.test', 'certificate domain'), 'CONFLICT', 409, /z\.shared\.test/);
  claims.certs.length = 0;
  // Held only in the routing table (this process): still seen.
  names.bind('w.shared.test', { kind: 'alias', userId: 'bob' }, [{ hostname: HB, weight: 1 }]);
  await refused(names.checkClaim('alice', '*.shared.test', 'certificate domain'), 'CONFLICT', 409, /w\.shared\.test/);
  names.release('w.shared.test', { kind: 'alias', userId: 'bob' });
  assert.equal(await names.checkClaim('alice', '*.Shared.Test.', 'certificate domain'), '*.shared.test');
});

test('claims of one name run one at a time', async () => {
  const { names } = world();
  const order: string[] = [];
  let release!: () => void;
  const first = names.exclusive('www.example.org', async () => {
    order.push('first in');
    await new Promise<void>((r) => (release = r));
    order.push('first out');
  });
  const second = names.exclusive('www.example.org', async () => {
    order.push('second');
  });
  const other = names.exclusive('other.example.org', async () => {
    order.push('other');
  });
  await other;
  release();
  await Promise.all([first, second]);
  assert.deepEqual(order, ['first in', 'other', 'first out', 'second']);
});

test('the registry is the only writer of the routing table in src/', async () => {
  // A second writer would bypass the owner checks: every table.set/delete outside names.ts is a finding.
  const { readdir, readFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const root = join(import.meta.dirname, '..', '..', 'src');
  const writers: string[] = [];
  for (const rel of await readdir(root, { recursive: true })) {
    if (!rel.endsWith('.ts') || rel === join('services', 'names.ts') || rel === join('gate', 'routing-table.ts')) continue;
    const text = await readFile(join(root, rel), 'utf8');
    for (const m of text.matchAll(/\b(?:#?table|#?o\.table)\.(?:set|delete)\(/g)) writers.push(`${rel}: ${m[0]}`);
  }
  assert.deepEqual(writers, []);
});
