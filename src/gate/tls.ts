import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import { EphError } from '../core/errors.ts';

/** A PEM certificate chain and its private key. */
export interface CertPair {
  cert: string | Buffer;
  key: string | Buffer;
}

/** HTTPS settings of the gate. */
export interface GateTlsOptions {
  /** Served when the client sends no SNI name or `sni` knows none for it. */
  defaultCert: CertPair;
  /** Certificate for an SNI server name (already lower-cased), or null for the default. */
  sni: (servername: string) => SecureContext | null;
}

/** Options for `tls.createServer` that pick the certificate by SNI. */
export function tlsServerOptions(opts: GateTlsOptions): {
  cert: string | Buffer;
  key: string | Buffer;
  SNICallback: (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void;
} {
  const fallback = createSecureContext({ cert: opts.defaultCert.cert, key: opts.defaultCert.key });
  return {
    cert: opts.defaultCert.cert,
    key: opts.defaultCert.key,
    // No allowHalfOpen here: a TLS server with it keeps sockets whose peer left (no 'end'), and TLS closes whole anyway.
    SNICallback: (servername, cb) => {
      let ctx: SecureContext | null = null;
      try {
        ctx = opts.sni(servername.toLowerCase());
      } catch {
        ctx = null;
      }
      cb(null, ctx ?? fallback);
    },
  };
}

/**
 * A self-signed certificate for `*.<domain>` and `<domain>` (for development:
 * no CA, no internet). Made with the `openssl` command, which Node's crypto
 * module cannot replace: it has no X.509 writer.
 *
 * @example
 * const cert = await selfSignedCert('eph.localhost');
 * const gate = createGate({ table, backend, tls: { defaultCert: cert, sni: () => null } });
 */
export async function selfSignedCert(domain: string, days = 825): Promise<{ cert: string; key: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'eph-cert-'));
  try {
    const keyFile = join(dir, 'key.pem');
    const certFile = join(dir, 'cert.pem');
    await new Promise<void>((resolve, reject) => {
      execFile(
        'openssl',
        [
          'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
          '-keyout', keyFile, '-out', certFile, '-days', String(days),
          '-subj', `/CN=*.${domain}`,
          '-addext', `subjectAltName=DNS:*.${domain},DNS:${domain}`,
        ],
        { timeout: 20_000 },
        (err) => {
          if (!err) return resolve();
          const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
          reject(
            missing
              ? new EphError('DEPENDENCY_MISSING', 'openssl is needed to make the development certificate', { cause: err })
              : new EphError('INTERNAL', `openssl could not make a certificate: ${err.message}`, { cause: err }),
          );
        },
      );
    });
    return { cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8') };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
