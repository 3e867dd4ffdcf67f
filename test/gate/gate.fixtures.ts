/**
 * Shared helpers for the gate's tests: real app servers on loopback, raw TCP
 * clients, and an in-memory GateBackend (the gate's one dependency, standing
 * in for the instance service, which is tested on its own).
 */
import { once } from 'node:events';
import http from 'node:http';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import type { HostPort } from '../../src/core/config.ts';
import type { GateBackend } from '../../src/gate/backend.ts';
import { createGate, type Gate, type GateOptions } from '../../src/gate/gate.ts';
import { RoutingTable } from '../../src/gate/routing-table.ts';

export const DOMAIN = 'eph.test';
export const H1 = `eph-00000001.${DOMAIN}`;
export const H2 = `eph-00000002.${DOMAIN}`;

/**
 * In-memory backend: instances are either running at an upstream or asleep;
 * `wakeWith` decides what a wake does. Counts wakes and touches.
 */
export class InMemoryBackend implements GateBackend {
  readonly running = new Map<string, HostPort>();
  readonly wakeCalls: string[] = [];
  readonly touches = new Map<string, number>();
  wakeWith: (hostname: string) => Promise<HostPort> = async (h) => {
    throw new Error(`no wake configured for ${h}`);
  };
  #pending = new Map<string, Promise<HostPort>>();

  upstream(hostname: string): HostPort | null {
    return this.running.get(hostname) ?? null;
  }

  wake(hostname: string): Promise<HostPort> {
    this.wakeCalls.push(hostname);
    let p = this.#pending.get(hostname);
    if (p === undefined) {
      p = this.wakeWith(hostname).then(
        (up) => {
          this.#pending.delete(hostname);
          this.running.set(hostname, up);
          return up;
        },
        (err: unknown) => {
          this.#pending.delete(hostname);
          throw err;
        },
      );
      this.#pending.set(hostname, p);
    }
    return p;
  }

  touch(hostname: string): void {
    this.touches.set(hostname, (this.touches.get(hostname) ?? 0) + 1);
  }
}

export interface App {
  server: http.Server;
  port: number;
  upstream: HostPort;
  /** Requests seen, in arrival order. */
  seen: Array<{ method: string; url: string; headers: http.IncomingHttpHeaders; bodyLength: number; socketPort: number }>;
  close(): Promise<void>;
}

/** A real HTTP app on loopback. The default handler answers `ok <method> <url> <body bytes>`. */
export async function startApp(handler?: http.RequestListener): Promise<App> {
  const seen: App['seen'] = [];
  const server = http.createServer(
    handler ??
      ((req, res) => {
        let n = 0;
        req.on('data', (c: Buffer) => (n += c.length));
        req.on('end', () => {
          seen.push({ method: req.method!, url: req.url!, headers: req.headers, bodyLength: n, socketPort: req.socket.remotePort! });
          res.setHeader('content-type', 'text/plain');
          res.end(`ok ${req.method} ${req.url} ${n}`);
        });
      }),
  );
  server.keepAliveTimeout = 30_000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    upstream: { host: '127.0.0.1', port },
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export interface TestGate {
  gate: Gate;
  table: RoutingTable;
  backend: InMemoryBackend;
  port: number;
}

/** A gate on port 0 with an in-memory backend and one route per instance hostname. */
export async function startGate(opts: Partial<GateOptions> = {}, hosts: string[] = [H1]): Promise<TestGate> {
  const table = opts.table ?? new RoutingTable();
  for (const h of hosts) table.set(h, [{ hostname: h, weight: 1 }]);
  const backend = (opts.backend as InMemoryBackend | undefined) ?? new InMemoryBackend();
  const gate = createGate({ wakeHtmlAfterMs: 0, ...opts, table, backend });
  const addr = await gate.listen('127.0.0.1', 0);
  return { gate, table, backend, port: addr.port };
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request through a fresh connection, with any Host header (fetch would not allow it). */
export function request(
  port: number,
  opts: { host?: string; method?: string; path?: string; headers?: http.OutgoingHttpHeaders; body?: string | Buffer; agent?: http.Agent },
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: opts.method ?? 'GET',
        path: opts.path ?? '/',
        headers: { host: opts.host ?? H1, ...opts.headers },
        agent: opts.agent ?? false,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(parts).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('request timed out')));
    req.end(opts.body);
  });
}

/** A raw TCP client: sends bytes, reads everything until the server closes (or the deadline). */
export async function rawExchange(port: number, data: string | Buffer, deadlineMs = 5000): Promise<string> {
  const sock = connect({ host: '127.0.0.1', port });
  await once(sock, 'connect');
  sock.write(data);
  return readAll(sock, deadlineMs);
}

export function readAll(sock: Socket, deadlineMs = 5000): Promise<string> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(`${Buffer.concat(parts).toString('latin1')}\n<<deadline: connection still open>>`);
    }, deadlineMs);
    sock.on('data', (c: Buffer) => parts.push(c));
    sock.on('error', () => {});
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(parts).toString('latin1'));
    });
  });
}

/** Reads from a raw socket until `done(text)` holds, without closing it. */
export function readUntil(sock: Socket, done: (text: string) => boolean, deadlineMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (c: Buffer): void => {
      text += c.toString('latin1');
      if (done(text)) finish();
    };
    const onClose = (): void => {
      finish();
    };
    const timer = setTimeout(() => {
      sock.off('data', onData);
      sock.off('close', onClose);
      reject(new Error(`deadline: got ${JSON.stringify(text)}`));
    }, deadlineMs);
    function finish(): void {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('close', onClose);
      resolve(text);
    }
    sock.on('data', onData);
    sock.on('close', onClose);
  });
}

/** Polls `cond` until it holds or the deadline passes. */
export async function until(cond: () => boolean, deadlineMs = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`deadline: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Counts complete responses (status lines) in raw text. */
export function statusLines(text: string): number[] {
  return [...text.matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]));
}

/**
 * A raw TCP "app" that records every byte the gate sends it, so that tests can
 * assert on what was forwarded without an HTTP parser in between (a Node app's
 * own parser would hide what a lenient app behind the gate would see). Each
 * time the bytes received on a connection contain one more empty line (the end
 * of a head), it writes `reply` (when set).
 */
export interface RawUpstream {
  upstream: HostPort;
  /** Every byte received, all connections in order of arrival. */
  bytes(): Buffer;
  /** Connections accepted so far. */
  connections(): number;
  /** What to answer after each request head (a function writes it itself); null: answer nothing. */
  reply: RawReply;
  close(): Promise<void>;
}

export type RawReply = string | Buffer | null | ((s: Socket) => void);

export async function startRawUpstream(reply: RawReply = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'): Promise<RawUpstream> {
  const parts: Buffer[] = [];
  const socks = new Set<Socket>();
  let accepted = 0;
  const server = createServer((s) => {
    accepted++;
    socks.add(s);
    let mine = '';
    let answered = 0;
    s.on('data', (c: Buffer) => {
      parts.push(c);
      mine += c.toString('latin1');
      const heads = mine.split('\r\n\r\n').length - 1;
      while (answered < heads) {
        answered++;
        const r = ru.reply;
        if (typeof r === 'function') r(s);
        else if (r !== null) s.write(r);
      }
    });
    s.on('error', () => {});
    s.on('close', () => socks.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const ru: RawUpstream = {
    upstream: { host: '127.0.0.1', port },
    bytes: () => Buffer.concat(parts),
    connections: () => accepted,
    reply,
    close: () =>
      new Promise<void>((r) => {
        for (const s of socks) s.destroy();
        server.close(() => r());
      }),
  };
  return ru;
}
