import { spawn } from 'node:child_process';
import { PassThrough } from 'node:stream';
import type { Readable } from 'node:stream';
import { EphError } from '../core/errors.ts';
import type { RunAs } from './run-as.ts';
import { spawnIdentity } from './run-as.ts';

export interface CommandOptions {
  who: RunAs;
  cwd: string;
  env?: NodeJS.ProcessEnv;
  /** Written to the command's standard input, which is then closed. */
  input?: string | Readable;
  /** Killed (SIGKILL) after this long; default 120 s. */
  timeoutMs?: number;
}

/**
 * Runs a short command (initdb, psql, pg_dump…) to completion and answers
 * its standard output. A non-zero exit becomes an EphError carrying the last
 * lines of its standard error, which is what a user needs to see.
 */
export function runCommand(command: string, args: readonly string[], opts: CommandOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: opts.cwd,
      env: opts.env ?? baseEnv(opts.cwd),
      stdio: ['pipe', 'pipe', 'pipe'],
      ...spawnIdentity(opts.who),
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      if (out.length < 1 << 20) out += s;
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      err = (err + s).slice(-4000);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    // The command may exit before reading all its input (e.g. psql stops at
    // the first error); that EPIPE is reported by the exit status instead.
    child.stdin.on('error', () => undefined);
    if (typeof opts.input === 'string') child.stdin.end(opts.input);
    else if (opts.input) {
      opts.input.on('error', (e) => {
        child.kill('SIGKILL');
        reject(e);
      });
      opts.input.pipe(child.stdin);
    } else child.stdin.end();
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new EphError('DEPENDENCY_MISSING', `${command}: ${e.message}`, { cause: e }));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(commandFailed(command, code, signal, err));
    });
  });
}

/** The error for a helper program that failed, with its own explanation. */
export function commandFailed(command: string, code: number | null, signal: NodeJS.Signals | null, stderr: string): EphError {
  const name = command.split('/').pop() ?? command;
  const why = stderr.trim().split('\n').slice(-3).join(' / ') || (signal ? `killed by ${signal}` : `exit status ${code}`);
  return new EphError('INTERNAL', `${name} failed: ${why}`);
}

/** A small, predictable environment for server programs: no secrets of the cloud leak into them. */
export function baseEnv(home: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: home,
    LANG: 'C.UTF-8',
    ...extra,
  };
}

/**
 * Runs a command whose standard output is the answer (pg_dump) and gives
 * that output as a stream; a non-zero exit destroys the stream with the
 * command's error, so a truncated dump is never mistaken for a whole one.
 */
export function commandStream(command: string, args: readonly string[], opts: CommandOptions): Readable {
  const out = new PassThrough();
  const child = spawn(command, args, {
    cwd: opts.cwd,
    env: opts.env ?? baseEnv(opts.cwd),
    stdio: ['ignore', 'pipe', 'pipe'],
    ...spawnIdentity(opts.who),
  });
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => {
    err = (err + s).slice(-4000);
  });
  child.stdout.pipe(out, { end: false });
  // The reader went away (client disconnected): stop the command too.
  out.once('close', () => child.kill('SIGTERM'));
  child.once('error', (e) => out.destroy(new EphError('DEPENDENCY_MISSING', `${command}: ${e.message}`)));
  child.once('close', (code, signal) => {
    if (code === 0) out.end();
    else out.destroy(commandFailed(command, code, signal, err));
  });
  return out;
}
