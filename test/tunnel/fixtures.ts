// Shared pieces of the tunnel tests: a real TCP echo target, a real stunnel4
// process bounded in time, and a client that reports what came back.
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { findStunnel } from '../../src/tunnel/stunnel-binary.ts';

export const STUNNEL = findStunnel();
export const NO_STUNNEL = STUNNEL ? false : 'stunnel4 is not installed';

type After = Pick<TestContext, 'after'>;

export function tempDir(t: After, prefix = 'eph-tunnel-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface EchoTarget {
  port: number;
  /** Bytes the target received, over all connections. */
  bytes(): number;
  /** Connections the target accepted. */
  accepted(): number;
}

/** A TCP echo server: echoes bytes, and ends its side when the client ends its own. */
export async function startEcho(t: After): Promise<EchoTarget> {
  let bytes = 0;
  let accepted = 0;
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    accepted++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
    s.on('data', (d: Buffer) => (bytes += d.length));
    s.pipe(s);
  });
  const port = await listen(server);
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { port, bytes: () => bytes, accepted: () => accepted };
}

export function listen(server: Server, host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve((server.address() as AddressInfo).port));
  });
}

/** A port that was free a moment ago, for programs that cannot report the port they bound. */
export async function freePort(): Promise<number> {
  const server = createServer();
  const port = await listen(server);
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

export interface RoundTrip {
  data: Buffer;
  /** The connection error, if it ended with one (e.g. ECONNRESET). */
  error: string | null;
}

/**
 * Connects, sends `payload`, shuts down writing, and collects everything
 * until the peer closes (or the deadline passes, which fails the test).
 */
export function roundTrip(port: number, payload: Buffer | string, deadlineMs = 10_000): Promise<RoundTrip> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let error: string | null = null;
    const s = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no close from 127.0.0.1:${port} within ${deadlineMs} ms`));
    }, deadlineMs);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', (e: Error) => (error = (e as NodeJS.ErrnoException).code ?? e.message));
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), error });
    });
    s.end(payload);
  });
}

export interface StunnelProcess {
  /** stunnel's log so far (stderr, foreground mode). */
  log(): string;
  stop(): Promise<void>;
}

/**
 * Runs real stunnel4 on `conf` in `dir` (psk.txt and friends live there),
 * foreground, without a pid file, killed after `limitSeconds` whatever
 * happens. Resolves once stunnel has bound its ports.
 */
export async function startStunnel(t: After, dir: string, conf: string, limitSeconds = 60): Promise<StunnelProcess> {
  if (!STUNNEL) throw new Error('stunnel4 is not installed');
  const confPath = join(dir, `stunnel-${Date.now()}-${Math.random().toString(36).slice(2)}.conf`);
  writeFileSync(confPath, `foreground = yes\npid =\ndebug = 5\n${conf}`);
  const child = spawn('timeout', [String(limitSeconds), STUNNEL, confPath], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => (log += d));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  t.after(stop);
  const deadline = Date.now() + 10_000;
  while (!log.includes('Configuration successful')) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`stunnel exited early:\n${log}`);
    if (Date.now() > deadline) throw new Error(`stunnel did not start within 10 s:\n${log}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { log: () => log, stop };
}

/** Writes a psk.txt stunnel reads without complaining about its permissions. */
export function writePskFile(dir: string, text: string, name = 'psk.txt'): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  chmodSync(path, 0o600);
  return path;
}

/** Polls `check` until it is true or the deadline passes. */
export async function waitFor(what: string, check: () => boolean, deadlineMs = 5_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
