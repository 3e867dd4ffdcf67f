import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { apiJson } from './client.ts';
import { CliError, UsageError } from './cli-error.ts';
import { clientAction, clientCommand } from './command-kit.ts';
import { formatTable, printJson, printLine } from './output.ts';

/** As GET /v1/gate/certs shows a certificate. */
interface CertView {
  domain: string;
  notAfter: number;
  expires: string;
  names: string[];
  issuer: string;
  active: boolean;
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
    .option('--delete', 'delete the uploaded certificate: the gate serves its default one again');
  clientAction<{ cert?: string; key?: string; delete?: boolean }>(cert, async (ctx, domain) => {
    const { opts } = ctx;
    if (opts.delete) {
      if (opts.cert !== undefined || opts.key !== undefined) throw new UsageError('--delete takes no --cert or --key');
      const res = await apiJson<{ deleted: string }>(ctx.settings, certPath(domain!), { method: 'DELETE' });
      if (ctx.json) return printJson(res);
      return printLine(`deleted the certificate of ${res.deleted}`);
    }
    if (opts.cert === undefined || opts.key === undefined) throw new UsageError('eph gate cert DOMAIN needs --cert FILE and --key FILE (or --delete)');
    const [pemCert, pemKey] = await Promise.all([readPem('--cert', opts.cert), readPem('--key', opts.key)]);
    const v = await apiJson<CertView>(ctx.settings, certPath(domain!), { method: 'PUT', json: { cert: pemCert, key: pemKey } });
    if (ctx.json) return printJson(v);
    printLine(`${v.domain}: certificate for ${v.names.join(', ')}, expires ${v.expires.slice(0, 10)} (${expiresText(v.notAfter)})`);
  });

  const certs = clientCommand(gate, 'certs', 'list your uploaded certificates and when they expire');
  clientAction(certs, async (ctx) => {
    const res = await apiJson<{ certs: CertView[] }>(ctx.settings, '/v1/gate/certs');
    if (ctx.json) return printJson(res);
    if (res.certs.length === 0) return printLine('no certificates: upload one with `eph gate cert DOMAIN --cert FILE --key FILE`');
    printLine(
      formatTable(
        ['domain', 'names', 'expires', 'served'],
        res.certs.map((c) => [c.domain, c.names.join(','), `${c.expires.slice(0, 10)} (${expiresText(c.notAfter)})`, c.active ? 'yes' : 'no (domain not yours now)']),
      ),
    );
  });
}
