/**
 * TLS-PSK tunnel endpoint: ours vs stunnel4 (issue 5, "Performance"), same
 * run, same PSK, same cipher (TLS 1.3 TLS_AES_128_GCM_SHA256), same targets.
 *
 * - upload: one connection carries N MB from the client through the
 *   endpoint to a sink (the endpoint decrypts);
 * - download: one connection carries N MB from a source through the
 *   endpoint to the client (the endpoint encrypts);
 * - setup: K sequential connect + handshake + first byte echoed back.
 *
 * The client and the targets live in this process; the endpoint under test
 * runs alone in its own process (our endpoint in a Node child, stunnel as
 * itself, debug = 3 so that it does not log each connection). Rounds
 * alternate which endpoint goes first. Reported: the best round for rates
 * (other processes on the machine only ever slow a round down) and the
 * median, and the CPU time each endpoint process used per GB or per setup
 * (from /proc), which tells the endpoints apart even when the client or a
 * busy machine is the bottleneck.
 *
 *   node bin/run-ts.js bench/tunnel/run.ts [--mb 512] [--setups 500] [--rounds 3]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { generatePskKey, pskKeyBytes } from '../../src/tunnel/psk-file.ts';
import { findStunnel } from '../../src/tunnel/stunnel-binary.ts';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const args = process.argv.slice(2);
const opt = (name: string, dflt: string): number => {
  const i = args.indexOf(`--${name}`);
  return Number(i >= 0 && args[i + 1] !== undefined ? args[i + 1] : dflt);
};
const MB = opt('mb', '512');
const SETUPS = opt('setups', '500');
const ROUNDS = opt('rounds', '3');
const BYTES = MB * 1024 * 1024;
const CIPHER = 'TLS_AES_128_GCM_SHA256';
const IDENTITY = 'bench';
const KEY = generatePskKey();
const PSK = pskKeyBytes(KEY);
const CLK_TCK = 100; // Linux USER_HZ, what /proc/<pid>/stat counts in

const stunnel = findStunnel();
const dir = mkdtempSync(join(tmpdir(), 'eph-bench-tunnel-'));
const children: ChildProcess[] = [];
const servers: Server[] = [];
function cleanup(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));
// Self-stopping whatever happens.
setTimeout(() => {
  console.error('bench/tunnel: overall time limit reached');
  process.exit(1);
}, 15 * 60_000).unref();

function listen(server: Server): Promise<number> {
  servers.push(server);
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r((server.address() as AddressInfo).port)));
}

async function freePort(): Promise<number> {
  const s = createServer();
  const p = await new Promise<number>((r) => s.listen(0, '127.0.0.1', () => r((s.address() as AddressInfo).port)));
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

// ---- targets (in this process, shared by both endpoints) -------------------

let sinkWaiter: { bytes: number; done: () => void } | null = null;
const sinkPort = await listen(
  createServer((s) => {
    let n = 0;
    s.on('data', (d: Buffer) => {
      n += d.length;
      if (sinkWaiter && n >= sinkWaiter.bytes) sinkWaiter.done();
    });
    s.on('error', () => s.destroy());
  }),
);
const chunk = Buffer.alloc(64 * 1024, 0x5a);
const sourcePort = await listen(
  createServer((s) => {
    let left = BYTES;
    s.on('error', () => s.destroy());
    const pump = (): void => {
      while (left > 0) {
        left -= chunk.length;
        if (!s.write(chunk)) {
          s.once('drain', pump);
          return;
        }
      }
      s.end();
    };
    pump();
  }),
);
const echoPort = await listen(
  createServer((s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  }),
);

// ---- endpoints under test --------------------------------------------------

interface Endpoint {
  name: string;
  /** Port in front of each target. */
  ports: { sink: number; source: number; echo: number };
  /** Process serving each port, for its CPU time. */
  pids: { sink: number; source: number; echo: number };
  stop(): void;
}

async function startOurs(): Promise<Endpoint> {
  const start = async (target: number): Promise<{ port: number; child: ChildProcess }> => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'endpoint.ts'), String(target), IDENTITY, KEY], {
      cwd: root,
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    children.push(child);
    const port = await new Promise<number>((res, rej) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) res((JSON.parse(out) as { port: number }).port);
      });
      child.once('exit', (code) => rej(new Error(`our endpoint exited with ${code}`)));
    });
    return { port, child };
  };
  // One process per target keeps the CPU accounting per test clean.
  const [sink, source, echo] = [await start(sinkPort), await start(sourcePort), await start(echoPort)];
  const all = [sink, source, echo];
  return {
    name: 'ours',
    ports: { sink: sink.port, source: source.port, echo: echo.port },
    pids: { sink: sink.child.pid!, source: source.child.pid!, echo: echo.child.pid! },
    stop: () => {
      for (const x of all) x.child.kill('SIGTERM');
    },
  };
}

async function startStunnel(): Promise<Endpoint> {
  const psk = join(dir, 'psk.txt');
  writeFileSync(psk, `${IDENTITY}:${KEY}\n`);
  chmodSync(psk, 0o600);
  const start = async (target: number, name: string): Promise<{ port: number; child: ChildProcess }> => {
    const port = await freePort();
    const conf = join(dir, `${name}.conf`);
    writeFileSync(
      conf,
      `foreground = yes\npid =\ndebug = 3\n[${name}]\naccept = 127.0.0.1:${port}\nconnect = 127.0.0.1:${target}\n` +
        `PSKsecrets = ${psk}\nciphers = PSK\nciphersuites = ${CIPHER}\n`,
    );
    const child = spawn(stunnel!, [conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(child);
    let log = '';
    child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    // stunnel logs nothing at debug = 3 once bound: poll the port instead.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const ok = await new Promise<boolean>((r) => {
        const s = netConnect(port, '127.0.0.1');
        s.once('connect', () => (s.destroy(), r(true)));
        s.once('error', () => r(false));
      });
      if (ok) break;
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`stunnel did not start:\n${log}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return { port, child };
  };
  const [sink, source, echo] = [await start(sinkPort, 'sink'), await start(sourcePort, 'source'), await start(echoPort, 'echo')];
  return {
    name: 'stunnel4',
    ports: { sink: sink.port, source: source.port, echo: echo.port },
    pids: { sink: sink.child.pid!, source: source.child.pid!, echo: echo.child.pid! },
    stop: () => {
      for (const x of [sink, source, echo]) x.child.kill('SIGTERM');
    },
  };
}

// ---- client ---------------------------------------------------------------

function tlsClient(port: number): ReturnType<typeof tlsConnect> {
  return tlsConnect({
    host: '127.0.0.1',
    port,
    ciphers: CIPHER,
    minVersion: 'TLSv1.3',
    checkServerIdentity: () => undefined,
    pskCallback: () => ({ psk: PSK, identity: IDENTITY }),
  });
}

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK; // utime, stime
}

async function upload(port: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  const received = new Promise<void>((done) => (sinkWaiter = { bytes: BYTES, done }));
  const s = tlsClient(port);
  s.on('error', (e) => {
    throw e;
  });
  await new Promise((r) => s.once('secureConnect', r));
  let left = BYTES;
  await new Promise<void>((finish) => {
    const pump = (): void => {
      while (left > 0) {
        left -= chunk.length;
        if (!s.write(chunk)) {
          s.once('drain', pump);
          return;
        }
      }
      finish();
    };
    pump();
  });
  await received;
  sinkWaiter = null;
  s.destroy();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function download(port: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  const s = tlsClient(port);
  let n = 0;
  await new Promise<void>((done, fail) => {
    s.on('data', (d: Buffer) => {
      n += d.length;
      if (n >= BYTES) done();
    });
    s.on('error', fail);
    s.on('close', () => (n >= BYTES ? done() : fail(new Error(`download closed after ${n} bytes`))));
  });
  s.destroy();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function setups(port: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < SETUPS; i++) {
    await new Promise<void>((done, fail) => {
      const s = tlsClient(port);
      s.once('secureConnect', () => s.write('x'));
      s.once('data', () => {
        s.destroy();
        done();
      });
      s.once('error', fail);
    });
  }
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

// ---- run ------------------------------------------------------------------

interface Sample {
  upMBs: number;
  upCpuPerGB: number;
  downMBs: number;
  downCpuPerGB: number;
  setupsPerS: number;
  setupCpuMs: number;
}

async function measure(ep: Endpoint): Promise<Sample> {
  const pids = ep.pids;
  let c0 = cpuSeconds(pids.sink);
  const up = await upload(ep.ports.sink);
  const upCpu = cpuSeconds(pids.sink) - c0;
  c0 = cpuSeconds(pids.source);
  const down = await download(ep.ports.source);
  const downCpu = cpuSeconds(pids.source) - c0;
  c0 = cpuSeconds(pids.echo);
  const setup = await setups(ep.ports.echo);
  const setupCpu = cpuSeconds(pids.echo) - c0;
  const gb = BYTES / 1024 ** 3;
  return {
    upMBs: MB / up,
    upCpuPerGB: upCpu / gb,
    downMBs: MB / down,
    downCpuPerGB: downCpu / gb,
    setupsPerS: SETUPS / setup,
    setupCpuMs: (setupCpu * 1000) / SETUPS,
  };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

if (!stunnel) console.error('stunnel4 not found: measuring our endpoint alone');
const ours = await startOurs();
const theirs = stunnel ? await startStunnel() : null;
const samples: Record<string, Sample[]> = { ours: [], stunnel4: [] };
for (let r = 0; r < ROUNDS; r++) {
  const order = r % 2 === 0 ? [ours, theirs] : [theirs, ours];
  for (const ep of order) {
    if (!ep) continue;
    const s = await measure(ep);
    samples[ep.name]!.push(s);
    console.error(
      `round ${r + 1} ${ep.name.padEnd(8)} up ${s.upMBs.toFixed(0)} MB/s (${s.upCpuPerGB.toFixed(2)} cpu-s/GB)  ` +
        `down ${s.downMBs.toFixed(0)} MB/s (${s.downCpuPerGB.toFixed(2)} cpu-s/GB)  setups ${s.setupsPerS.toFixed(0)}/s (${s.setupCpuMs.toFixed(2)} cpu-ms each)`,
    );
  }
}
ours.stop();
theirs?.stop();

const keys: (keyof Sample)[] = ['upMBs', 'upCpuPerGB', 'downMBs', 'downCpuPerGB', 'setupsPerS', 'setupCpuMs'];
const higherIsBetter: Record<keyof Sample, boolean> = {
  upMBs: true,
  downMBs: true,
  setupsPerS: true,
  upCpuPerGB: false,
  downCpuPerGB: false,
  setupCpuMs: false,
};
const summary = (name: string, pick: (xs: number[], k: keyof Sample) => number): Record<keyof Sample, number> =>
  Object.fromEntries(keys.map((k) => [k, pick(samples[name]!.map((s) => s[k]), k)])) as Record<keyof Sample, number>;
const best = (xs: number[], k: keyof Sample): number => (higherIsBetter[k] ? Math.max(...xs) : Math.min(...xs));
const med = (xs: number[]): number => median(xs);

console.log(`\nTLS-PSK endpoint, ${MB} MB per bulk transfer, ${SETUPS} setups, ${ROUNDS} rounds (${CIPHER})`);
console.log('metric                        ours best  stunnel best  ratio  | ours median  stunnel median  ratio');
const oursBest = summary('ours', best);
const oursMed = summary('ours', med);
const theirsBest = theirs ? summary('stunnel4', best) : null;
const theirsMed = theirs ? summary('stunnel4', med) : null;
const labels: Record<keyof Sample, [string, number]> = {
  upMBs: ['upload MB/s', 0],
  downMBs: ['download MB/s', 0],
  setupsPerS: ['setups/s', 0],
  upCpuPerGB: ['upload cpu-s/GB', 2],
  downCpuPerGB: ['download cpu-s/GB', 2],
  setupCpuMs: ['cpu-ms per setup', 2],
};
const ratio = (k: keyof Sample, a: number, b: number): string => (higherIsBetter[k] ? a / b : b / a).toFixed(2) + 'x';
for (const k of ['upMBs', 'downMBs', 'setupsPerS', 'upCpuPerGB', 'downCpuPerGB', 'setupCpuMs'] as const) {
  const [label, d] = labels[k];
  const tb = theirsBest?.[k] ?? NaN;
  const tm = theirsMed?.[k] ?? NaN;
  console.log(
    `${label.padEnd(28)} ${oursBest[k].toFixed(d).padStart(10)} ${tb.toFixed(d).padStart(13)} ${ratio(k, oursBest[k], tb).padStart(6)}  |` +
      ` ${oursMed[k].toFixed(d).padStart(11)} ${tm.toFixed(d).padStart(15)} ${ratio(k, oursMed[k], tm).padStart(6)}`,
  );
}
console.log('(ratio > 1: ours is better, i.e. faster or using less CPU; cpu = the endpoint process only)');
for (const s of servers) s.close();
process.exit(0);
