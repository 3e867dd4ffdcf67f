// The developer's day from issue 5 §5: stunnel4 with the generated client
// stunnel.conf makes a remote PostgreSQL appear on a local port, and psql
// runs a query through stunnel → our TLS-PSK endpoint → a real PostgreSQL.
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';
import { formatPskFile, generatePsk, parsePskFile } from '../../src/tunnel/psk-file.ts';
import { startPskEndpoint } from '../../src/tunnel/psk-server.ts';
import { clientStunnelConf } from '../../src/tunnel/stunnel-conf.ts';
import { NO_STUNNEL, freePort, startStunnel, tempDir, writePskFile } from './fixtures.ts';

const run = promisify(execFile);
const PG_BIN = '/usr/lib/postgresql/15/bin';

function which(name: string): string | null {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

function pgBinary(name: string): string | null {
  return existsSync(join(PG_BIN, name)) ? join(PG_BIN, name) : which(name);
}

/** initdb and postgres refuse to run as root: run them as the `postgres` system user then. */
function pgUser(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }));
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }));
    return { uid, gid };
  } catch {
    return null;
  }
}

const INITDB = pgBinary('initdb');
const POSTGRES = pgBinary('postgres');
const PSQL = which('psql');
const PG_USER = pgUser();
const skip =
  NO_STUNNEL ||
  (!INITDB || !POSTGRES ? 'PostgreSQL server binaries are not installed' : false) ||
  (!PSQL ? 'psql is not installed' : false) ||
  (!PG_USER ? 'running as root without a postgres system user' : false);

/** A throwaway PostgreSQL cluster on a loopback port, trust auth, no fsync. */
async function startPostgres(t: TestContext): Promise<number> {
  const { uid, gid } = PG_USER!;
  const dir = tempDir(t, 'eph-tunnel-pg-');
  chmodSync(dir, 0o755); // the postgres user must traverse it
  const data = join(dir, 'data');
  mkdirSync(data, { mode: 0o700 });
  chownSync(data, uid, gid);
  const asPg = { uid, gid, cwd: dir, env: { PATH: process.env.PATH ?? '', LANG: 'C' } };
  await run(INITDB!, ['-D', data, '--no-sync', '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-instructions'], {
    ...asPg,
    timeout: 60_000,
  });
  const port = await freePort();
  const pg = spawn(
    POSTGRES!,
    ['-D', data, '-h', '127.0.0.1', '-p', String(port), '-k', data, '-c', 'fsync=off', '-c', 'shared_buffers=16MB', '-c', 'max_connections=10'],
    { ...asPg, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  pg.stderr.setEncoding('utf8');
  pg.stderr.on('data', (d: string) => (log += d));
  const exited = new Promise<void>((r) => pg.once('exit', () => r()));
  t.after(async () => {
    if (pg.exitCode === null && pg.signalCode === null) pg.kill('SIGINT'); // fast shutdown
    const killer = setTimeout(() => pg.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(killer);
  });
  const deadline = Date.now() + 30_000;
  while (!log.includes('ready to accept connections')) {
    if (pg.exitCode !== null) throw new Error(`postgres exited early:\n${log}`);
    if (Date.now() > deadline) throw new Error(`postgres not ready within 30 s:\n${log}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return port;
}

test('psql runs a query through stunnel4 (generated stunnel.conf) → our TLS-PSK endpoint → PostgreSQL', { skip, timeout: 90_000 }, async (t) => {
  const pgPort = await startPostgres(t);
  // What the stunnel tab does: the user's psk.txt, an endpoint reading it, a stunnel.conf to copy.
  const pskTxt = `${generatePsk('laptop')}\n`;
  const endpoint = await startPskEndpoint({
    listen: { host: '127.0.0.1', port: 0 },
    target: { host: '127.0.0.1', port: pgPort },
    identities: () => parsePskFile(pskTxt),
  });
  t.after(() => endpoint.close());

  const dir = tempDir(t);
  writePskFile(dir, formatPskFile(parsePskFile(pskTxt)));
  const localPort = await freePort();
  const stunnel = await startStunnel(
    t,
    dir,
    clientStunnelConf({ service: 'mydb', accept: `127.0.0.1:${localPort}`, connect: `127.0.0.1:${endpoint.address.port}` }),
  );

  const psql = (sql: string): Promise<{ stdout: string }> =>
    run(PSQL!, ['-h', '127.0.0.1', '-p', String(localPort), '-U', 'postgres', '-d', 'postgres', '-tA', '-c', sql], {
      env: { ...process.env, PGCONNECT_TIMEOUT: '10' },
      timeout: 30_000,
    });
  const one = await psql('select 1').catch((e: Error) => {
    throw new Error(`${e.message}\nstunnel log:\n${stunnel.log()}`);
  });
  assert.equal(one.stdout.trim(), '1');
  // The answer comes from our throwaway server, not some other PostgreSQL on the machine.
  const port = await psql('show port');
  assert.equal(port.stdout.trim(), String(pgPort));
});
