/**
 * Issue 4 §5: under steady load through the gate, 100 consecutive
 * promote/rollback switches produce zero failed or reset requests.
 *
 * Real pieces: the gate, the route service with its real HTTP health check,
 * two app servers in a child process, keep-alive clients over loopback. The
 * instance service is replaced by a stand-in backend that reports the two
 * app servers as running instances (waking is tested elsewhere).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, test } from 'node:test';
import { Pool } from 'undici';
import type { HostPort } from '../../src/core/config.ts';
import { createGate } from '../../src/gate/gate.ts';
import { RouteService } from '../../src/gate/route-service.ts';
import { MemoryRouteStore } from '../../src/store/route-store.ts';
import { RoutingTable } from '../../src/gate/routing-table.ts';
import { TestInstances } from './route-service.fixtures.ts';

const DOMAIN = 'eph.test';
const HA = `eph-0000000a.${DOMAIN}`;
const HB = `eph-0000000b.${DOMAIN}`;
const USER = 'u-switch';
const WWW = 'www.example.test';
const BETA = 'beta.example.test';

const TARGET_RPS = 2000;
const CONNECTIONS = 16;
const SWITCHES = 100;
const SWITCH_EVERY_MS = 40;
const WARMUP_MS = 500;
const COOLDOWN_MS = 500;
const HARD_LIMIT_MS = 25_000;

// Two apps in their own process so that they do not share the gate's event loop.
// Every tenth request asks for /slow, which is held 20 ms: there are always requests in flight when a switch lands.
const APPS = `
const http = require('node:http');
function app(body) {
  const s = http.createServer((req, res) => {
    const send = () => { res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length }); res.end(body); };
    if (req.url === '/slow') setTimeout(send, 20); else send();
  });
  s.keepAliveTimeout = 60000;
  return new Promise((r) => s.listen(0, '127.0.0.1', () => r(s.address().port)));
}
Promise.all([app('A'), app('B')]).then(([a, b]) => console.log(JSON.stringify({ a, b })));
process.stdin.on('end', () => process.exit(0)).resume();
`;

let apps: ChildProcess;
let ports: { a: number; b: number };

before(async () => {
  apps = spawn(process.execPath, ['-e', APPS], { stdio: ['pipe', 'pipe', 'inherit'] });
  apps.stdout!.setEncoding('utf8');
  ports = await new Promise<{ a: number; b: number }>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('the app servers did not start within 10 s')), 10_000);
    apps.stdout!.on('data', (chunk: string) => {
      out += chunk;
      if (!out.includes('\n')) return;
      clearTimeout(timer);
      resolve(JSON.parse(out) as { a: number; b: number });
    });
    apps.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the app servers exited (${String(code)})`));
    });
  });
});

after(() => {
  // Closing stdin ends the child; kill is the fallback if it is stuck.
  apps.stdin?.end();
  const t = setTimeout(() => apps.kill('SIGKILL'), 2000);
  t.unref();
});

interface LoadFigures {
  sent: number;
  ok: number;
  failures: string[];
  bodies: Map<string, number>;
}

/** Paced closed-loop load: CONNECTIONS loops share one schedule of TARGET_RPS. */
function startLoad(pool: Pool): { stop(): Promise<LoadFigures> } {
  const fig: LoadFigures = { sent: 0, ok: 0, failures: [], bodies: new Map() };
  const t0 = performance.now();
  let running = true;
  const loop = async (): Promise<void> => {
    while (running) {
      const n = fig.sent++;
      const due = t0 + (n * 1000) / TARGET_RPS;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      try {
        const res = await pool.request({ method: 'GET', path: n % 10 === 0 ? '/slow' : '/', headers: { host: WWW } });
        const body = await res.body.text();
        if (res.statusCode !== 200) fig.failures.push(`#${n}: status ${res.statusCode} ${body.slice(0, 80)}`);
        else {
          fig.ok++;
          fig.bodies.set(body, (fig.bodies.get(body) ?? 0) + 1);
        }
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        fig.failures.push(`#${n}: ${err.code ?? ''} ${err.message}`);
      }
    }
  };
  const loops = Array.from({ length: CONNECTIONS }, loop);
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      return fig;
    },
  };
}

test(
  'zero failed requests across 100 promote/rollback switches under ~2,000 req/s (instances: two real app servers behind a stand-in backend)',
  { timeout: HARD_LIMIT_MS + 5000 },
  async (t) => {
    const table = new RoutingTable();
    const instances = new TestInstances();
    const addr = (port: number): HostPort => ({ host: '127.0.0.1', port });
    instances.add(HA, USER, addr(ports.a));
    instances.add(HB, USER, addr(ports.b));
    const routes = new RouteService({
      store: new MemoryRouteStore(),
      table,
      backend: instances,
      instances,
      reservedDomain: DOMAIN,
      healthTimeoutMs: 5000,
    });
    await routes.map(USER, WWW, HA, { by: 'test' });
    await routes.map(USER, BETA, HB, { by: 'test' });

    const gate = createGate({ table, backend: instances, logger: null });
    const gaddr = await gate.listen('127.0.0.1', 0);
    t.after(() => gate.close());
    const pool = new Pool(`http://127.0.0.1:${gaddr.port}`, { connections: CONNECTIONS, pipelining: 1, keepAliveTimeout: 30_000, headersTimeout: 10_000, bodyTimeout: 10_000 });
    t.after(() => pool.close());

    const started = performance.now();
    const load = startLoad(pool);
    const hardStop = setTimeout(() => void load.stop(), HARD_LIMIT_MS);
    let switches = 0;
    let fig: LoadFigures;
    try {
      await new Promise((r) => setTimeout(r, WARMUP_MS));
      for (let i = 0; i < SWITCHES; i++) {
        const route = i % 2 === 0 ? await routes.promote(USER, BETA, WWW, 'test') : await routes.rollback(USER, WWW, 'test');
        assert.equal(route.targets[0]!.hostname, i % 2 === 0 ? HB : HA);
        switches++;
        await new Promise((r) => setTimeout(r, SWITCH_EVERY_MS));
      }
      await new Promise((r) => setTimeout(r, COOLDOWN_MS));
    } finally {
      fig = await load.stop();
      clearTimeout(hardStop);
    }
    const seconds = (performance.now() - started) / 1000;
    const rps = Math.round(fig.sent / seconds);
    const a = fig.bodies.get('A') ?? 0;
    const b = fig.bodies.get('B') ?? 0;
    t.diagnostic(
      `requests ${fig.sent} in ${seconds.toFixed(2)} s (${rps} req/s), ok ${fig.ok}, failures ${fig.failures.length}, ` +
        `switches ${switches}, answered A ${a}, B ${b}`,
    );
    console.log(`zero-failed-switch: requests=${fig.sent} seconds=${seconds.toFixed(2)} rps=${rps} failures=${fig.failures.length} switches=${switches} A=${a} B=${b}`);

    assert.equal(switches, SWITCHES);
    assert.deepEqual(fig.failures.slice(0, 10), [], `${fig.failures.length} failed requests`);
    assert.equal(fig.ok, fig.sent);
    assert.deepEqual([...fig.bodies.keys()].sort(), ['A', 'B'], 'only the two apps answered');
    assert.ok(a > 0 && b > 0, 'both A and B served traffic');
    assert.ok(rps >= TARGET_RPS * 0.5, `load too low to prove anything: ${rps} req/s`);
    const history = await routes.history(USER, WWW, 1000);
    assert.equal(history.length, SWITCHES + 1);
    assert.deepEqual(table.get(WWW)!.targets.map((x) => x.hostname), [HA], 'back on A after an even number of switches');
  },
);
