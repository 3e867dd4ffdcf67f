import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { basename } from 'node:path';
import { EphError } from '../core/errors.ts';
import { readAccountFile, writeAccountFile } from './account-files.ts';
import type { RunAs } from './run-as.ts';
import { spawnIdentity } from './run-as.ts';
import { baseEnv } from './run-command.ts';

export interface ServerProcessOptions {
  command: string;
  args: readonly string[];
  cwd: string;
  who: RunAs;
  /** Where we record the pid, so that a server left behind by a crashed cloud is found and stopped. */
  pidFile: string;
  /** A line the server prints once it accepts connections. */
  readyLine: RegExp;
  readyTimeoutMs?: number;
  /** How the server shuts down cleanly (PostgreSQL: SIGINT, fast shutdown). */
  stopSignal: NodeJS.Signals;
  /** Called when the server exits after it was ready without being asked to stop; gets its last output. */
  onCrash?: (output: string) => void;
}

/** A long-running database server we started and supervise. */
export class ServerProcess {
  readonly #child: ChildProcess;
  readonly #opts: ServerProcessOptions;
  readonly #exited: Promise<void>;
  #tail = '';
  #stopping = false;

  private constructor(child: ChildProcess, opts: ServerProcessOptions) {
    this.#child = child;
    this.#opts = opts;
    this.#exited = new Promise((resolve) => child.once('close', () => resolve()));
  }

  /**
   * Starts the server and resolves once it prints its ready line; rejects
   * with its last output when it exits first or is not ready in time.
   */
  static async start(opts: ServerProcessOptions): Promise<ServerProcess> {
    await stopByPidFile(opts.pidFile, opts.command, opts.stopSignal);
    const child = spawn(opts.command, opts.args, {
      cwd: opts.cwd,
      env: baseEnv(opts.cwd),
      stdio: ['ignore', 'pipe', 'pipe'],
      ...spawnIdentity(opts.who),
    });
    const proc = new ServerProcess(child, opts);
    const name = basename(opts.command);
    await new Promise<void>((resolve, reject) => {
      let done = false;
      const finish = (err?: Error): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      const onData = (s: string): void => {
        proc.#tail = (proc.#tail + s).slice(-4000);
        if (opts.readyLine.test(proc.#tail)) finish();
      };
      child.stdout!.setEncoding('utf8').on('data', onData);
      child.stderr!.setEncoding('utf8').on('data', onData);
      child.once('error', (e) => finish(new EphError('DEPENDENCY_MISSING', `${name}: ${e.message}`)));
      child.once('close', (code, signal) =>
        finish(new EphError('START_FAILED', `${name} exited (${signal ?? `status ${code}`}): ${proc.lastOutput()}`)),
      );
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        finish(new EphError('START_FAILED', `${name} was not ready within ${opts.readyTimeoutMs ?? 30_000} ms: ${proc.lastOutput()}`));
      }, opts.readyTimeoutMs ?? 30_000);
    });
    // The directory belongs to the server's account: never write through a link it left there.
    if (child.pid !== undefined) await writeAccountFile(opts.pidFile, `${child.pid}\n`, null, 0o644);
    void proc.#exited.then(() => {
      if (!proc.#stopping) opts.onCrash?.(proc.lastOutput());
    });
    return proc;
  }

  /** True while the process has not exited. */
  get alive(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** Resolves when the process exits, however it ends. */
  get exited(): Promise<void> {
    return this.#exited;
  }

  /** The last lines it printed (errors are there). */
  lastOutput(): string {
    return this.#tail.trim().split('\n').slice(-5).join(' / ');
  }

  /** Asks for a clean shutdown; kills it when that takes longer than `timeoutMs`. */
  async stop(timeoutMs = 20_000): Promise<void> {
    this.#stopping = true;
    if (this.alive) {
      this.#child.kill(this.#opts.stopSignal);
      const timer = setTimeout(() => this.#child.kill('SIGKILL'), timeoutMs);
      await this.#exited;
      clearTimeout(timer);
    }
    await rm(this.#opts.pidFile, { force: true });
  }
}

/**
 * A server from an earlier run of the cloud (killed without stopping its
 * children) still holds the data directory; PostgreSQL would refuse to start
 * beside it. Stop it the clean way first.
 */
export async function stopByPidFile(pidFile: string, command: string, signal: NodeJS.Signals): Promise<void> {
  // A link or FIFO in its place is not ours: ignored (and removed below).
  const text = await readAccountFile(pidFile).catch(() => null);
  if (text === null) {
    await rm(pidFile, { force: true });
    return;
  }
  const pid = Number(text.trim());
  if (Number.isInteger(pid) && pid > 1 && isProcessOf(pid, command)) {
    process.kill(pid, signal);
    const deadline = Date.now() + 20_000;
    while (isProcessOf(pid, command)) {
      if (Date.now() > deadline) {
        process.kill(pid, 'SIGKILL');
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  await rm(pidFile, { force: true });
}

/** Whether `pid` is alive and runs `command` (a recycled pid must not be killed). */
function isProcessOf(pid: number, command: string): boolean {
  try {
    const argv0 = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] ?? '';
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // A zombie is already dead; it only waits for its (gone) parent.
    if (/\) Z /.test(stat)) return false;
    // Redis rewrites its title to "redis-server 127.0.0.1:6379".
    return basename(argv0.split(' ')[0] ?? '') === basename(command);
  } catch {
    return false;
  }
}
