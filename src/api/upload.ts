import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import { EphError } from '../core/errors.ts';

/** Content types under which an archive may arrive as the raw body (the Pharo client sends application/zip). */
export const ARCHIVE_TYPES = [
  'application/zip',
  'application/x-zip-compressed',
  'application/x-tar',
  'application/tar',
  'application/gzip',
  'application/x-gzip',
  'application/x-compressed-tar',
  'application/octet-stream',
];

/** Raw archive bodies reach the handler as the request stream: size limits are enforced while hashing, not by buffering. */
export function registerArchiveParser(app: FastifyInstance): void {
  app.addContentTypeParser(ARCHIVE_TYPES, (_req, payload, done) => done(null, payload));
}

export interface Upload {
  stream: Readable;
  name: string | undefined;
}

/**
 * The archive of a publish: multipart field `imageZip` (curl -F), or the raw
 * body with the name in `X-Name`. Rejects an announced Content-Length over the
 * limit before reading a byte.
 */
export async function readUpload(req: FastifyRequest, maxBytes: number, field = 'imageZip'): Promise<Upload> {
  const announced = Number(req.headers['content-length'] ?? NaN);
  const ct = String(req.headers['content-type'] ?? '').toLowerCase();
  const multipart = ct.startsWith('multipart/form-data');
  // Multipart framing adds a little; allow for it before refusing on the announced length.
  if (Number.isFinite(announced) && announced > maxBytes + (multipart ? 64 * 1024 : 0)) {
    throw new EphError('ARCHIVE_TOO_LARGE', `archive of ${announced} bytes is over the limit of ${maxBytes} bytes`);
  }
  const xname = req.headers['x-name'];
  const headerName = typeof xname === 'string' ? headerText(xname) : undefined;
  const q = req.query as Record<string, unknown>;
  const queryName = typeof q.name === 'string' ? q.name : undefined;
  if (multipart) {
    const parts = req.parts({ limits: { fileSize: maxBytes + 1, files: 1 } });
    const fields: Record<string, string> = {};
    for await (const part of parts) {
      if (part.type === 'file') {
        if (part.fieldname !== field && part.fieldname !== 'file') {
          part.file.resume();
          throw new EphError('BAD_REQUEST', `expected the archive in form field '${field}', got '${part.fieldname}'`);
        }
        return { stream: part.file, name: headerName ?? queryName ?? fields.name ?? part.filename };
      }
      fields[part.fieldname] = String(part.value);
    }
    throw new EphError('BAD_REQUEST', `no file in form field '${field}' (curl -F '${field}=@app.zip')`);
  }
  const body = req.body as Readable | undefined;
  if (!body || typeof (body as Readable).pipe !== 'function') {
    throw new EphError('UNSUPPORTED_MEDIA_TYPE', `send the archive as multipart field '${field}' or as the body with Content-Type application/zip`);
  }
  return { stream: body, name: headerName ?? queryName };
}

/**
 * The text of an `X-Name` header. Node hands header bytes over as Latin-1
 * characters; the Pharo client sends the name's UTF-8 bytes, other clients
 * Latin-1 or percent-encoded UTF-8. So: bytes that form valid UTF-8 are read
 * as UTF-8, others stay Latin-1; then percent-escapes are decoded when they
 * decode, and a value such as `build 100%` or `%E0%A4%A` is taken as it is.
 */
export function headerText(raw: string): string {
  let text = raw;
  if (/[\u0080-\u00ff]/.test(raw) && !/[^\u0000-\u00ff]/.test(raw)) {
    try {
      text = UTF8.decode(Buffer.from(raw, 'latin1'));
    } catch {
      text = raw;
    }
  }
  if (!text.includes('%')) return text;
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });
