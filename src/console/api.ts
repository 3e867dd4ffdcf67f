/**
 * The console's only way to the cloud: the /v1 API of the origin it was
 * loaded from, authenticated by the session cookie (sent by the browser,
 * unreadable to scripts) and, on every change, the session's CSRF token.
 */

export interface SessionInfo {
  userID: string;
  name: string;
  plan: string;
  maxRunning: number;
  csrfToken: string;
  expiresAt: string;
}

export type InstanceState = 'asleep' | 'frozen' | 'starting' | 'running' | 'failed';

export interface Instance {
  hostname: string;
  alias: string | null;
  imageName: string;
  accessTime: string;
  createdTime: string;
  isRunning: boolean;
  state: InstanceState;
  url: string;
  lastError: string | null;
  imageDigest: string;
  /** Archive size in bytes, when the API tells it (shown as Size). */
  imageSize?: number;
}

export interface GateTarget {
  hostname: string;
  weight: number;
}

export interface GateRoute {
  domain: string;
  targets: GateTarget[];
  healthPath: string;
  httpsRedirect: boolean;
  updatedAt: number | string;
}

export interface RouteChange {
  domain: string;
  at: number | string;
  by: string;
  action: string;
  from: GateTarget[];
  to: GateTarget[];
}

export interface Appliance {
  name: string;
  kind: string;
  status: string;
  public: string;
  url: string;
  createdAt: string;
  lastError: string | null;
  /** Only in the answer to its creation: the user's psk.txt. */
  psk?: string;
}

export interface CiTest {
  suite: string;
  name: string;
  status: string;
  message?: string;
  durationMs?: number;
}

export interface CiRun {
  id: string;
  name: string;
  status: string;
  hostname: string | null;
  url: string | null;
  createdAt: number;
  updatedAt: number;
  deadline: number;
  keep: boolean;
  promotedTo: string | null;
  steps: Array<{ name: string; status: string; ms: number; detail?: string }>;
  tests: CiTest[];
  logExcerpt: string | null;
  error: string | null;
}

/** An error answer of the API, with its code and message as the API wrote them. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Marks the console's requests: the API then leaves out `WWW-Authenticate` (no browser password dialog). */
const CONSOLE_HEADER = { 'x-eph-console': '1' };

let csrfToken = '';
let onSignedOut: () => void = () => {};

/** Sets the CSRF token of the current session (from sign-in or GET /v1/session). */
export function rememberSession(s: SessionInfo | null): void {
  csrfToken = s ? s.csrfToken : '';
}

/** What to do when the API says the session is gone (401): show the sign-in form. */
export function whenSignedOut(f: () => void): void {
  onSignedOut = f;
}

function errorOf(status: number, text: string): ApiError {
  try {
    const e = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
    if (e && typeof e.message === 'string') return new ApiError(status, String(e.code ?? 'ERROR'), e.message);
  } catch {
    // not JSON: a proxy's page, a cut connection
  }
  return new ApiError(status, 'HTTP_' + status, text.trim().slice(0, 300) || `HTTP ${status}`);
}

/** A /v1 call; JSON in and out (text answers as text). 401 signs the console out. */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { ...CONSOLE_HEADER, accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD') headers['x-csrf-token'] = csrfToken;
  let payload: string | Blob | undefined;
  if (body instanceof Blob) {
    payload = body;
    headers['content-type'] = 'text/plain';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['content-type'] = 'application/json';
  }
  let res: Response;
  try {
    res = await fetch(path, { method, headers, body: payload, credentials: 'same-origin', cache: 'no-store' });
  } catch {
    throw new ApiError(0, 'NETWORK', 'the cloud cannot be reached; check that it is running');
  }
  const text = await res.text();
  if (!res.ok) {
    const err = errorOf(res.status, text);
    if (res.status === 401 && path !== '/v1/session') onSignedOut();
    throw err;
  }
  if ((res.headers.get('content-type') ?? '').includes('application/json')) return (text ? JSON.parse(text) : null) as T;
  return text as T;
}

/** Basic credentials of the sign-in form (UTF-8, as the API decodes them). */
function basic(userId: string, token: string): string {
  const bytes = new TextEncoder().encode(`${userId}:${token}`);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return `Basic ${btoa(bin)}`;
}

export async function signIn(userId: string, token: string): Promise<SessionInfo> {
  let res: Response;
  try {
    res = await fetch('/v1/session', { method: 'POST', headers: { ...CONSOLE_HEADER, authorization: basic(userId, token) }, credentials: 'same-origin' });
  } catch {
    throw new ApiError(0, 'NETWORK', 'the cloud cannot be reached; check that it is running');
  }
  const text = await res.text();
  if (!res.ok) throw errorOf(res.status, text);
  const s = JSON.parse(text) as SessionInfo;
  rememberSession(s);
  return s;
}

export async function currentSession(): Promise<SessionInfo | null> {
  try {
    const s = await api<SessionInfo>('GET', '/v1/session');
    rememberSession(s);
    return s;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}

export async function signOut(): Promise<void> {
  await api('DELETE', '/v1/session').catch(() => {});
  rememberSession(null);
}

/**
 * Publishes an archive as POST /v1/instances (raw body, name in X-Name) with
 * XMLHttpRequest: fetch has no upload progress.
 */
export function publishArchive(file: File, onProgress: (sent: number, total: number) => void): Promise<Instance> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/v1/instances');
    xhr.setRequestHeader('content-type', 'application/octet-stream');
    // Header values are Latin-1 only: the API decodes percent-escapes of UTF-8 (docs/api.md, X-Name).
    xhr.setRequestHeader('x-name', encodeURIComponent(file.name));
    xhr.setRequestHeader('x-csrf-token', csrfToken);
    xhr.setRequestHeader('x-eph-console', '1');
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onload = () => {
      if (xhr.status === 201) resolve(JSON.parse(xhr.responseText) as Instance);
      else {
        if (xhr.status === 401) onSignedOut();
        reject(errorOf(xhr.status, xhr.responseText));
      }
    };
    xhr.onerror = () => reject(new ApiError(0, 'NETWORK', 'the upload was cut off (the cloud refused it before the end, or the network failed)'));
    xhr.send(file);
  });
}

/** Streams an instance's log (GET …/logs?follow=1) until `signal` aborts; `onText` gets each piece. */
export async function followLog(host: string, onText: (s: string) => void, signal: AbortSignal): Promise<void> {
  const res = await fetch(`/v1/instances/${encodeURIComponent(host)}/logs?follow=1&tail=16384`, { headers: CONSOLE_HEADER, credentials: 'same-origin', signal });
  if (!res.ok || !res.body) throw errorOf(res.status, await res.text());
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onText(value);
  }
}
