import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** PostgreSQL server binaries: PATH first, then Debian's versioned directory. */
export function pgBin(name: string): string | null {
  const which = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  if (which.status === 0 && which.stdout.trim() && name !== 'initdb' && name !== 'postgres' && name !== 'pg_ctl') return which.stdout.trim();
  for (const v of ['17', '16', '15', '14', '13']) {
    const p = `/usr/lib/postgresql/${v}/bin/${name}`;
    if (existsSync(p)) return p;
  }
  return which.status === 0 && which.stdout.trim() ? which.stdout.trim() : null;
}

export const NO_POSTGRES: string | false = pgBin('initdb') && pgBin('postgres') ? false : 'PostgreSQL server binaries (initdb, postgres) are not installed';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface PgCluster {
  url: string;
  port: number;
  stop(): Promise<void>;
}

/**
 * A throw-away PostgreSQL cluster on a loopback port, run as the unprivileged
 * `postgres` system user when we are root (initdb and postgres refuse root).
 */
export async function startPgCluster(): Promise<PgCluster> {
  const base = mkdtempSync(join(tmpdir(), 'eph-pg-'));
  chmodSync(base, 0o755);
  const data = join(base, 'data');
  const asRoot = process.getuid?.() === 0;
  // setpriv execs in place (runuser would stay as a parent that does not pass our signals on).
  const runAs = (cmd: string, args: string[]): [string, string[]] =>
    asRoot ? ['setpriv', ['--reuid=postgres', '--regid=postgres', '--init-groups', cmd, ...args]] : [cmd, args];
  if (asRoot) {
    const pw = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
    if (pw.status !== 0) throw new Error('running as root needs a postgres system user');
    chownSync(base, Number(pw.stdout.trim()), Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim()));
  }
  const [ic, ia] = runAs(pgBin('initdb')!, ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const init = spawnSync(ic, ia, { encoding: 'utf8' });
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr}`);
  const port = await freePort();
  const [pc, pa] = runAs(pgBin('postgres')!, ['-D', data, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=${base}`, '-c', 'fsync=off']);
  const proc: ChildProcess = spawn(pc, pa, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const deadline = Date.now() + 20_000;
  for (;;) {
    const ready = spawnSync(pgBin('pg_isready')!, ['-h', '127.0.0.1', '-p', String(port)], { encoding: 'utf8' });
    if (ready.status === 0) break;
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`postgres did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGINT');
        await exited;
      }
      rmSync(base, { recursive: true, force: true });
    },
  };
}
