import { constants } from 'node:crypto';
import { connect as tcpConnect } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { createServer } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import type { HostPort } from '../core/config.ts';
import { describeHandshakeFailure } from './handshake-failure.ts';
import { listenOrExplain } from './listen.ts';
import { pskKeyBytes } from './psk-file.ts';
import { splice } from './splice.ts';
import { HANDSHAKE_TIMEOUT_MS, PSK_CIPHERS } from './tls-psk-options.ts';

/** An authenticated connection, as reported to `onConnection`. */
export interface PskConnectionInfo {
  identity: string;
  /** e.g. `TLSv1.3`. */
  protocol: string;
  /** OpenSSL name of the negotiated suite, e.g. `TLS_AES_128_GCM_SHA256`. */
  cipher: string;
  remoteAddress: string;
  remotePort: number;
}

export interface PskEndpointOptions {
  /** Where the endpoint listens; port 0 picks a free port. */
  listen: HostPort;
  /** The clear-text service each authenticated connection is piped to. */
  target: HostPort;
  /**
   * Identity → key (as written in psk.txt). Called on every handshake, so a
   * rotated or revoked identity applies to the very next connection.
   */
  identities: () => ReadonlyMap<string, string>;
  onConnection?: (info: PskConnectionInfo) => void;
  /** A handshake that failed, e.g. `wrong key (binder does not verify)`, `unknown identity…`, `not a TLS client…`. */
  onRefused?: (reason: string, remoteAddress: string | undefined) => void;
  /** Default 10 s. */
  handshakeTimeoutMs?: number;
  /** The target refused or failed, accept failed, or `identities` threw. */
  onError?: (err: Error) => void;
}

export interface PskEndpoint {
  /** The address actually bound (the real port when 0 was asked). */
  readonly address: HostPort;
  /** Stops listening and cuts every live connection. */
  close(): Promise<void>;
  /** Live tunnelled connections. */
  connections(): number;
  /** Cuts the live connections of one identity (after a revocation); returns how many. */
  disconnect(identity: string): number;
}

/**
 * A TLS-PSK endpoint that stunnel clients (and {@link startPskClient}) talk
 * to: PSK only, no certificate, TLS 1.2 and 1.3. Each authenticated
 * connection is piped to `target`; a handshake with an unknown identity or a
 * wrong key fails, and a peer that does not speak TLS is closed without a
 * byte reaching the target.
 *
 * @example
 * const ep = await startPskEndpoint({
 *   listen: { host: '0.0.0.0', port: 0 },
 *   target: { host: '127.0.0.1', port: 5432 },
 *   identities: () => store.pskOf('mydb'),
 * });
 * console.log(ep.address.port);
 */
export async function startPskEndpoint(opts: PskEndpointOptions): Promise<PskEndpoint> {
  const identityOf = new WeakMap<TLSSocket, string>();
  const live = new Map<TLSSocket, string>();
  // Every accepted TCP socket, handshaking or not, so close() does not wait
  // for half-finished handshakes to time out.
  const raw = new Set<Socket>();

  const server = createServer({
    ciphers: PSK_CIPHERS,
    minVersion: 'TLSv1.2',
    allowHalfOpen: true,
    handshakeTimeout: opts.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
    // A resumed session skips pskCallback: a client holding a ticket would
    // keep getting in after its identity was revoked. No tickets, and Node
    // keeps no server-side session cache, so every connection is a full
    // PSK handshake checked against the current identities.
    secureOptions: constants.SSL_OP_NO_TICKET,
    pskCallback(socket: TLSSocket, identity: string): Buffer | null {
      let key: string | undefined;
      try {
        key = opts.identities().get(identity);
      } catch (err) {
        // Thrown out of a native callback, this would take the process down.
        opts.onError?.(err instanceof Error ? err : new Error(String(err)));
        return null;
      }
      if (key === undefined) return null;
      identityOf.set(socket, identity);
      return pskKeyBytes(key);
    },
  });

  server.on('connection', (socket: Socket) => {
    raw.add(socket);
    socket.once('close', () => raw.delete(socket));
  });

  server.on('secureConnection', (tls: TLSSocket) => {
    const identity = identityOf.get(tls) ?? '';
    const upstream = tcpConnect({ host: opts.target.host, port: opts.target.port, allowHalfOpen: true });
    upstream.once('error', (err: Error) => opts.onError?.(err));
    live.set(tls, identity);
    splice(tls, upstream, () => live.delete(tls));
    opts.onConnection?.({
      identity,
      protocol: tls.getProtocol() ?? '',
      cipher: tls.getCipher()?.name ?? '',
      remoteAddress: tls.remoteAddress ?? '',
      remotePort: tls.remotePort ?? 0,
    });
  });

  // Without a listener these are silent anyway; with one, the caller can log
  // refusals (they are what an operator looks for when a tunnel "hangs").
  server.on('tlsClientError', (err: Error, socket: TLSSocket) => {
    socket.destroy();
    opts.onRefused?.(describeHandshakeFailure(err), socket.remoteAddress);
  });

  await listenOrExplain(server, opts.listen, 'TLS-PSK endpoint');
  // Accept failures (EMFILE…) arrive here; unheard, they would crash the process.
  server.on('error', (err: Error) => opts.onError?.(err));
  const bound = server.address() as AddressInfo;

  return {
    address: { host: bound.address, port: bound.port },
    connections: () => live.size,
    disconnect(identity: string): number {
      let n = 0;
      for (const [tls, id] of live) {
        if (id !== identity) continue;
        tls.destroy();
        n++;
      }
      return n;
    },
    close(): Promise<void> {
      const done = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const tls of live.keys()) tls.destroy();
      for (const socket of raw) socket.destroy();
      return done;
    },
  };
}
