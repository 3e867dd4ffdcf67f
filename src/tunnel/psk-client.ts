import { createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { ConnectionOptions } from 'node:tls';
import type { HostPort } from '../core/config.ts';
import { describeHandshakeFailure } from './handshake-failure.ts';
import { listenOrExplain } from './listen.ts';
import { pskKeyBytes } from './psk-file.ts';
import { splice } from './splice.ts';
import { HANDSHAKE_TIMEOUT_MS, PSK_CIPHERS } from './tls-psk-options.ts';

export interface PskClientOptions {
  /** Where clear-text clients (psql, redis-cli…) connect; port 0 picks a free port. */
  local: HostPort;
  /** The TLS-PSK endpoint (ours or a stunnel server). */
  remote: HostPort;
  identity: string;
  /** As written in psk.txt (hex or ASCII, see pskKeyBytes). */
  key: string;
  /** Cap the TLS version, for a server that mishandles TLS 1.3. */
  maxVersion?: 'TLSv1.2' | 'TLSv1.3';
  /** A tunnelled connection that could not be opened (refused, wrong key, unreachable). */
  onError?: (err: Error) => void;
}

export interface PskClient {
  readonly address: HostPort;
  /** Stops listening and cuts every live connection. */
  close(): Promise<void>;
  /** Live tunnelled connections. */
  connections(): number;
}

/**
 * The client half of a tunnel, what `eph tunnel NAME --local 127.0.0.1:5432`
 * runs and what a stunnel `client = yes` service does: listens in clear text
 * on `local` and carries each connection over TLS-PSK to `remote`. When the
 * handshake is refused, the local connection is closed.
 *
 * @example
 * const { identity, key } = choosePskIdentity(parsePskFile(readFileSync('psk.txt', 'utf8')));
 * const tunnel = await startPskClient({
 *   local: { host: '127.0.0.1', port: 5432 },
 *   remote: { host: 'db.example.org', port: 40123 },
 *   identity, key,
 * });
 */
export async function startPskClient(opts: PskClientOptions): Promise<PskClient> {
  const psk = pskKeyBytes(opts.key);
  const live = new Set<Socket>();

  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (local: Socket) => {
    live.add(local);
    // allowHalfOpen is honoured by tls.connect but missing from its typings.
    const options: ConnectionOptions & { allowHalfOpen: boolean } = {
      host: opts.remote.host,
      port: opts.remote.port,
      allowHalfOpen: true,
      ciphers: PSK_CIPHERS,
      minVersion: 'TLSv1.2',
      maxVersion: opts.maxVersion ?? 'TLSv1.3',
      // No certificate exists in PSK mode; the PSK itself authenticates the server.
      checkServerIdentity: () => undefined,
      pskCallback: () => ({ psk, identity: opts.identity }),
    };
    const remote = tlsConnect(options);
    const timer = setTimeout(onHandshakeTimeout, HANDSHAKE_TIMEOUT_MS, remote);
    const refused = (err: Error): void => {
      clearTimeout(timer);
      const where = `${opts.remote.host}:${opts.remote.port}`;
      opts.onError?.(new Error(`TLS-PSK handshake with ${where} as "${opts.identity}" failed: ${describeHandshakeFailure(err)}`, { cause: err }));
      local.destroy();
      live.delete(local);
    };
    // The local client may give up while the handshake is still running.
    const abandoned = (): void => {
      clearTimeout(timer);
      remote.destroy();
      live.delete(local);
    };
    remote.once('error', refused);
    local.once('close', abandoned);
    local.on('error', abandoned);
    remote.once('secureConnect', () => {
      clearTimeout(timer);
      remote.off('error', refused);
      local.off('close', abandoned);
      local.off('error', abandoned);
      splice(local, remote, () => live.delete(local));
      local.resume();
    });
  });

  await listenOrExplain(server, opts.local, 'tunnel');
  server.on('error', (err: Error) => opts.onError?.(err));
  const bound = server.address() as AddressInfo;

  return {
    address: { host: bound.address, port: bound.port },
    connections: () => live.size,
    close(): Promise<void> {
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const local of live) local.destroy();
      return done;
    },
  };
}

function onHandshakeTimeout(remote: Socket): void {
  remote.destroy(new Error('TLS-PSK handshake timed out'));
}
