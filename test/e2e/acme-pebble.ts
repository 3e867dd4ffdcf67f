/**
 * Debian's `pebble` (Let's Encrypt's ACME test server) and its
 * `pebble-challtestsrv` as the DNS server pebble resolves names with, both on
 * loopback with free ports, for tests of automatic HTTPS.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { freePort } from '../tunnel/fixtures.ts';

export const PEBBLE_BIN = '/usr/bin/pebble';
export const CHALLTESTSRV_BIN = '/usr/bin/pebble-challtestsrv';

/** Decided before the tests: false when both programs are installed, else the skip reason. */
export function pebbleMissing(): string | false {
  if (existsSync(PEBBLE_BIN) && existsSync(CHALLTESTSRV_BIN)) return false;
  return 'pebble missing (Debian package pebble: /usr/bin/pebble and /usr/bin/pebble-challtestsrv)';
}

export interface Pebble {
  /** The ACME directory URL. */
  directory: string;
  /** PEM file of the CA of pebble's own HTTPS (EPH_ACME_CA_FILE). */
  caFile: string;
  /** PEM of the root that issues pebble's certificates (its management interface's /roots/0). */
  root(): Promise<string>;
  /** Makes pebble resolve `host` to `ip` (its validation of HTTP-01 then goes there). */
  setA(host: string, ip: string): Promise<void>;
  /** Back to the default answer (127.0.0.1). */
  clearA(host: string): Promise<void>;
  /** What both servers printed, for a failing test's message. */
  logs(): string;
  close(): Promise<void>;
}

function openssl(args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, timeout: 20_000 }, (err, _out, stderr) => (err ? reject(new Error(`openssl: ${stderr || err.message}`)) : resolve()));
  });
}

/** Spawns `bin`, resolving once `ready` appears in its output; rejects if it exits first or after 30 s. */
function startUntil(bin: string, args: string[], env: NodeJS.ProcessEnv, ready: string, out: string[], cwd: string): Promise<ChildProcess> {
  const child = spawn(bin, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${bin} did not print '${ready}' within 30 s:\n${seen}`));
    }, 30_000);
    const onData = (c: Buffer) => {
      const s = c.toString('utf8');
      seen += s;
      out.push(s);
      if (seen.includes(ready)) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${bin} exited (${code}) before it was ready:\n${seen}`));
    });
  });
}

function stop(child: ChildProcess | null): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

/**
 * Starts challtestsrv (DNS answering 127.0.0.1 for every name, no AAAA) and
 * pebble validating HTTP-01 on `httpPort` of the address a name resolves to.
 * Certificates live `validitySeconds`; authorizations are never reused, so
 * that every order is validated again.
 */
export async function startPebble(opts: { httpPort: number; validitySeconds: number }): Promise<Pebble> {
  const dir = await mkdtemp(join(tmpdir(), `eph-pebble-${process.pid}-`));
  const out: string[] = [];
  let pebble: ChildProcess | null = null;
  let chall: ChildProcess | null = null;
  try {
    await openssl(
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'key.pem', '-out', 'cert.pem', '-days', '2',
        '-subj', '/CN=pebble test', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
      dir,
    );
    const caFile = join(dir, 'cert.pem');
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', PEBBLE_VA_NOSLEEP: '1', PEBBLE_VA_ALWAYS_VALID: '0', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' };
    // Ports picked free a moment before: a program that lost one to another process is started again on new ones.
    for (let attempt = 1; ; attempt++) {
      const [dnsPort, challMgmt, listen, mgmt, tlsPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
      try {
        chall = await startUntil(
          CHALLTESTSRV_BIN,
          ['-defaultIPv4', '127.0.0.1', '-defaultIPv6', '', '-dns01', `127.0.0.1:${dnsPort}`, '-http01', '', '-https01', '', '-tlsalpn01', '', '-management', `127.0.0.1:${challMgmt}`],
          env,
          'Starting management server',
          out,
          dir,
        );
        await writeFile(
          join(dir, 'pebble.json'),
          JSON.stringify({
            pebble: {
              listenAddress: `127.0.0.1:${listen}`,
              managementListenAddress: `127.0.0.1:${mgmt}`,
              certificate: join(dir, 'cert.pem'),
              privateKey: join(dir, 'key.pem'),
              httpPort: opts.httpPort,
              tlsPort,
              ocspResponderURL: '',
              externalAccountBindingRequired: false,
              certificateValidityPeriod: opts.validitySeconds,
            },
          }),
        );
        pebble = await startUntil(PEBBLE_BIN, ['-config', join(dir, 'pebble.json'), '-dnsserver', `127.0.0.1:${dnsPort}`], env, 'ACME directory available at', out, dir);
        const challtest = `http://127.0.0.1:${challMgmt}`;
        const ca = await readFile(caFile, 'utf8');
        const post = async (path: string, body: unknown) => {
          const r = await request(`${challtest}${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
          await r.body.text();
          if (r.statusCode !== 200) throw new Error(`challtestsrv ${path}: ${r.statusCode}`);
        };
        const p = pebble;
        const c = chall;
        return {
          directory: `https://127.0.0.1:${listen}/dir`,
          caFile,
          root: () =>
            new Promise((resolve, reject) => {
              const req = httpsRequest({ host: '127.0.0.1', port: mgmt, path: '/roots/0', ca, agent: false }, (res) => {
                let body = '';
                res.setEncoding('utf8');
                res.on('data', (d: string) => (body += d));
                res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`pebble /roots/0: ${res.statusCode}`))));
              });
              req.setTimeout(20_000, () => req.destroy(new Error('pebble /roots/0 timed out')));
              req.on('error', reject);
              req.end();
            }),
          setA: (host, ip) => post('/add-a', { host, addresses: [ip] }),
          clearA: (host) => post('/clear-a', { host }),
          logs: () => out.join(''),
          async close() {
            await Promise.all([stop(p), stop(c)]);
            await rm(dir, { recursive: true, force: true });
          },
        };
      } catch (e) {
        await Promise.all([stop(pebble), stop(chall)]);
        pebble = null;
        chall = null;
        if (attempt >= 3) throw e;
      }
    }
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}
