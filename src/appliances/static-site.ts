import { createReadStream } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { isEphError } from '../core/errors.ts';
import { contentTypeOf } from './content-types.ts';
import type { StaticEntry, StaticFiles } from './static-files.ts';
import { etagOf } from './static-files.ts';

/**
 * Serves a static appliance's files over HTTP, read-only: what visitors of
 * `<name>.static.<domain>` get through the gate, and what a tunnel to the
 * appliance reaches. Content types by extension, ETag / If-None-Match and
 * Last-Modified / If-Modified-Since (304), single byte ranges (206, 416),
 * `index.html` for directories.
 *
 * @example
 * http.createServer((req, res) => site.handle(req, res)).listen(8000)
 */
export class StaticSite {
  readonly files: StaticFiles;
  readonly #available: () => boolean;

  constructor(files: StaticFiles, available: () => boolean = () => true) {
    this.files = files;
    this.#available = available;
  }

  /** Answers one request (never throws; failures become HTTP statuses). */
  handle(req: IncomingMessage, res: ServerResponse): void {
    this.#handle(req, res).catch((e: unknown) => fail(res, e));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method === 'OPTIONS') return end(res, 204, { allow: 'GET, HEAD, OPTIONS' });
    if (req.method !== 'GET' && req.method !== 'HEAD') return end(res, 405, { allow: 'GET, HEAD, OPTIONS' }, 'Method Not Allowed\n');
    if (!this.#available()) return end(res, 503, { 'retry-after': '5' }, 'This site is stopped.\n');
    const path = requestPath(req.url ?? '/');
    if (path === null) return end(res, 400, {}, 'Bad Request\n');
    let e = await this.files.entry(path);
    if (e?.stats.isDirectory()) {
      if (!path.endsWith('/') && path !== '') {
        // Relative links in index.html resolve against the directory only with the slash.
        const q = (req.url ?? '').indexOf('?');
        return end(res, 301, { location: `${(req.url ?? '').slice(0, q < 0 ? undefined : q)}/` });
      }
      e = await this.files.entry(`${e.path}/index.html`);
    }
    if (!e?.stats.isFile()) return end(res, 404, {}, 'Not Found\n');
    await serveFile(req, res, e);
  }
}

/** Sends one file with validators and range support (shared with WebDAV GET). */
export async function serveFile(req: IncomingMessage, res: ServerResponse, e: StaticEntry): Promise<void> {
  const size = e.stats.size;
  const etag = etagOf(e.stats);
  const lastModified = new Date(Math.floor(e.stats.mtimeMs / 1000) * 1000);
  const headers: Record<string, string> = {
    etag,
    'last-modified': lastModified.toUTCString(),
    'accept-ranges': 'bytes',
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
  };
  if (notModified(req, etag, lastModified)) return end(res, 304, headers);
  headers['content-type'] = contentTypeOf(e.path);
  let start = 0;
  let last = size - 1;
  let status = 200;
  const range = req.headers.range;
  if (range !== undefined && req.method === 'GET' && ifRangeHolds(req, etag, lastModified)) {
    const r = parseRange(range, size);
    if (r === 'unsatisfiable') return end(res, 416, { ...headers, 'content-range': `bytes */${size}` });
    if (r) {
      [start, last] = r;
      status = 206;
      headers['content-range'] = `bytes ${start}-${last}/${size}`;
    }
  }
  headers['content-length'] = String(Math.max(0, last - start + 1));
  res.writeHead(status, headers);
  if (req.method === 'HEAD' || size === 0) {
    res.end();
    return;
  }
  await pipeline(createReadStream(e.full, { start, end: last }), res);
}

/** The percent-decoded path of a request target, without its query; null when it cannot be decoded. */
export function requestPath(url: string): string | null {
  const q = url.indexOf('?');
  try {
    return decodeURIComponent(q < 0 ? url : url.slice(0, q));
  } catch {
    return null;
  }
}

function notModified(req: IncomingMessage, etag: string, lastModified: Date): boolean {
  const inm = req.headers['if-none-match'];
  if (inm !== undefined) {
    // Weak comparison (RFC 9110 §13.1.2): W/ prefixes do not matter here.
    const bare = etag.replace(/^W\//, '');
    return inm.trim() === '*' || inm.split(',').some((t) => t.trim().replace(/^W\//, '') === bare);
  }
  const ims = req.headers['if-modified-since'];
  if (ims !== undefined) {
    const t = Date.parse(ims);
    return !Number.isNaN(t) && lastModified.getTime() <= t;
  }
  return false;
}

function ifRangeHolds(req: IncomingMessage, etag: string, lastModified: Date): boolean {
  const raw = req.headers['if-range'];
  if (raw === undefined) return true;
  const v = Array.isArray(raw) ? (raw[0] ?? '') : raw;
  if (v.startsWith('"') || v.startsWith('W/')) return v === etag;
  const t = Date.parse(v);
  return !Number.isNaN(t) && t === lastModified.getTime();
}

/**
 * A single `bytes=` range as [first, last]; null to ignore the header
 * (malformed, or several ranges: serving the whole file is allowed);
 * 'unsatisfiable' when it starts past the end.
 */
export function parseRange(header: string, size: number): [number, number] | null | 'unsatisfiable' {
  const m = /^bytes=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header);
  if (!m || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return 'unsatisfiable';
    return [Math.max(0, size - n), size - 1];
  }
  const first = Number(m[1]);
  const last = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (m[2] !== '' && Number(m[2]) < first) return null;
  if (first >= size) return 'unsatisfiable';
  return [first, last];
}

function end(res: ServerResponse, status: number, headers: Record<string, string>, body?: string): void {
  if (body !== undefined) {
    headers['content-type'] ??= 'text/plain; charset=utf-8';
    headers['content-length'] = String(Buffer.byteLength(body));
  }
  res.writeHead(status, headers);
  res.end(body);
}

function fail(res: ServerResponse, e: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (isEphError(e)) end(res, e.status, {}, `${e.message}\n`);
  else end(res, 500, {}, 'Internal Server Error\n');
}

export { end as sendSimple, fail as sendFailure };
