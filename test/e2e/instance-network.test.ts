// Issue 8 item 2 through a whole cloud: two tenants' apps, each behind the
// gate; the first one's code tries to reach the second one's instance and a
// service of the host, as a hostile tenant would.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import { detectFirewallTools } from '../../src/runtime/process/firewall.ts';
import { netnsSkip } from '../runtime/process/helpers.ts';
import { procfileApp, startTestCloud, type TestCloud, type TestUser } from '../helpers/cloud.ts';

const tools = detectFirewallTools();
const skip = netnsSkip() || (typeof tools === 'string' ? `firewall unavailable: ${tools}` : false);

/** `/` answers the instance's own address; `/probe?host=&port=` connects from inside and answers `open` or `blocked <errno>`. */
const APP = `import { createServer } from 'node:http';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
createServer((req, res) => {
  const u = new URL(req.url, 'http://x');
  if (u.pathname !== '/probe') return res.end(JSON.stringify({ self: networkInterfaces().eth0.find((a) => a.family === 'IPv4').address, host: process.env.EPH_HOST_ADDR }));
  const s = connect({ host: u.searchParams.get('host'), port: Number(u.searchParams.get('port')) });
  let done = false;
  const answer = (t) => { if (!done) { done = true; res.end(t); } s.destroy(); };
  s.setTimeout(20000, () => answer('timeout'));
  s.on('connect', () => answer('open'));
  s.on('error', (e) => answer('blocked ' + e.code));
}).listen(Number(process.env.PORT));
`;

let cloud: TestCloud;
let bob: TestUser;
let listener: Server | null = null;

before(async () => {
  if (skip) return;
  cloud = await startTestCloud();
  bob = await cloud.addUser('bob');
});

after(async () => {
  listener?.close();
  await cloud?.close();
});

test("a tenant's app cannot reach another tenant's instance nor a host service; the gate serves both", { skip }, async () => {
  const mine = await cloud.publish(await procfileApp(APP));
  const theirs = await cloud.publish(await procfileApp(APP), { user: bob });
  const a = await cloud.visit(mine);
  const b = await cloud.visit(theirs);
  assert.equal(a.status, 200, a.body);
  assert.equal(b.status, 200, b.body);
  const me = JSON.parse(a.body) as { self: string; host: string };
  const them = JSON.parse(b.body) as { self: string; host: string };
  assert.notEqual(me.self, them.self);

  listener = createServer((c) => {
    c.on('error', () => undefined);
    c.end('host service\n');
  });
  await new Promise<void>((resolve) => listener!.listen(0, '0.0.0.0', resolve));
  const hostPort = (listener.address() as AddressInfo).port;

  const probe = async (host: string, port: number): Promise<string> => {
    const r = await cloud.visit(mine, `/probe?host=${host}&port=${port}`);
    assert.equal(r.status, 200, r.body);
    return r.body;
  };
  assert.equal(await probe(them.self, 8080), 'blocked EHOSTUNREACH');
  assert.equal(await probe(me.host, hostPort), 'blocked EHOSTUNREACH');
  assert.equal(await probe(me.host, cloud.gatePort), 'blocked EHOSTUNREACH');
  assert.equal(await probe(me.self, 8080), 'open');
  // Both still served through the gate after the attempts.
  assert.equal((await cloud.visit(theirs)).status, 200);
  assert.match(cloud.driver.isolation, /firewall chain/);
});
