/**
 * Runs the real `eph` CLI (`node bin/eph.js …`) as a child process, the way a
 * user or a CI script does, with a clean environment and a time bound.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = fileURLToPath(new URL('../../bin/eph.js', import.meta.url));

export interface EphResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

export interface EphOptions {
  /** EPH_URL, EPH_USER, EPH_TOKEN… (the caller's EPH_* variables are never inherited). */
  env?: Record<string, string>;
  /** Written to stdin, which is then closed (stdin is never a terminal here). */
  input?: Buffer | string;
  timeoutMs?: number;
  /** Working directory (default: the repository root). */
  cwd?: string;
}

function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('EPH_') && k !== 'NODE_TEST_CONTEXT') env[k] = v;
  return { ...env, ...extra };
}

/** Starts `eph args…`; the caller reads its output and ends it. */
export function spawnEph(args: readonly string[], opts: EphOptions = {}): ChildProcessWithoutNullStreams {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: opts.cwd ?? ROOT, env: childEnv(opts.env), stdio: 'pipe' });
  if (opts.input !== undefined) child.stdin.end(opts.input);
  else child.stdin.end();
  return child;
}

/** Runs `eph args…` to completion (killed after `timeoutMs`, default 30 s). */
export function eph(args: readonly string[], opts: EphOptions = {}): Promise<EphResult> {
  const child = spawnEph(args, opts);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.on('data', (c: Buffer) => err.push(c));
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, signal, stdout: stdoutBytes.toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), stdoutBytes });
    });
  });
}

/** Collects a running child's stdout and waits (with a deadline) until it matches. */
export function outputWatcher(stream: NodeJS.ReadableStream): { text(): string; waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray> } {
  let text = '';
  const waiters = new Set<() => void>();
  stream.on('data', (c: Buffer) => {
    text += c.toString('utf8');
    for (const w of waiters) w();
  });
  return {
    text: () => text,
    waitFor(re, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = text.match(re);
          if (!m) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(m);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no ${re} in output within ${timeoutMs} ms; got: ${JSON.stringify(text.slice(-500))}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
  };
}

/** Ends a child and waits for it (SIGKILL if it ignores `signal` for 5 s). */
export async function stopChild(child: ChildProcessWithoutNullStreams, signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return { code: child.exitCode, signal: child.signalCode };
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, sig) => r({ code, signal: sig })));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  const res = await done;
  clearTimeout(timer);
  return res;
}
