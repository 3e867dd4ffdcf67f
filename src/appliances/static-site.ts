import type { Stats } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import send from 'send';
import { isEphError } from '../core/errors.ts';
import { contentTypeOf } from './content-types.ts';
import type { StaticEntry, StaticFiles } from './static-files.ts';
import { etagOf } from './static-files.ts';

/**
 * Serves a static appliance's files over HTTP, read-only: what visitors of
 * `<name>.static.<domain>` get through the gate, and what a tunnel to the
 * appliance reaches. Files are sent by {@link serveFile} (the `send`
 * library: validators, 304, ranges); `index.html` for directories.
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

/**
 * Sends one file (shared with WebDAV GET and the API) by `send`: ETag and
 * Last-Modified with If-None-Match / If-Modified-Since (304), If-Match /
 * If-Unmodified-Since (412), a single byte range with If-Range (206, 416;
 * several ranges get the whole file), HEAD. The file was found by
 * StaticFiles (never through a link); our ETag (the one PROPFIND and the
 * API show) and content type are set before send looks at them.
 */
export function serveFile(req: IncomingMessage, res: ServerResponse, e: StaticEntry): Promise<void> {
  return new Promise<void>((resolve) => {
    // send percent-decodes the path it is given: encode each segment so that a name like `100%.txt` is itself.
    const encoded = e.full.split('/').map(encodeURIComponent).join('/');
    const stream = send(req, encoded, { etag: true, lastModified: true, acceptRanges: true, cacheControl: false, dotfiles: 'allow', index: false });
    stream.on('headers', (r: ServerResponse, _path: string, stats: Stats) => {
      r.setHeader('etag', etagOf(stats));
      r.setHeader('content-type', contentTypeOf(e.path));
      r.setHeader('cache-control', 'no-cache');
      r.setHeader('x-content-type-options', 'nosniff');
    });
    // No 'error' listener: send answers 404, 412 and 416 itself (with Content-Range: bytes */size on 416).
    res.once('close', () => resolve());
    res.once('finish', () => resolve());
    stream.pipe(res);
  });
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
