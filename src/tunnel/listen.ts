import type { Server } from 'node:net';
import type { HostPort } from '../core/config.ts';
import { EphError } from '../core/errors.ts';

/**
 * Listens, or fails with a message a user can act on ("tunnel: cannot listen
 * on 127.0.0.1:5432: address already in use" when a local PostgreSQL holds
 * the port) instead of a bare EADDRINUSE.
 */
export function listenOrExplain(server: Server, at: HostPort, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const failed = (err: NodeJS.ErrnoException): void => {
      const why =
        err.code === 'EADDRINUSE' ? 'address already in use'
        : err.code === 'EACCES' ? 'permission denied'
        : err.code === 'EADDRNOTAVAIL' ? 'no such local address'
        : err.message;
      reject(new EphError('UNAVAILABLE', `${what}: cannot listen on ${at.host}:${at.port}: ${why}`, { cause: err }));
    };
    server.once('error', failed);
    server.listen(at.port, at.host, () => {
      server.off('error', failed);
      resolve();
    });
  });
}
