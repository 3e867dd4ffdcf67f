import type { Agent as HttpAgent, ClientRequest, IncomingHttpHeaders, IncomingMessage, RequestOptions } from 'node:http';
import type { Readable } from 'node:stream';

/**
 * The CLI's HTTP client, on node:http. Not undici: loading undici cost about 80 ms of every `eph`
 * command's start (bench/cli-startup.ts), more than the rest of the CLI together.
 */
export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'OPTIONS';

/** A response body not yet read: a stream, with the three readers the commands use. */
export interface ResponseBody extends Readable {
  text(): Promise<string>;
  json(): Promise<unknown>;
  /** Reads and drops the rest. */
  dump(): Promise<void>;
}

export interface HttpResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: ResponseBody;
}

export interface HttpRequestOptions {
  method: HttpMethod;
  headers: Record<string, string>;
  body: Readable | string | Buffer | null;
  /** Milliseconds the connection may take to open. */
  connectTimeoutMs: number;
  /** Milliseconds without a byte, while waiting for the answer or reading it; 0: none. */
  idleTimeoutMs: number;
  signal?: AbortSignal;
}

/** Keeps connections alive between the requests of one command; destroyed by {@link closeAgents}. */
const agents = new Map<string, HttpAgent>();

function timeoutError(what: string, code: string): Error {
  return Object.assign(new Error(what), { code });
}

function withReaders(res: IncomingMessage): ResponseBody {
  const body = res as unknown as ResponseBody;
  body.text = async () => {
    const chunks: Buffer[] = [];
    for await (const c of res) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  };
  body.json = async () => JSON.parse(await body.text()) as unknown;
  body.dump = async () => {
    for await (const _ of res) {
      // drained
    }
  };
  return body;
}

export async function httpRequest(url: URL, o: HttpRequestOptions): Promise<HttpResponse> {
  const https = url.protocol === 'https:';
  const mod = https ? await import('node:https') : await import('node:http');
  let agent = agents.get(url.protocol);
  if (!agent) {
    agent = new mod.Agent({ keepAlive: true });
    agents.set(url.protocol, agent);
  }
  const options: RequestOptions = { method: o.method, headers: o.headers, agent, ...(o.signal ? { signal: o.signal } : {}) };
  return new Promise<HttpResponse>((resolve, reject) => {
    let settled = false;
    const fail = (e: Error) => {
      if (settled) return;
      settled = true;
      reject(e);
    };
    const req: ClientRequest = mod.request(url, options, (res) => {
      settled = true;
      if (o.idleTimeoutMs > 0) res.setTimeout(o.idleTimeoutMs, () => res.destroy(timeoutError('the answer stopped arriving', 'UND_ERR_BODY_TIMEOUT')));
      else res.setTimeout(0);
      resolve({ statusCode: res.statusCode ?? 0, headers: res.headers, body: withReaders(res) });
    });
    req.once('error', fail);
    req.once('socket', (socket) => {
      if (!socket.connecting) return;
      const timer = setTimeout(() => req.destroy(timeoutError('connection timed out', 'UND_ERR_CONNECT_TIMEOUT')), o.connectTimeoutMs);
      socket.once('connect', () => clearTimeout(timer));
      socket.once('close', () => clearTimeout(timer));
    });
    if (o.idleTimeoutMs > 0) req.setTimeout(o.idleTimeoutMs, () => req.destroy(timeoutError('no answer in time', 'UND_ERR_HEADERS_TIMEOUT')));
    const body = o.body;
    if (body === null) req.end();
    else if (typeof body === 'string' || Buffer.isBuffer(body)) req.end(body);
    else {
      // An answer that comes before the whole body was sent (a refusal) is still the answer.
      body.once('error', (e) => req.destroy(e));
      body.pipe(req);
    }
  });
}

/** Drops every kept-alive connection so that the process can exit at once. */
export function closeAgents(): void {
  for (const a of agents.values()) a.destroy();
  agents.clear();
}
