import type { IncomingMessage, ServerResponse } from 'node:http';
import { EphError, isEphError } from '../core/errors.ts';
import { contentTypeOf } from './content-types.ts';
import type { StaticEntry, StaticFiles } from './static-files.ts';
import { etagOf } from './static-files.ts';
import { requestPath, sendFailure, sendSimple, serveFile } from './static-site.ts';

const ALLOW = 'OPTIONS, GET, HEAD, PUT, DELETE, MKCOL, PROPFIND, MOVE';

/** Methods a WebDAV route must accept besides the usual ones (for a router that checks them). */
export const WEBDAV_METHODS = ['PROPFIND', 'MKCOL', 'MOVE'] as const;

/**
 * WebDAV class 1 (RFC 4918) over a static appliance's files: OPTIONS,
 * PROPFIND (Depth 0 and 1; infinity is served as 1), GET/HEAD, PUT, DELETE,
 * MKCOL and MOVE. The caller has authenticated the request already: this
 * answers every method it is given. `prefix` is the path the share is
 * mounted at (e.g. `/v1/appliances/site/dav`), used in the hrefs it answers.
 */
export function handleWebDav(files: StaticFiles, req: IncomingMessage, res: ServerResponse, prefix: string): void {
  dav(files, req, res, prefix.replace(/\/+$/, '')).catch((e: unknown) => {
    if (isEphError(e) && e.code === 'CONFLICT' && !res.headersSent) sendSimple(res, 409, {}, `${e.message}\n`);
    else sendFailure(res, e);
  });
}

async function dav(files: StaticFiles, req: IncomingMessage, res: ServerResponse, prefix: string): Promise<void> {
  const rel = davPath(req.url ?? '/', prefix);
  if (rel === null) return sendSimple(res, 400, {}, 'Bad Request\n');
  switch (req.method) {
    case 'OPTIONS':
      return sendSimple(res, 200, { dav: '1', allow: ALLOW, 'ms-author-via': 'DAV' }, '');
    case 'GET':
    case 'HEAD': {
      const e = await files.entry(rel);
      if (!e) return sendSimple(res, 404, {}, 'Not Found\n');
      if (e.stats.isFile()) return serveFile(req, res, e);
      return sendSimple(res, 200, { 'content-type': 'text/html; charset=utf-8' }, listing(await files.children(e), prefix, e));
    }
    case 'PUT': {
      const { created, info } = await files.put(rel, req, false);
      return sendSimple(res, created ? 201 : 204, { etag: info.etag });
    }
    case 'DELETE': {
      if (!(await files.entry(rel))) return sendSimple(res, 404, {}, 'Not Found\n');
      await files.delete(rel);
      return sendSimple(res, 204, {});
    }
    case 'MKCOL': {
      if (await hasBody(req)) return sendSimple(res, 415, {}, 'MKCOL with a body is not supported\n');
      if (await files.entry(rel)) return sendSimple(res, 405, { allow: ALLOW }, 'Already exists\n');
      await files.mkcol(rel);
      return sendSimple(res, 201, {});
    }
    case 'PROPFIND': {
      await drain(req);
      const e = await files.entry(rel);
      if (!e) return sendSimple(res, 404, {}, 'Not Found\n');
      const depth = String(req.headers.depth ?? 'infinity');
      const entries = [e];
      if (e.stats.isDirectory() && depth !== '0') entries.push(...(await files.children(e)));
      const body = multistatus(entries, prefix);
      return sendSimple(res, 207, { 'content-type': 'application/xml; charset=utf-8' }, body);
    }
    case 'MOVE': {
      const dest = destinationPath(req, prefix);
      if (dest === null) return sendSimple(res, 400, {}, 'Missing or foreign Destination header\n');
      const overwrite = String(req.headers.overwrite ?? 'T').toUpperCase() !== 'F';
      if (!overwrite && (await files.entry(dest))) return sendSimple(res, 412, {}, 'Destination exists\n');
      const { created } = await files.move(rel, dest, overwrite);
      return sendSimple(res, created ? 201 : 204, {});
    }
    default:
      return sendSimple(res, 405, { allow: ALLOW }, 'Method Not Allowed\n');
  }
}

function davPath(url: string, prefix: string): string | null {
  const path = requestPath(url);
  if (path === null) return null;
  if (path !== prefix && !path.startsWith(`${prefix}/`)) return null;
  return path.slice(prefix.length);
}

function destinationPath(req: IncomingMessage, prefix: string): string | null {
  const raw = req.headers.destination;
  if (typeof raw !== 'string') return null;
  let pathname: string;
  try {
    pathname = new URL(raw, 'http://localhost').pathname;
  } catch {
    return null;
  }
  return davPath(pathname, prefix);
}

function href(prefix: string, e: StaticEntry): string {
  const encoded = e.path === '' ? '' : `/${e.path.split('/').map(encodeURIComponent).join('/')}`;
  return `${prefix}${encoded}${e.stats.isDirectory() ? '/' : ''}`;
}

function multistatus(entries: StaticEntry[], prefix: string): string {
  const parts = ['<?xml version="1.0" encoding="utf-8"?>', '<D:multistatus xmlns:D="DAV:">'];
  for (const e of entries) {
    const dir = e.stats.isDirectory();
    const name = e.path === '' ? '/' : (e.path.split('/').pop() ?? '');
    const props = [
      `<D:displayname>${xml(name)}</D:displayname>`,
      dir ? '<D:resourcetype><D:collection/></D:resourcetype>' : '<D:resourcetype/>',
      `<D:getlastmodified>${new Date(e.stats.mtimeMs).toUTCString()}</D:getlastmodified>`,
      `<D:creationdate>${new Date(e.stats.birthtimeMs || e.stats.ctimeMs).toISOString()}</D:creationdate>`,
    ];
    if (!dir) {
      props.push(
        `<D:getcontentlength>${e.stats.size}</D:getcontentlength>`,
        `<D:getcontenttype>${xml(contentTypeOf(e.path))}</D:getcontenttype>`,
        `<D:getetag>${xml(etagOf(e.stats))}</D:getetag>`,
      );
    }
    parts.push(
      `<D:response><D:href>${xml(href(prefix, e))}</D:href><D:propstat><D:prop>${props.join('')}</D:prop>` +
        '<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>',
    );
  }
  parts.push('</D:multistatus>', '');
  return parts.join('\n');
}

function listing(children: StaticEntry[], prefix: string, dir: StaticEntry): string {
  const items = children.map((c) => `<li><a href="${xml(href(prefix, c))}">${xml(c.path.split('/').pop() ?? '')}${c.stats.isDirectory() ? '/' : ''}</a></li>`);
  return `<!doctype html><title>/${xml(dir.path)}</title><ul>${items.join('')}</ul>\n`;
}

function xml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Reads and discards a request body, up to 1 MiB (PROPFIND bodies are small XML). */
async function drain(req: IncomingMessage): Promise<number> {
  let n = 0;
  for await (const chunk of req) {
    n += (chunk as Buffer).length;
    if (n > 1 << 20) throw new EphError('BAD_REQUEST', 'request body too large');
  }
  return n;
}

async function hasBody(req: IncomingMessage): Promise<boolean> {
  return (await drain(req)) > 0;
}
