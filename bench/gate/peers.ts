/**
 * nginx and HAProxy as peers of the gate in a benchmark, and wrk to load them,
 * all started without blocking the event loop (bench/gate/cloud.ts runs the
 * cloud itself in the benchmark's process). One worker process / one thread
 * each, upstream keep-alive, configs generated in a temp dir.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface Peer {
  port: number;
  pid: number;
  child: ChildProcess;
}

export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const p = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

/** `cmd argv` prefixed with `taskset -c CPUS` when `cpus` is given. */
function pinned(cpus: string | null, cmd: string, argv: string[]): [string, string[]] {
  return cpus === null ? [cmd, argv] : ['taskset', ['-c', cpus, cmd, ...argv]];
}

/** Runs a command to its end; its stdout. */
export function run(cmd: string, argv: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', () => {});
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('error', reject);
    c.on('close', () => {
      clearTimeout(t);
      resolve(out);
    });
  });
}

async function waitListening(port: number): Promise<void> {
  const end = Date.now() + 15_000;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = createServer();
      s.once('error', () => r(true)); // in use: someone listens
      s.listen(port, '127.0.0.1', () => s.close(() => r(false)));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startNginx(dir: string, upstream: string, cpus: string | null): Promise<Peer> {
  const port = await freePort();
  const d = join(dir, `nginx-${port}`);
  mkdirSync(d, { recursive: true });
  const conf = join(d, 'nginx.conf');
  writeFileSync(
    conf,
    `worker_processes 1;
pid ${d}/nginx.pid;
error_log ${d}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${d}/body; proxy_temp_path ${d}/proxy; fastcgi_temp_path ${d}/fcgi;
  uwsgi_temp_path ${d}/uwsgi; scgi_temp_path ${d}/scgi;
  upstream app { server ${upstream}; keepalive 64; }
  server {
    listen 127.0.0.1:${port};
    keepalive_requests 1000000;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
  }
}
`,
  );
  const [cmd, argv] = pinned(cpus, 'nginx', ['-c', conf, '-p', d, '-g', 'daemon off;']);
  const child = spawn(cmd, argv, { stdio: 'inherit' });
  await waitListening(port);
  return { port, pid: child.pid!, child };
}

export async function startHaproxy(dir: string, upstream: string, cpus: string | null): Promise<Peer> {
  const port = await freePort();
  const cfg = join(dir, `haproxy-${port}.cfg`);
  writeFileSync(
    cfg,
    `global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend f
  bind 127.0.0.1:${port}
  default_backend b
backend b
  server app ${upstream}
`,
  );
  const [cmd, argv] = pinned(cpus, 'haproxy', ['-f', cfg, '-db']);
  const child = spawn(cmd, argv, { stdio: 'inherit' });
  await waitListening(port);
  return { port, pid: child.pid!, child };
}

export interface WrkResult {
  rps: number;
  p50ms: number;
  p99ms: number;
  requests: number;
  /** wrk's Non-2xx / socket error lines, '' when none. */
  errors: string;
}

function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v.trim());
  if (!m) return Number.NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 's' ? n * 1000 : n;
}

/** wrk -t1 keep-alive GETs to `url` with `Host: host`; pinned to `cpus` when given. */
export async function wrk(url: string, host: string, conns: number, seconds: number, cpus: string | null): Promise<WrkResult> {
  const [cmd, argv] = pinned(cpus, 'wrk', ['-t1', `-c${conns}`, `-d${seconds}s`, '--latency', '-H', `Host: ${host}`, url]);
  const out = await run(cmd, argv, (seconds + 30) * 1000);
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? Number.NaN),
    p50ms: toMs(/\s50%\s+(\S+)/.exec(out)?.[1] ?? ''),
    p99ms: toMs(/\s99%\s+(\S+)/.exec(out)?.[1] ?? ''),
    requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? Number.NaN),
    errors: out
      .split('\n')
      .filter((l) => /Non-2xx|Socket errors/.test(l))
      .join('; ')
      .trim(),
  };
}

/** CPU time (user + system, ms) used so far by process `pid` and its descendants. */
export function treeCpuMs(pid: number): number {
  const parent = new Map<number, number>();
  const ticks = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(d), Number(f[1]));
      ticks.set(Number(d), Number(f[11]) + Number(f[12]));
    } catch {
      // the process ended meanwhile
    }
  }
  let sum = 0;
  for (const [p, t] of ticks) {
    for (let q: number | undefined = p; q !== undefined && q > 1; q = parent.get(q)) {
      if (q === pid) {
        sum += t;
        break;
      }
    }
  }
  return (sum * 1000) / 100; // USER_HZ is 100 on Linux
}
