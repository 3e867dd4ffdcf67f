import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { apiJson } from './client.ts';
import { CliError, UsageError } from './cli-error.ts';
import { clientAction, clientCommand } from './command-kit.ts';
import { formatTable, printJson, printLine } from './output.ts';

/** As GET /v1/gate/certs shows a certificate. */
interface CertView {
  domain: string;
  source: 'uploaded' | 'acme';
  status: 'pending' | 'valid' | 'failed' | 'renewing';
  notAfter: number | null;
  expires: string | null;
  names: string[];
  issuer: string;
  active: boolean;
  lastError: string | null;
  nextAttempt: number | null;
}

const certPath = (domain: string): string => `/v1/gate/certs/${encodeURIComponent(domain)}`;

async function readPem(flag: string, file: string): Promise<string> {
  return readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new CliError(`${flag} ${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
  });
}

/** `in 89 days`, `expired 3 days ago`. */
function expiresText(notAfter: number, now = Date.now()): string {
  const days = Math.round((notAfter - now) / 86_400_000);
  if (notAfter <= now) return `expired ${-days} day${days === -1 ? '' : 's'} ago`;
  return `in ${days} day${days === 1 ? '' : 's'}`;
}

/**
 * `eph gate cert DOMAIN --cert FILE --key FILE` (or `--delete`) and `eph gate
 * certs`: the certificates the HTTPS gate serves by SNI.
 * @example eph gate cert www.example.org --cert fullchain.pem --key privkey.pem
 */
export function gateCertCommands(gate: Command): void {
  const cert = clientCommand(gate, 'cert <domain>', 'upload the certificate the HTTPS gate serves for DOMAIN (a domain you route, or *.parent)')
    .option('--cert <file>', 'PEM certificate chain, leaf first')
    .option('--key <file>', 'PEM private key (unencrypted)')
    .option('--acme', 'let the cloud obtain and renew the certificate (ACME); orders it now, or renews it now')
    .option('--delete', 'delete the certificate (and turn automatic HTTPS off): the gate serves its default one again');
  clientAction<{ cert?: string; key?: string; delete?: boolean; acme?: boolean }>(cert, async (ctx, domain) => {
    const { opts } = ctx;
    if (opts.acme) {
      if (opts.cert !== undefined || opts.key !== undefined || opts.delete) throw new UsageError('--acme takes no --cert, --key or --delete');
      const v = await apiJson<CertView>(ctx.settings, `${certPath(domain!)}/acme`, { method: 'POST' });
      if (ctx.json) return printJson(v);
      return printLine(`${v.domain}: automatic certificate ${v.status} (\`eph gate certs\` shows when it is issued, or why not)`);
    }
    if (opts.delete) {
      if (opts.cert !== undefined || opts.key !== undefined) throw new UsageError('--delete takes no --cert or --key');
      const res = await apiJson<{ deleted: string }>(ctx.settings, certPath(domain!), { method: 'DELETE' });
      if (ctx.json) return printJson(res);
      return printLine(`deleted the certificate of ${res.deleted}`);
    }
    if (opts.cert === undefined || opts.key === undefined) throw new UsageError('eph gate cert DOMAIN needs --cert FILE and --key FILE (or --acme, or --delete)');
    const [pemCert, pemKey] = await Promise.all([readPem('--cert', opts.cert), readPem('--key', opts.key)]);
    const v = await apiJson<CertView>(ctx.settings, certPath(domain!), { method: 'PUT', json: { cert: pemCert, key: pemKey } });
    if (ctx.json) return printJson(v);
    printLine(`${v.domain}: certificate for ${v.names.join(', ')}, expires ${(v.expires ?? '').slice(0, 10)} (${v.notAfter === null ? '-' : expiresText(v.notAfter)})`);
  });

  const certs = clientCommand(gate, 'certs', 'list your certificates (uploaded or automatic), their status and when they expire');
  clientAction(certs, async (ctx) => {
    const res = await apiJson<{ certs: CertView[] }>(ctx.settings, '/v1/gate/certs');
    if (ctx.json) return printJson(res);
    if (res.certs.length === 0) return printLine('no certificates: upload one with `eph gate cert DOMAIN --cert FILE --key FILE`, or `eph gate cert DOMAIN --acme`');
    printLine(
      formatTable(
        ['domain', 'source', 'status', 'expires', 'served'],
        res.certs.map((c) => [
          c.domain,
          c.source,
          c.status,
          c.notAfter === null || c.expires === null ? '-' : `${c.expires.slice(0, 10)} (${expiresText(c.notAfter)})`,
          c.active ? 'yes' : c.notAfter === null ? 'no (not issued yet)' : 'no (domain not yours now)',
        ]),
      ),
    );
    // Errors are long (the ACME server's words): one line each, under the table.
    for (const c of res.certs) {
      if (c.lastError !== null) {
        const retry = c.nextAttempt === null ? '' : ` (next attempt ${new Date(c.nextAttempt).toISOString()})`;
        printLine(`${c.domain}: ${c.lastError}${retry}`);
      }
    }
  });
}
