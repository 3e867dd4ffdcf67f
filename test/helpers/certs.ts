import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A PEM certificate, its key, and the CA that signed it. */
export interface Issued {
  cert: string;
  key: string;
  /** PEM of the issuing CA (clients trust it with `ca`). */
  ca: string;
}

export interface TestCa {
  ca: string;
  /** A leaf for `names` (DNS SANs; CN is the first), valid from now for `days`. */
  issue(names: string[], opts?: { days?: number }): Promise<Issued>;
  close(): Promise<void>;
}

function openssl(args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, timeout: 20_000 }, (err, _out, stderr) => (err ? reject(new Error(`openssl ${args[0]}: ${stderr || err.message}`)) : resolve()));
  });
}

/**
 * A throw-away certificate authority made with the real `openssl` command,
 * as a user would make their certificates; EC P-256 keys to keep it fast.
 */
export async function makeTestCa(name = 'Eph Test CA'): Promise<TestCa> {
  const dir = await mkdtemp(join(tmpdir(), 'eph-ca-'));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '30', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  const ca = await readFile(join(dir, 'ca.pem'), 'utf8');
  let n = 0;
  // Issues run one after another: callers often start several at once (Promise.all).
  let queue: Promise<unknown> = Promise.resolve();
  async function issueOne(id: string, names: string[], days: number): Promise<Issued> {
    await openssl(['req', ...ec, '-keyout', `${id}.key`, '-out', `${id}.csr`, '-subj', `/CN=${names[0]}`], dir);
    await writeFile(join(dir, `${id}.ext`), `subjectAltName=${names.map((d) => `DNS:${d}`).join(',')}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
    // Each leaf gets its own random serial: -CAcreateserial shares one ca.srl, which
    // concurrent openssl runs read and rewrite at once (a test failed on it).
    const serial = `0x${randomBytes(16).toString('hex').replace(/^[89a-f]/, '7')}`;
    await openssl(['x509', '-req', '-in', `${id}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', serial, '-out', `${id}.pem`, '-days', String(days), '-extfile', `${id}.ext`], dir);
    return { cert: await readFile(join(dir, `${id}.pem`), 'utf8'), key: await readFile(join(dir, `${id}.key`), 'utf8'), ca };
  }
  return {
    ca,
    issue(names, opts = {}) {
      const p = queue.then(() => issueOne(`leaf${n++}`, names, opts.days ?? 30));
      queue = p.catch(() => undefined);
      return p;
    },
    close: () => rm(dir, { recursive: true, force: true }),
  };
}
