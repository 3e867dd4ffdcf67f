// Shared helpers of the process driver tests (not a test file itself).
import { chmod, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HostPort } from '../../../src/core/config.ts';
import type { LaunchSpec } from '../../../src/runtime/driver.ts';
import { netnsUnavailableReason } from '../../../src/runtime/process/process-driver.ts';

/** Why the namespace tests cannot run here, or false when they can. */
export function netnsSkip(): string | false {
  const why = netnsUnavailableReason();
  return why === null ? false : `network namespaces unavailable: ${why}`;
}

/** A server the sandbox can run: tries to write into its (read-only) directory, then serves on $PORT. */
export const SERVER_CJS = `
const fs = require('fs');
const http = require('http');
try { fs.writeFileSync('written.txt', 'x'); console.log('write: ok'); }
catch (e) { console.log('write: ' + e.code); }
const port = Number(process.env.PORT);
http.createServer((req, res) => {
  res.end('hello port=' + port + ' uid=' + process.getuid() + ' home=' + process.env.HOME + '\\n');
}).listen(port, () => console.log('listening on ' + port));
process.on('SIGTERM', () => { console.log('got SIGTERM'); process.exit(0); });
`;

/** Creates a world-readable temporary directory holding `files`; returns its path. */
export async function makeDir(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'eph-proc-test-'));
  // mkdtemp makes 0700 dirs; the sandbox user (65534) must be able to read them.
  await chmod(dir, 0o755);
  for (const [name, body] of Object.entries(files)) await writeFile(join(dir, name), body);
  return dir;
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

export function procfileSpec(hostname: string, imageDir: string, entry: string, logDir: string, extra: Partial<LaunchSpec> = {}): LaunchSpec {
  return {
    hostname,
    imageDir,
    kind: 'procfile',
    entry,
    pharoVm: 'pharo',
    env: {},
    logFile: join(logDir, `${hostname}.log`),
    maxLogBytes: 1 << 20,
    ...extra,
  };
}

/** GET http://addr/path; resolves with status and body. */
export function httpGet(addr: HostPort, path = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: addr.host, port: addr.port, path, timeout: 3000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** Polls `check` every 25 ms until it returns true; throws after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Pids of live processes whose command line contains `needle` (and whose program, argv[0], matches `program`). */
export async function pidsWithArg(needle: string, program?: RegExp): Promise<number[]> {
  const out: number[] = [];
  for (const name of await readdir('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmdline.includes(needle) && (!program || program.test(cmdline.split('\0')[0]!))) out.push(pid);
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

export async function readLog(path: string): Promise<string> {
  return readFile(path, 'utf8').catch(() => '');
}
