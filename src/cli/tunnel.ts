import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { parseHostPort, type HostPort } from '../core/config.ts';
import { isEphError } from '../core/errors.ts';
import { choosePskIdentity, parsePskFile } from '../tunnel/psk-file.ts';
import { defaultLocalPort, type ApplianceView } from './appliance-view.ts';
import { CliError, UsageError } from './cli-error.ts';
import { apiJson, closeClient } from './client.ts';
import { clientAction, clientCommand } from './command-kit.ts';
import { printLine } from './output.ts';

interface TunnelFlags {
  local?: string;
  psk: string;
  identity?: string;
}

function hostPort(flag: string, raw: string, err: (m: string) => Error): HostPort {
  try {
    return parseHostPort(flag, raw);
  } catch (e) {
    throw err(isEphError(e) ? e.message : String(e));
  }
}

/**
 * `eph tunnel NAME [--local HOST:PORT] [--psk psk.txt]`: what a stunnel
 * client would do, in Node. Listens in clear text on the local address
 * (default 127.0.0.1 and the service's standard port) and carries each
 * connection over TLS-PSK to the appliance's public endpoint, until Ctrl-C.
 *
 * @example eph tunnel mydb --local 127.0.0.1:5432 --psk psk.txt
 */
export function tunnelCommand(program: Command): void {
  const cmd = clientCommand(program, 'tunnel <name>', "open a local tunnel to an appliance's TLS-PSK endpoint (like stunnel)")
    .option('--local <host:port>', 'where local clients connect (default 127.0.0.1 and the service port, e.g. 5432)')
    .option('--psk <file>', 'psk.txt with IDENTITY:KEY lines', 'psk.txt')
    .option('--identity <id>', 'which identity of psk.txt to use (default the first)');
  clientAction<TunnelFlags>(cmd, async (ctx, name) => {
    const local = ctx.opts.local === undefined ? undefined : hostPort('--local', ctx.opts.local, (m) => new UsageError(m));
    const text = await readFile(ctx.opts.psk, 'utf8').catch((e: NodeJS.ErrnoException) => {
      throw new CliError(`${ctx.opts.psk}: ${e.code === 'ENOENT' ? 'no such file (upload one with `eph appliance psk NAME psk.txt`, keep a copy here)' : e.message}`);
    });
    let identity: string;
    let key: string;
    try {
      ({ identity, key } = choosePskIdentity(parsePskFile(text), ctx.opts.identity));
    } catch (e) {
      throw new CliError(isEphError(e) ? e.message : String(e));
    }
    const a = await apiJson<ApplianceView>(ctx.settings, `/v1/appliances/${encodeURIComponent(name!)}`);
    if (!a.public) throw new CliError(`${name} has no public TLS-PSK endpoint`);
    const remote = hostPort('public', a.public, (m) => new CliError(`${name}: the API gave an unusable endpoint: ${m}`));
    const listen = local ?? { host: '127.0.0.1', port: defaultLocalPort(a) };
    await closeClient();

    const { startPskClient } = await import('../tunnel/psk-client.ts');
    const tunnel = await startPskClient({
      local: listen,
      remote,
      identity,
      key,
      onError: (e) => process.stderr.write(`eph: tunnel ${name}: ${e.message}\n`),
    }).catch((e: NodeJS.ErrnoException) => {
      const why = e.code === 'EADDRINUSE' ? 'address in use (choose another with --local HOST:PORT)' : e.code === 'EACCES' ? 'permission denied' : e.message;
      throw new CliError(`cannot listen on ${listen.host}:${listen.port}: ${why}`);
    });
    const addr = `${tunnel.address.host}:${tunnel.address.port}`;
    const url = a.url ? withPort(a.url, tunnel.address) : null;
    // One line: whoever reads it (a script) learns the address while the tunnel runs on.
    if (ctx.json) printLine(JSON.stringify({ name: a.name, kind: a.kind, local: addr, remote: a.public, identity, url }));
    else {
      printLine(`tunnel ${a.name}: ${addr} → ${a.public} (identity ${identity}); Ctrl-C to stop`);
      if (url) printLine(url);
    }
    await new Promise<void>((resolve) => {
      const stop = () => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolve();
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    await tunnel.close();
  });
}

/** The appliance's client URL, pointed at the port the tunnel actually opened. */
function withPort(raw: string, at: HostPort): string {
  try {
    const u = new URL(raw);
    if (!u.port && !u.host) return raw;
    u.hostname = at.host.includes(':') ? `[${at.host}]` : at.host;
    u.port = String(at.port);
    return u.toString();
  } catch {
    return raw;
  }
}
