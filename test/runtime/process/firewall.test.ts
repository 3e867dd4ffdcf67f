// Issue 8 item 2: what an instance can reach over the network, tried from
// inside real instances (a tenant's app that opens TCP connections on request),
// with net.ipv4.ip_forward=1 as on any host where Docker has run.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import { join } from 'node:path';
import type { HostPort } from '../../../src/core/config.ts';
import { ProcessDriver } from '../../../src/runtime/process/process-driver.ts';
import { chainName, detectFirewallTools, filterRules } from '../../../src/runtime/process/firewall.ts';
import type { FirewallTools } from '../../../src/runtime/process/firewall.ts';
import { hostAddresses, ip, namesFor } from '../../../src/runtime/process/netns.ts';
import { waitReady } from '../../../src/runtime/ready.ts';
import { driverIsolation } from '../../helpers/driver-isolation.ts';
import { makeDir, netnsSkip, procfileSpec, removeDir, waitFor } from './helpers.ts';

const tools = detectFirewallTools();
const skip = netnsSkip() || (typeof tools === 'string' ? `firewall unavailable: ${tools}` : false);

const noV6 = existsSync('/proc/net/if_inet6') ? false : 'the host has no IPv6 (kernel booted with ipv6.disable=1)';

/** The iptables backend the driver uses (nf_tables, else legacy): the one to inspect. */
function backend(): FirewallTools {
  if (typeof tools === 'string') throw new Error(tools);
  return tools;
}

/**
 * The tenant's app: answers `self <EPH_HOST_ADDR>` on /, and on
 * /probe?host=H&port=P opens a TCP connection from inside the instance and
 * answers `open`, `blocked <errno>` or `timeout`.
 */
const PROBE_APP = `
const http = require('http');
const net = require('net');
http.createServer((req, res) => {
  const u = new URL(req.url, 'http://x');
  if (u.pathname !== '/probe') return res.end('self ' + process.env.EPH_HOST_ADDR);
  const s = net.connect({ host: u.searchParams.get('host'), port: Number(u.searchParams.get('port')) });
  let answered = false;
  const answer = (text) => { if (!answered) { answered = true; res.end(text); } s.destroy(); };
  s.setTimeout(20000, () => answer('timeout'));
  s.on('connect', () => answer('open'));
  s.on('error', (e) => answer('blocked ' + e.code));
}).listen(Number(process.env.PORT));
`;

const A = 'eph-f1000001.eph.test';
const B = 'eph-f1000002.eph.test';
const C = 'eph-f1000003.eph.test';

let app = '';
let state = '';
let oldForward = '';
let driver: ProcessDriver;
let strict: ProcessDriver | null = null;
let upA: HostPort;
let upB: HostPort;
let hostA = '';
const servers: Server[] = [];
const isoOpen = driverIsolation('f');
const isoNone = driverIsolation('f');
const isoCrash = driverIsolation('f');
/** A stand-in for the public internet: a namespace of its own behind a veth, with a TCP listener. */
const pub = { ns: `${isoOpen.prefix}pub`, veth: `q${isoOpen.prefix}p`, hostIp: '', ip: '', port: 8000 };
let pubServer: ChildProcess | null = null;

/** GET with a deadline generous enough for a loaded CI machine. */
function get(addr: HostPort, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    // A fresh connection each time: a kept-alive one may be closed by the app's idle timeout just as it is reused.
    const req = request({ host: addr.host, port: addr.port, path, timeout: 60_000, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: timeout`)));
    req.on('error', reject);
    req.end();
  });
}

/** What the app inside the instance at `from` gets when it connects to host:port. */
function probe(from: HostPort, host: string, port: number): Promise<string> {
  return get(from, `/probe?host=${encodeURIComponent(host)}&port=${port}`);
}

async function listen(host: string, ipv6Only = false): Promise<number> {
  const s = createServer((c) => {
    // The probing app hangs up at once: a reset here is expected.
    c.on('error', () => undefined);
    c.end('host service\n');
  });
  servers.push(s);
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen({ host, port: 0, ipv6Only }, resolve);
  });
  return (s.address() as AddressInfo).port;
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 30_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr}`)) : resolve(stdout)));
  });
}

/** Every rule line of iptables and ip6tables (filter and nat) that names `chain`. */
async function rulesNaming(chain: string): Promise<string[]> {
  const { v4, v6 } = backend();
  const out = [await run(v4, ['-w', '-S']), await run(v4, ['-w', '-t', 'nat', '-S']), v6 ? await run(v6, ['-w', '-S']) : ''].join('\n');
  return out.split('\n').filter((l) => l.split(/\s+/).includes(chain));
}

/** A /30 of 198.18.0.0/15 (benchmarking range: public as far as the firewall knows) that this host does not use. */
async function freePublicBlock(): Promise<{ hostIp: string; ip: string }> {
  const taken = await hostAddresses();
  for (let i = 0; i < 1024; i++) {
    const n = ((process.pid + i * 7919) % 32768) * 4;
    const base = `198.${18 + Math.floor(n / 65536)}.${Math.floor(n / 256) % 256}.`;
    const hostIp = `${base}${(n % 256) + 1}`;
    if (!taken.has(hostIp)) return { hostIp, ip: `${base}${(n % 256) + 2}` };
  }
  throw new Error('no free /30 in 198.18.0.0/15');
}

before(async () => {
  if (skip) return;
  oldForward = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
  // As on a host where Docker has run: the kernel routes between namespaces unless the firewall stops it.
  writeFileSync('/proc/sys/net/ipv4/ip_forward', '1');
  app = await makeDir({ 'server.cjs': PROBE_APP, Procfile: 'web: node server.cjs\n' });
  state = await makeDir({});

  Object.assign(pub, await freePublicBlock());
  // A leftover of a killed run of this file with the same pid.
  await ip(['netns', 'delete', pub.ns]).catch(() => undefined);
  await ip(['link', 'delete', pub.veth]).catch(() => undefined);
  await ip(['-batch', '-'], [
    `netns add ${pub.ns}`,
    `link add ${pub.veth} type veth peer name eth0 netns ${pub.ns}`,
    `addr add ${pub.hostIp}/30 dev ${pub.veth}`,
    `link set ${pub.veth} up`,
    '',
  ].join('\n'));
  await ip(['-n', pub.ns, '-batch', '-'], ['link set lo up', `addr add ${pub.ip}/30 dev eth0`, 'link set eth0 up', `route add default via ${pub.hostIp}`, ''].join('\n'));
  pubServer = spawn('ip', ['netns', 'exec', pub.ns, process.execPath, '-e', `require('net').createServer((c) => { c.on('error', () => {}); c.end('public\\n'); }).listen(${pub.port}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    pubServer!.stdout!.once('data', () => resolve());
    pubServer!.once('exit', (code) => reject(new Error(`public stand-in exited with ${code}`)));
  });

  driver = new ProcessDriver({ stateDir: join(state, 'run'), ...isoOpen, isolation: 'netns', egress: 'public' });
  await driver.recover();
  upA = await driver.start(procfileSpec(A, app, 'node server.cjs', state));
  upB = await driver.start(procfileSpec(B, app, 'node server.cjs', state));
  await waitReady(upA, 60_000);
  await waitReady(upB, 60_000);
  hostA = (await get(upA, '/')).replace(/^self /, '');
});

after(async () => {
  if (skip) return;
  await driver?.close();
  await strict?.close();
  pubServer?.kill('SIGKILL');
  await ip(['netns', 'delete', pub.ns]).catch(() => undefined);
  await ip(['link', 'delete', pub.veth]).catch(() => undefined);
  for (const s of servers) s.close();
  if (oldForward) writeFileSync('/proc/sys/net/ipv4/ip_forward', oldForward);
  await removeDir(app);
  await removeDir(state);
});

test('the firewall rules: replies first, appliance ports, then the host and every private range refused, egress last', () => {
  const none = filterRules({ prefix: 'eph', subnet: '198.18.0.0/24', egress: 'none' }, [7000, 7000, 0, 70000]);
  assert.equal(none[0], '-A eph-instances -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT');
  assert.equal(none[1], '-A eph-instances -p tcp -m addrtype --dst-type LOCAL -m multiport --dports 7000 -j ACCEPT');
  for (const range of ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '169.254.0.0/16', '127.0.0.0/8', '198.18.0.0/24']) {
    assert.ok(none.includes(`-A eph-instances -d ${range} -j REJECT --reject-with icmp-admin-prohibited`), range);
  }
  assert.equal(none.at(-1), '-A eph-instances -j REJECT --reject-with icmp-admin-prohibited');
  const open = filterRules({ prefix: 'eph', subnet: '10.213.0.0/16', egress: 'public' }, Array.from({ length: 20 }, (_, i) => 9000 + i));
  assert.equal(open.at(-1), '-A eph-instances -j ACCEPT');
  // multiport takes 15 ports at most: 20 ports make two rules.
  assert.equal(open.filter((r) => r.includes('--dports')).length, 2);
});

test('without iptables the firewall is reported missing, naming the Debian package', { skip: process.getuid?.() === 0 ? false : 'needs root' }, () => {
  assert.equal(detectFirewallTools('/nonexistent'), 'iptables not installed (Debian package iptables)');
});

test('from inside instance A: B\'s 8080 is refused, A\'s own 8080 answers, and the host still reaches both', { skip }, async () => {
  assert.match(driver.isolation, new RegExp(`firewall chain ${chainName(isoOpen.prefix)}`));
  assert.equal(await probe(upA, upB.host, 8080), 'blocked EHOSTUNREACH');
  assert.equal(await probe(upA, '127.0.0.1', 8080), 'open');
  assert.equal(await probe(upA, upA.host, 8080), 'open');
  // Where the gate runs: the host opens connections to each instance's 8080 and gets the answers.
  assert.equal(await get(upA, '/'), `self ${hostA}`);
  assert.match(await get(upB, '/'), /^self 10\./);
});

test('from inside an instance, a host service listening on all addresses is refused on every host address', { skip }, async () => {
  const port4 = await listen('0.0.0.0');
  assert.equal(await probe(upA, hostA, port4), 'blocked EHOSTUNREACH');
  const others = [...(await hostAddresses())].filter((a) => a !== hostA && !a.startsWith('127.')).slice(0, 4);
  for (const addr of others) assert.equal(await probe(upA, addr, port4), 'blocked EHOSTUNREACH', addr);
  // A host address outside every private range (the stand-in public link's host end): refused as the host's.
  assert.equal(await probe(upA, pub.hostIp, port4), 'blocked EHOSTUNREACH');
});

test('from inside an instance, a host service listening on all IPv6 addresses is refused at the host veth\'s link-local address', { skip: skip || noV6 }, async () => {
  const port6 = await listen('::', true);
  // The host end of A's veth pair has a link-local address on A's link: eth0@ifN names its index N.
  const peer = /eth0@if(\d+)/.exec(await ip(['-n', namesFor(A, isoOpen.prefix).ns, '-o', 'link', 'show', 'eth0']))?.[1];
  assert.ok(peer, 'the host end of A\'s veth');
  let linkLocal = '';
  await waitFor('the link-local address of A\'s host veth, past duplicate detection', async () => {
    const line = (await ip(['-o', '-6', 'addr', 'show', 'scope', 'link'])).split('\n').find((l) => l.startsWith(`${peer}: `)) ?? '';
    linkLocal = line.includes('tentative') ? '' : (/inet6 (fe80::[0-9a-f:]+)\//.exec(line)?.[1] ?? '');
    return linkLocal !== '';
  }, 60_000);
  assert.match(await probe(upA, `${linkLocal}%eth0`, port6), /^blocked /);
});

test('appliance ports given to allowHostPorts are reachable on the host, and nothing else is', { skip }, async () => {
  const appliance = await listen('0.0.0.0');
  const other = await listen('0.0.0.0');
  await driver.allowHostPorts([appliance]);
  assert.equal(await probe(upA, hostA, appliance), 'open');
  assert.equal(await probe(upA, hostA, other), 'blocked EHOSTUNREACH');
  // Only on the host: the same port on another instance stays out of reach.
  assert.equal(await probe(upA, upB.host, appliance), 'blocked EHOSTUNREACH');
  await driver.allowHostPorts([]);
  assert.equal(await probe(upA, hostA, appliance), 'blocked EHOSTUNREACH');
});

test('egress public: an instance reaches a public address', { skip }, async () => {
  assert.equal(await probe(upA, pub.ip, pub.port), 'open');
});

test('egress none: the public address is refused, the instance still serves the gate; close() leaves no chain', { skip }, async () => {
  strict = new ProcessDriver({ stateDir: join(state, 'run-none'), ...isoNone, isolation: 'netns', egress: 'none', warmNamespaces: 0 });
  await strict.recover();
  const upC = await strict.start(procfileSpec(C, app, 'node server.cjs', state));
  await waitReady(upC, 60_000);
  assert.match(strict.isolation, /no egress/);
  assert.equal(await probe(upC, pub.ip, pub.port), 'blocked EHOSTUNREACH');
  assert.equal(await probe(upC, '127.0.0.1', 8080), 'open');
  assert.equal(await probe(upC, upA.host, 8080), 'blocked EHOSTUNREACH');
  assert.match(await get(upC, '/'), /^self 10\./);
  assert.notDeepEqual(await rulesNaming(chainName(isoNone.prefix)), []);
  await strict.close();
  strict = null;
  assert.deepEqual(await rulesNaming(chainName(isoNone.prefix)), []);
});

test('after kill -9 the chain stays; the next start with the same prefix replaces it (one jump each), and close() removes it', { skip }, async () => {
  const chain = chainName(isoCrash.prefix);
  const stateDir = join(state, 'run-crash');
  const script = `
    const { ProcessDriver } = await import(${JSON.stringify(new URL('../../../src/runtime/process/process-driver.ts', import.meta.url).href)});
    const d = new ProcessDriver({ stateDir: ${JSON.stringify(stateDir)}, prefix: '${isoCrash.prefix}', subnet: '${isoCrash.subnet}', isolation: 'netns', warmNamespaces: 0 });
    await d.recover();
    console.log('installed');
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('installed')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`driver process exited with ${code}`)));
    });
  } finally {
    child.kill('SIGKILL');
  }
  await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(undefined) : child.once('exit', r)));
  const left = await rulesNaming(chain);
  assert.ok(left.includes(`-A INPUT -i v${isoCrash.prefix}+ -j ${chain}`), left.join('\n'));

  const next = new ProcessDriver({ stateDir, ...isoCrash, isolation: 'netns', warmNamespaces: 0 });
  try {
    await next.recover();
    await next.recover();
    const rules = await rulesNaming(chain);
    const count = (line: string): number => rules.filter((r) => r === line).length;
    // Once per family in filter (IPv4, and IPv6 where the host has it), once in nat.
    const families = backend().v6 ? 2 : 1;
    assert.equal(count(`-A INPUT -i v${isoCrash.prefix}+ -j ${chain}`), families, rules.join('\n'));
    assert.equal(count(`-A FORWARD -i v${isoCrash.prefix}+ -j ${chain}`), families, rules.join('\n'));
    assert.equal(count(`-A POSTROUTING -s ${isoCrash.subnet} -j ${chain}`), 1, rules.join('\n'));
    const expected = filterRules({ prefix: isoCrash.prefix, subnet: isoCrash.subnet, egress: 'public' }, []).length;
    const own = (await run(backend().v4, ['-w', '-S', chain])).split('\n').filter((l) => l.startsWith(`-A ${chain} `));
    assert.equal(own.length, expected, own.join('\n'));
  } finally {
    await next.close();
  }
  assert.deepEqual(await rulesNaming(chain), []);
});
