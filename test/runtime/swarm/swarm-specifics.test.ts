import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import type { HostPort } from '../../../src/core/config.ts';
import type { ExitInfo, LaunchSpec } from '../../../src/runtime/driver.ts';
import { waitReady } from '../../../src/runtime/ready.ts';
import { SwarmDriver } from '../../../src/runtime/swarm/swarm-driver.ts';
import { DEFAULT_DOCKER_SOCKET, dockerUnavailableReason } from '../../../src/runtime/swarm/docker-api.ts';
import { DOCKER_LOG_BYTES, OWNER_LABEL } from '../../../src/runtime/swarm/service-spec.ts';
import { LAYOUT_LABEL, ensureBaseImage, hostLayout } from '../../../src/runtime/swarm/base-image.ts';
import { standinVm } from '../../helpers/standin-vm.ts';
import { PSK_PORT, TUNNELLED_PHARO_IMAGE, pskGet } from '../stunnel-psk.ts';

// Own prefix: recover() removes every service and container labelled with it.
const PREFIX = 'tsx';
const skip = (await dockerUnavailableReason()) ?? false;
const STANDIN = standinVm();
const docker = new Docker({ socketPath: DEFAULT_DOCKER_SOCKET });
let dir = '';
let driver: SwarmDriver;
const exits = new Map<string, ExitInfo>();

async function makeDir(name: string, files: Record<string, string>): Promise<string> {
  const d = join(dir, name);
  await mkdir(d, { mode: 0o755 });
  for (const [f, body] of Object.entries(files)) await writeFile(join(d, f), body, { mode: 0o644 });
  return d;
}

function spec(hostname: string, imageDir: string, entry: string, extra: Partial<LaunchSpec> = {}): LaunchSpec {
  return { hostname, imageDir, kind: 'procfile', entry, pharoVm: 'pharo', env: {}, logFile: join(dir, 'logs', `${hostname}.log`), maxLogBytes: 1 << 20, ...extra };
}

const logOf = (h: string): Promise<string> => readFile(join(dir, 'logs', `${h}.log`), 'utf8').catch(() => '');

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function httpGet(addr: HostPort, path = '/'): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: addr.host, port: addr.port, path, timeout: 5000, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

before(async () => {
  if (skip) return;
  dir = await mkdtemp(join(tmpdir(), 'eph-swarm-test-'));
  await chmod(dir, 0o755);
  driver = new SwarmDriver({ stateDir: join(dir, 'run'), prefix: PREFIX, memoryBytes: 96 * 1024 ** 2, cpus: 0.5, pids: 64, stopGraceMs: 400 });
  driver.onExit((h, info) => exits.set(h, info));
  await driver.recover();
});

after(async () => {
  if (skip) return;
  await driver.close();
  await rm(dir, { recursive: true, force: true });
});

test('without a daemon the driver says how to start one (DEPENDENCY_MISSING) and the skip reason is precise', async () => {
  const socket = join(tmpdir(), 'eph-no-such-docker.sock');
  assert.equal(await dockerUnavailableReason(socket), `Docker daemon not reachable at ${socket}: start it with dockerd --iptables=false`);
  const d = new SwarmDriver({ stateDir: join(tmpdir(), 'eph-swarm-nowhere'), socketPath: socket });
  await assert.rejects(d.recover(), (e: Error & { code?: string }) => e.code === 'DEPENDENCY_MISSING' && /dockerd --iptables=false/.test(e.message));
});

test('the container runs as 65534 with no capabilities, a read-only root and the memory, CPU and pids limits asked for', { skip }, async (t) => {
  const h = 'eph-e3000001.eph.test';
  t.after(() => driver.stop(h));
  const app = await makeDir('probe', {
    'probe.cjs': `
      const fs = require('fs');
      const caps = fs.readFileSync('/proc/self/status', 'utf8').match(/CapEff:\\s*(\\w+)/)[1];
      let root; try { fs.writeFileSync('/written', 'x'); root = 'ok'; } catch (e) { root = e.code; }
      require('http').createServer((q, s) => s.end(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), caps, root }))).listen(8080);
    `,
  });
  const up = await driver.start(spec(h, app, 'node probe.cjs'));
  await waitReady(up, 15_000);
  assert.deepEqual(JSON.parse(await httpGet(up)), { uid: 65534, gid: 65534, caps: '0000000000000000', root: 'EROFS' });
  const [c] = await docker.listContainers({ filters: { label: [`${OWNER_LABEL}=${PREFIX}`, `com.docker.swarm.service.name=tsx-e3000001`] } });
  assert.ok(c, 'the container is labelled with its owner');
  const info = await docker.getContainer(c.Id).inspect();
  assert.equal(info.HostConfig.ReadonlyRootfs, true);
  assert.equal(info.HostConfig.Memory, 96 * 1024 ** 2);
  assert.equal(info.HostConfig.NanoCpus, 5e8);
  assert.equal(info.HostConfig.PidsLimit, 64);
  assert.equal(info.HostConfig.LogConfig?.Config?.['max-size'], String(DOCKER_LOG_BYTES), "Docker's copy of the output is bounded");
  assert.equal(info.HostConfig.RestartPolicy?.Name ?? '', '');
  assert.deepEqual(info.HostConfig.PortBindings ?? {}, {}, 'nothing published on the host');
});

test('an app over its memory limit is killed and reported as an unrequested exit (137)', { skip }, async () => {
  const h = 'eph-e3000002.eph.test';
  const app = await makeDir('hog', {
    'hog.cjs': `const a = [];
      require('http').createServer((q, s) => {
        console.log('eating');
        s.end('eating');
        setInterval(() => { for (let i = 0; i < 16; i++) a.push(Buffer.alloc(1 << 20, 1)); }, 10);
      }).listen(8080);`,
  });
  const up = await driver.start(spec(h, app, 'node hog.cjs'));
  await waitReady(up, 15_000);
  await httpGet(up);
  await until('the exit report', () => exits.has(h), 30_000);
  assert.deepEqual(exits.get(h), { code: 137, signal: null, requested: false });
  assert.match(await logOf(h), /eating\n[^]*exited with code 137\n$/);
});

test('an app that ignores SIGTERM is killed after the grace period; the log is bounded and ends with the exit line', { skip }, async () => {
  const h = 'eph-e3000003.eph.test';
  const app = await makeDir('stubborn', {
    'stubborn.cjs': `process.on('SIGTERM', () => console.log('ignoring TERM'));
      for (let i = 0; i < 3000; i++) console.log('line ' + i + ' of a chatty app ....................................');
      require('http').createServer((q, s) => s.end('ok')).listen(8080);`,
  });
  const up = await driver.start(spec(h, app, 'node stubborn.cjs', { maxLogBytes: 4096 }));
  await waitReady(up, 15_000);
  await until('all output in the log', async () => /line 2999 of/.test(await logOf(h)));
  const t0 = Date.now();
  await driver.stop(h);
  assert.ok(Date.now() - t0 >= 350, `stopped after ${Date.now() - t0} ms, before the grace period`);
  assert.deepEqual(exits.get(h), { code: 137, signal: null, requested: true });
  const log = await logOf(h);
  assert.ok((await stat(join(dir, 'logs', `${h}.log`))).size <= 4096);
  assert.match(log, /^\[eph\] earlier output dropped/);
  assert.doesNotMatch(log, /line 0 of/);
  assert.match(log, /ignoring TERM\n[^]*exited with code 137 \(stop requested\)\n$/);
});

test('Pharo: a missing VM is DEPENDENCY_MISSING; the (stand-in) VM runs `--headless IMAGE --no-quit` with stunnel.conf beside the image served through TLS-PSK', { skip }, async (t) => {
  const image = await makeDir('pharo', TUNNELLED_PHARO_IMAGE);
  const pharo = (h: string, vm: string): LaunchSpec => ({ ...spec(h, image, 'app.image'), kind: 'pharo', pharoVm: vm });
  await assert.rejects(driver.start(pharo('eph-e3000004.eph.test', 'no-such-pharo-vm')), { code: 'DEPENDENCY_MISSING' });

  const h = 'eph-e3000005.eph.test';
  t.after(() => driver.stop(h));
  const up = await driver.start(pharo(h, STANDIN));
  await waitReady(up, 15_000);
  await waitReady({ host: up.host, port: PSK_PORT }, 15_000);
  const body = await pskGet(up.host);
  assert.match(body, /^HTTP\/1\.[01] 200[^]*pharo-standin: app\.image startup\.st=absent\n$/);
  assert.match(await logOf(h), /--headless \S+app\.image --no-quit\n/);
});

test('an app that exits before it is seen running is START_FAILED with its output and exit code in the log, leaving nothing', { skip }, async () => {
  const h = 'eph-e3000007.eph.test';
  const app = await makeDir('quitter', {});
  await assert.rejects(driver.start(spec(h, app, 'echo quitting now; exit 7')), (e: Error & { code?: string }) => e.code === 'START_FAILED' && /exited at once with code 7/.test(e.message));
  assert.match(await logOf(h), /quitting now\n[^]*start failed: the app exited at once with code 7/);
  assert.equal(exits.has(h), false);
  assert.deepEqual((await docker.listContainers({ all: true, filters: { label: [`${OWNER_LABEL}=${PREFIX}`] } })).map((c) => c.Names), []);
});

test('a task Docker cannot start (no such base image) is START_FAILED with Docker\'s reason, leaving nothing', { skip }, async () => {
  const other = new SwarmDriver({ stateDir: join(dir, 'run-noimage'), prefix: PREFIX, image: 'eph-runtime:1' });
  await other.prepare();
  // The service refers to an image that vanished after preparation.
  await docker.getImage('eph-runtime:1').tag({ repo: 'eph-runtime', tag: 'tsx-gone' });
  const gone = new SwarmDriver({ stateDir: join(dir, 'run-gone'), prefix: PREFIX, image: 'eph-runtime:tsx-gone', startTimeoutMs: 20_000 });
  await gone.prepare();
  await docker.getImage('eph-runtime:tsx-gone').remove();
  const app = await makeDir('never', { 'x.cjs': '' });
  const h = 'eph-e3000006.eph.test';
  await assert.rejects(gone.start(spec(h, app, 'node x.cjs')), (e: Error & { code?: string }) => e.code === 'START_FAILED' && /No such image|not found|does not exist/i.test(e.message));
  assert.match(await logOf(h), /start failed: /);
  assert.equal(gone.isRunning(h), false);
  assert.deepEqual((await docker.listServices({ filters: { label: [`${OWNER_LABEL}=${PREFIX}`] } })).map((s) => s.Spec?.Name), []);
});

test('the base image is built when absent (a skeleton of mount points labelled with the host layout) and reused after', { skip }, async () => {
  const name = 'eph-runtime:tsx-build';
  await docker.getImage(name).remove().catch(() => undefined);
  const layout = hostLayout();
  const t0 = Date.now();
  assert.equal(await ensureBaseImage(docker, name, layout), true);
  const ms = Date.now() - t0;
  assert.equal(await ensureBaseImage(docker, name, layout), false);
  const info = await docker.getImage(name).inspect();
  assert.equal(info.Config.Labels?.[LAYOUT_LABEL], layout.hash);
  assert.ok(info.Size < 4096, `the image holds no programs (${info.Size} bytes)`);
  await docker.getImage(name).remove();
  assert.ok(ms < 10_000, `built in ${ms} ms`);
});
