// The behaviour every runtime Driver must show, run against real drivers
// (not a test file itself: test/runtime/*/driver-conformance.test.ts and
// test/runtime/swarm/swarm-driver.test.ts call runDriverConformance).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HostPort } from '../../src/core/config.ts';
import type { Driver, ExitInfo, LaunchSpec } from '../../src/runtime/driver.ts';
import { waitReady } from '../../src/runtime/ready.ts';

/** What the suite needs to know about one driver. */
export interface ConformanceTarget {
  /** Why the driver cannot run here (the whole suite is skipped with it), or false. */
  skip: string | false;
  /**
   * A fresh driver keeping its state in `stateDir`. Two drivers made over the
   * same `stateDir` play two runs of one server: the second's recover() must
   * clean up after the first.
   */
  makeDriver(stateDir: string): Driver | Promise<Driver>;
  /**
   * Two hex digits that start every instance label of this run
   * (eph-<hex>000001…), distinct per target so that suites can run at once.
   */
  hostBase: string;
  /**
   * What of this run's instances still exists on the machine (processes,
   * namespaces, services, containers: whatever the driver makes), one
   * description each; [] when nothing is left. Instances' command lines
   * carry {@link appMarker}(hostBase).
   */
  leftovers(): Promise<string[]>;
  /** Port the app must see in PORT; undefined when the driver hands out ports. */
  appPort?: number;
  /** Bound on start + readiness (default 20 s). */
  startTimeoutMs?: number;
}

/** The argument on every conformance app's command line, to find its processes. */
export function appMarker(hostBase: string): string {
  return `eph-conformance-${hostBase}`;
}

/**
 * A Procfile app: reports PORT, its name (APP_NAME from the spec's env), and
 * whether it could write into its own directory and into /tmp; /crash makes
 * it exit with code 3; SIGTERM makes it exit cleanly with code 0.
 */
const SERVER_CJS = `
const fs = require('fs');
const http = require('http');
const attempt = (path) => { try { fs.writeFileSync(path, 'x'); return 'ok'; } catch (e) { return e.code; } };
const dirWrite = attempt('written-by-app.txt');
const tmpWrite = attempt('/tmp/written-by-app.txt');
const port = Number(process.env.PORT);
http.createServer((req, res) => {
  if (req.url === '/crash') {
    console.log('crashing on request');
    res.setHeader('connection', 'close');
    res.end('bye');
    setTimeout(() => process.exit(3), 100);
    return;
  }
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ name: process.env.APP_NAME, port: process.env.PORT, dirWrite, tmpWrite }));
}).listen(port, () => console.log('app ' + process.env.APP_NAME + ' listening on ' + port));
process.on('SIGTERM', () => { console.log('got SIGTERM'); process.exit(0); });
`;

interface AppAnswer {
  name: string;
  port: string;
  dirWrite: string;
  tmpWrite: string;
}

/**
 * Registers the conformance tests of one driver with node:test: a Procfile
 * app listens on its PORT and is reached at the upstream; two instances run
 * at once; the image directory is read-only for the app (and /tmp is
 * writable); stop() leaves nothing and reports requested=true; a crash is
 * reported with requested=false and an exit line in the log; recover() removes
 * what a crashed run left; failed starts reject with START_FAILED.
 */
export function runDriverConformance(name: string, target: ConformanceTarget): void {
  const skip = target.skip;
  const timeout = target.startTimeoutMs ?? 20_000;
  const marker = appMarker(target.hostBase);
  let dir = '';
  let imageDir = '';
  let driver: Driver;
  const exits: { hostname: string; info: ExitInfo }[] = [];
  const extraDrivers: Driver[] = [];
  let serial = 0;

  const hostname = (): string => `eph-${target.hostBase}${String(++serial).padStart(6, '0')}.eph.test`;
  const spec = (h: string, extra: Partial<LaunchSpec> = {}): LaunchSpec => ({
    hostname: h,
    imageDir,
    kind: 'procfile',
    entry: `node server.cjs ${marker}`,
    pharoVm: 'pharo',
    env: { APP_NAME: h.split('.')[0]! },
    logFile: join(dir, 'logs', `${h}.log`),
    maxLogBytes: 1 << 20,
    ...extra,
  });
  const startReady = async (d: Driver, s: LaunchSpec): Promise<HostPort> => {
    const upstream = await d.start(s);
    await waitReady(upstream, timeout);
    return upstream;
  };
  const exitOf = (h: string): ExitInfo | undefined => exits.find((e) => e.hostname === h)?.info;

  before(async () => {
    if (skip) return;
    dir = await mkdtemp(join(tmpdir(), `eph-conformance-${target.hostBase}-`));
    // mkdtemp makes 0700 directories; apps run as uid 65534 and must read theirs.
    await chmod(dir, 0o755);
    imageDir = join(dir, 'image');
    await mkdir(imageDir, { mode: 0o755 });
    await writeFile(join(imageDir, 'server.cjs'), SERVER_CJS, { mode: 0o644 });
    await writeFile(join(imageDir, 'Procfile'), `web: node server.cjs ${marker}\n`, { mode: 0o644 });
    driver = await target.makeDriver(join(dir, 'run'));
    driver.onExit((h, info) => exits.push({ hostname: h, info }));
    await driver.recover();
  });

  after(async () => {
    if (skip) return;
    for (const d of [driver, ...extraDrivers]) await d?.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });

  test(`${name}: a Procfile app listens on its PORT and answers at the upstream`, { skip }, async (t) => {
    const h = hostname();
    // Whatever fails, the next test starts from a clean machine.
    t.after(() => driver.stop(h));
    const upstream = await startReady(driver, spec(h));
    assert.equal(driver.isRunning(h), true);
    const answer = await getJson(upstream);
    assert.equal(answer.name, h.split('.')[0]);
    assert.equal(answer.port, String(target.appPort ?? upstream.port));
    if (target.appPort !== undefined) assert.equal(upstream.port, target.appPort);
    // A second start of a running instance answers the same upstream, not a second app.
    assert.deepEqual(await driver.start(spec(h)), upstream);
    await driver.stop(h);
  });

  test(`${name}: two instances run at once, each reached at its own upstream`, { skip }, async (t) => {
    const [h1, h2] = [hostname(), hostname()];
    t.after(() => Promise.all([driver.stop(h1), driver.stop(h2)]));
    const [u1, u2] = await Promise.all([startReady(driver, spec(h1)), startReady(driver, spec(h2))]);
    assert.notDeepEqual(u1, u2);
    const [a1, a2] = await Promise.all([getJson(u1), getJson(u2)]);
    assert.equal(a1.name, h1.split('.')[0]);
    assert.equal(a2.name, h2.split('.')[0]);
    await Promise.all([driver.stop(h1), driver.stop(h2)]);
  });

  test(`${name}: the image directory is read-only for the app, /tmp is writable`, { skip }, async (t) => {
    const h = hostname();
    // Whatever fails, the next test starts from a clean machine.
    t.after(() => driver.stop(h));
    const answer = await getJson(await startReady(driver, spec(h)));
    assert.ok(['EROFS', 'EACCES', 'EPERM'].includes(answer.dirWrite), `writing into the image dir gave ${answer.dirWrite}`);
    assert.equal(existsSync(join(imageDir, 'written-by-app.txt')), false);
    assert.equal(answer.tmpWrite, 'ok');
    await driver.stop(h);
  });

  test(`${name}: stop() reports a requested exit, logs it, and leaves nothing behind`, { skip }, async (t) => {
    const h = hostname();
    // Whatever fails, the next test starts from a clean machine.
    t.after(() => driver.stop(h));
    const upstream = await startReady(driver, spec(h));
    await driver.stop(h);
    assert.equal(driver.isRunning(h), false);
    assert.deepEqual(exitOf(h), { code: 0, signal: null, requested: true });
    assert.equal(await appAnswers(upstream, h.split('.')[0]!), false, 'the app still answers');
    assert.deepEqual(await target.leftovers(), []);
    const log = await readFile(join(dir, 'logs', `${h}.log`), 'utf8');
    assert.match(log, /listening on/);
    assert.match(log, /got SIGTERM\n/);
    assert.match(log, /\[eph\] \S+ exited with code 0 \(stop requested\)\n$/);
    // Stopping again, or stopping what never ran, is a no-op.
    await driver.stop(h);
    await driver.stop('eph-ffffffff.eph.test');
  });

  test(`${name}: a crash is reported with requested=false and an exit line in the log`, { skip }, async (t) => {
    const h = hostname();
    // Whatever fails, the next test starts from a clean machine.
    t.after(() => driver.stop(h));
    const upstream = await startReady(driver, spec(h));
    // The answer may be cut short by the crash itself: only the exit report counts.
    await httpGet(upstream, '/crash').catch(() => undefined);
    await until('the exit report', () => exitOf(h) !== undefined, timeout);
    assert.deepEqual(exitOf(h), { code: 3, signal: null, requested: false });
    assert.equal(driver.isRunning(h), false);
    const log = await readFile(join(dir, 'logs', `${h}.log`), 'utf8');
    assert.match(log, /crashing on request\n[^]*\[eph\] \S+ exited with code 3\n$/);
    assert.deepEqual(await target.leftovers(), []);
    // The same instance starts again after its crash, appending to its log.
    const again = await startReady(driver, spec(h));
    assert.equal((await getJson(again)).name, h.split('.')[0]);
    await driver.stop(h);
  });

  test(`${name}: recover() in a new run removes what a crashed run left behind`, { skip }, async () => {
    const crashed = await target.makeDriver(join(dir, 'run-crashed'));
    extraDrivers.push(crashed);
    const h = hostname();
    const upstream = await startReady(crashed, spec(h));
    assert.notDeepEqual(await target.leftovers(), []);
    // `crashed` is abandoned as a killed server would be; the next run recovers.
    const next = await target.makeDriver(join(dir, 'run-crashed'));
    extraDrivers.push(next);
    await next.recover();
    await until('the abandoned app to stop answering', async () => !(await appAnswers(upstream, h.split('.')[0]!)), timeout);
    await until('nothing left', async () => (await target.leftovers()).length === 0, timeout);
  });

  test(`${name}: a start that cannot spawn rejects with START_FAILED and leaves nothing`, { skip }, async () => {
    const h = hostname();
    await assert.rejects(driver.start(spec(h, { imageDir: join(dir, 'no-such-dir') })), { code: 'START_FAILED' });
    assert.equal(driver.isRunning(h), false);
    assert.deepEqual(await target.leftovers(), []);
    assert.equal(exitOf(h), undefined, 'a failed start is not an exit');
  });
}

function httpGet(addr: HostPort, path: string, timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: addr.host, port: addr.port, path, timeout: timeoutMs, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: timeout`)));
    req.on('error', reject);
    req.end();
  });
}

async function getJson(addr: HostPort): Promise<AppAnswer> {
  const res = await httpGet(addr, '/');
  assert.equal(res.status, 200);
  return JSON.parse(res.body) as AppAnswer;
}

/**
 * True when the app named `name` still answers at `addr`. Not a bare TCP
 * connect: once an instance's address is unrouted, connections go the
 * default route, where a proxy (as on some CI machines) may accept anything.
 */
async function appAnswers(addr: HostPort, name: string): Promise<boolean> {
  try {
    // A live app on a local address answers at once; an address nobody holds
    // any more may leave the connect hanging on ARP for seconds.
    const res = await httpGet(addr, '/', 1000);
    return res.status === 200 && (JSON.parse(res.body) as AppAnswer).name === name;
  } catch {
    return false;
  }
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
