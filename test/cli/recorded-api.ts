/**
 * A small node:http server that answers in the documented shapes of the /v1
 * API (src/api/v1-routes.ts, the appliance routes of issue 5): for CLI tests
 * of parts the real cloud does not serve yet, and for failures the real one
 * cannot be made to produce on demand. Records every request it gets.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';

export const USER = 'u-recorded';
export const TOKEN = 'recorded-token-0123456789';

export interface RecordedRequest {
  method: string;
  /** Path and query. */
  url: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

/** Answer of a handler: JSON (`json`), text, or a custom writer. */
export type Answer =
  | { status?: number; json: unknown }
  | { status?: number; text: string; type?: string }
  | { write: (res: ServerResponse) => void };

export type Handler = (req: RecordedRequest) => Answer | Promise<Answer>;

export interface RecordedApi {
  url: string;
  env: Record<string, string>;
  requests: RecordedRequest[];
  /** Sets the answer for `METHOD /path` (path without query). */
  on(route: string, handler: Handler): void;
  /**
   * Sees each request before its body is read (how a server refuses early);
   * answering true means it dealt with the request itself.
   */
  onHeaders(hook: (req: IncomingMessage, res: ServerResponse) => boolean): void;
}

/** Starts the server on a free loopback port; it closes when the test ends. */
export async function startRecordedApi(t: Pick<TestContext, 'after'>): Promise<RecordedApi> {
  const handlers = new Map<string, Handler>();
  let early: ((req: IncomingMessage, res: ServerResponse) => boolean) | null = null;
  const requests: RecordedRequest[] = [];
  const open = new Set<ServerResponse>();
  const server = createServer(async (req, res) => {
    open.add(res);
    res.on('close', () => open.delete(res));
    if (early?.(req, res)) return;
    const chunks: Buffer[] = [];
    for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
    const rec: RecordedRequest = { method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, body: Buffer.concat(chunks) };
    requests.push(rec);
    const expected = `Basic ${Buffer.from(`${USER}:${TOKEN}`).toString('base64')}`;
    if (req.headers.authorization !== expected) {
      return send(res, { status: 401, json: { error: { code: 'UNAUTHORIZED', message: 'unknown user or wrong token' } } });
    }
    const path = rec.url.split('?')[0]!;
    const handler = handlers.get(`${rec.method} ${path}`);
    if (!handler) return send(res, { status: 404, json: { error: { code: 'NOT_FOUND', message: `${rec.method} ${path} not found` } } });
    send(res, await handler(rec));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  t.after(
    () =>
      new Promise<void>((r) => {
        for (const res of open) res.destroy();
        server.close(() => r());
        server.closeAllConnections();
      }),
  );
  return {
    url,
    env: { EPH_URL: url, EPH_USER: USER, EPH_TOKEN: TOKEN },
    requests,
    on: (route, handler) => void handlers.set(route, handler),
    onHeaders: (hook) => void (early = hook),
  };
}

function send(res: ServerResponse, a: Answer): void {
  if ('write' in a) return a.write(res);
  if ('json' in a) {
    res.writeHead(a.status ?? 200, { 'content-type': 'application/json; charset=utf-8' });
    res.end(JSON.stringify(a.json));
    return;
  }
  res.writeHead(a.status ?? 200, { 'content-type': a.type ?? 'text/plain; charset=utf-8' });
  res.end(a.text);
}
