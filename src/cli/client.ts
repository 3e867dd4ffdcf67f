import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { CliError } from './cli-error.ts';
import { closeAgents, type HttpMethod, type HttpResponse, httpRequest, type ResponseBody } from './http-client.ts';
import type { ClientSettings } from './settings.ts';

export interface ApiRequest {
  method?: HttpMethod;
  /** Query parameters; undefined values are left out. */
  query?: Record<string, string | number | undefined>;
  /** Sent as JSON with Content-Type application/json. */
  json?: unknown;
  /** A raw body (stream, text or bytes); set its Content-Type in `headers`. */
  body?: Readable | string | Buffer;
  headers?: Record<string, string>;
  /** Milliseconds the body may stay silent; 0 for endless streams (logs -f). Default 5 minutes. */
  bodyTimeoutMs?: number;
  signal?: AbortSignal;
}

export interface ApiResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** The answer's body, not yet read. */
  body: ResponseBody;
}


/**
 * The one way the CLI talks to the API: HTTP Basic `user:token`, and every
 * failure mapped to a {@link CliError} carrying a one-line reason: the API's
 * `{"error":{"code","message"}}` message, or why the server could not be
 * reached. Answers below 400 are returned with their body unread.
 *
 * @example
 * const res = await apiRequest(settings, '/v1/instances');
 * const { instances } = (await res.body.json()) as { instances: unknown[] };
 */
export async function apiRequest(settings: ClientSettings, path: string, req: ApiRequest = {}): Promise<ApiResponse> {
  const url = new URL(settings.url + path);
  for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
  const headers: Record<string, string> = { authorization: basicAuth(settings), accept: 'application/json', ...req.headers };
  let body = req.body;
  if (req.json !== undefined) {
    body = JSON.stringify(req.json);
    headers['content-type'] = 'application/json';
  }
  let res: HttpResponse;
  try {
    res = await httpRequest(url, {
      method: req.method ?? 'GET',
      headers,
      body: body ?? null,
      connectTimeoutMs: 10_000,
      idleTimeoutMs: req.bodyTimeoutMs ?? 300_000,
      ...(req.signal ? { signal: req.signal } : {}),
    });
  } catch (e) {
    throw connectionError(settings.url, e);
  }
  if (res.statusCode >= 400) throw await errorFromAnswer(res);
  return { status: res.statusCode, headers: res.headers, body: res.body };
}

/** The `Authorization` header value for the settings' user. */
export function basicAuth(settings: ClientSettings): string {
  return `Basic ${Buffer.from(`${settings.user}:${settings.token}`).toString('base64')}`;
}

/** {@link apiRequest} for JSON answers: the parsed body. */
export async function apiJson<T>(settings: ClientSettings, path: string, req: ApiRequest = {}): Promise<T> {
  const res = await apiRequest(settings, path, req);
  const text = await readBody(settings.url, res.body);
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new CliError(`the server at ${settings.url} did not answer JSON (is EPH_URL the control API?)`, { status: res.status });
  }
}

/** Reads a whole body as text, turning a connection lost halfway into a CliError. */
export async function readBody(base: string, body: ApiResponse['body']): Promise<string> {
  try {
    return await body.text();
  } catch (e) {
    throw connectionError(base, e);
  }
}

/** Lets the process exit: drops the idle keep-alive connections (every request is answered by now). */
export async function closeClient(): Promise<void> {
  closeAgents();
}

async function errorFromAnswer(res: HttpResponse): Promise<CliError> {
  return errorFromBody(res.statusCode, await res.body.text().catch(() => ''));
}

/** The CliError for an error answer: the API's message, or the start of whatever came back. */
export function errorFromBody(status: number, text: string): CliError {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const err = (parsed as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  if (err && typeof err.message === 'string') {
    return new CliError(oneLine(err.message), {
      status,
      ...(typeof err.code === 'string' ? { code: err.code } : {}),
    });
  }
  // Not our API's shape (a proxy in between, a wrong EPH_URL): say what came back.
  const first = oneLine(text).slice(0, 200);
  return new CliError(`HTTP ${status}${first ? `: ${first}` : ''}`, { status });
}

const REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host not found (DNS lookup failed)',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed while sending',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
  UND_ERR_HEADERS_TIMEOUT: 'no answer in time',
  UND_ERR_BODY_TIMEOUT: 'the answer stalled',
  UND_ERR_SOCKET: 'connection closed by the server',
  UND_ERR_CLOSED: 'connection closed',
  ERR_TLS_CERT_ALTNAME_INVALID: 'its TLS certificate does not match the host',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'its TLS certificate is self-signed',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'its TLS certificate cannot be verified',
};

/** `cannot reach http://127.0.0.1:7070: connection refused` from whatever undici or the OS threw. */
export function connectionError(base: string, e: unknown): CliError {
  if (e instanceof CliError) return e;
  const code = errorCode(e);
  return new CliError(`cannot reach ${base}: ${failureReason(e)}`, { cause: e, ...(code ? { code } : {}) });
}

/** A short reason for a network failure: `connection refused`, `connection reset`… */
export function failureReason(e: unknown): string {
  const code = errorCode(e);
  return (code && REASONS[code]) ?? oneLine(e instanceof Error ? e.message : String(e));
}

function errorCode(e: unknown): string | undefined {
  // Node's happy-eyeballs connect throws an AggregateError whose parts carry the code.
  const seen = new Set<unknown>();
  let cur: unknown = e;
  while (cur && typeof cur === 'object' && !seen.has(cur)) {
    seen.add(cur);
    const o = cur as { code?: unknown; errors?: unknown[]; cause?: unknown };
    if (typeof o.code === 'string') return o.code;
    cur = Array.isArray(o.errors) && o.errors.length ? o.errors[0] : o.cause;
  }
  return undefined;
}

function oneLine(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}
