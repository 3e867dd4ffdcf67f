/**
 * Test fixtures for the route service: real HTTP servers as instance
 * upstreams, and a stand-in for the instance service (which owns the real
 * GateBackend) that maps hostnames to those servers.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { HostPort } from '../../src/core/config.ts';
import { EphError } from '../../src/core/errors.ts';
import type { GateBackend } from '../../src/gate/backend.ts';
import type { InstanceOwners } from '../../src/gate/route-service.ts';

export interface Upstream {
  address: HostPort;
  /** Requests seen, as `HOST PATH`. */
  seen: string[];
  close(): Promise<void>;
}

/** A real HTTP server on 127.0.0.1:0. `handler` undefined: accepts and never answers. */
export async function startUpstream(handler?: (req: IncomingMessage, res: ServerResponse) => void): Promise<Upstream> {
  const seen: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    seen.push(`${req.headers.host ?? ''} ${req.url ?? ''}`);
    if (handler) handler(req, res);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    address: { host: '127.0.0.1', port },
    seen,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** Answers `body` with 200 on every path. */
export const answering = (body: string) => (_req: IncomingMessage, res: ServerResponse): void => {
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
  res.end(body);
};

/** Answers 500 on every path. */
export const broken = (_req: IncomingMessage, res: ServerResponse): void => {
  res.writeHead(500, { 'content-length': '6' });
  res.end('broken');
};

/**
 * Stand-in for the instance service (not available to gate unit tests):
 * hostnames map to real upstream servers; wake can be made to fail or hang.
 */
export class TestInstances implements GateBackend, InstanceOwners {
  readonly #owners = new Map<string, string>();
  readonly #upstreams = new Map<string, HostPort>();
  readonly #wakeFailures = new Map<string, EphError | 'hang'>();
  readonly wakes: string[] = [];
  readonly touched: string[] = [];

  add(hostname: string, userId: string, upstream: HostPort): void {
    this.#owners.set(hostname, userId);
    this.#upstreams.set(hostname, upstream);
  }

  remove(hostname: string): void {
    this.#owners.delete(hostname);
    this.#upstreams.delete(hostname);
  }

  failWake(hostname: string, how: EphError | 'hang'): void {
    this.#wakeFailures.set(hostname, how);
  }

  async ownerOf(hostname: string): Promise<string | null> {
    return this.#owners.get(hostname) ?? null;
  }

  upstream(hostname: string): HostPort | null {
    return this.#upstreams.get(hostname) ?? null;
  }

  wake(hostname: string): Promise<HostPort> {
    this.wakes.push(hostname);
    const failure = this.#wakeFailures.get(hostname);
    if (failure === 'hang') return new Promise<HostPort>(() => {});
    if (failure) return Promise.reject(failure);
    const u = this.#upstreams.get(hostname);
    return u ? Promise.resolve(u) : Promise.reject(new EphError('NOT_FOUND', `instance ${hostname} not found`));
  }

  touch(hostname: string): void {
    this.touched.push(hostname);
  }
}
