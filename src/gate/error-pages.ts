/**
 * The pages the gate itself answers with. Visitors see them in a browser, so
 * they are small HTML documents; the fixed ones are built once at start-up.
 */

const REASONS: Record<number, string> = {
  308: 'Permanent Redirect',
  400: 'Bad Request',
  404: 'Not Found',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function document(title: string, message: string, head = ''): string {
  return (
    `<!doctype html>\n<html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>${head}` +
    '<style>body{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}</style>' +
    `</head><body><h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p></body></html>\n`
  );
}

export interface PageOptions {
  /** Close the connection after this answer (the request body was not read, or the head was bad). */
  close?: boolean;
  retryAfter?: number;
  /** Extra raw header lines, each ending in CRLF. */
  headers?: string;
  /** Answer to a HEAD request: headers only. */
  head?: boolean;
}

/** A whole HTTP/1.1 response carrying an HTML page. */
export function page(status: number, title: string, message: string, opts: PageOptions = {}, extraHead = ''): Buffer {
  const body = Buffer.from(document(title, message, extraHead), 'utf8');
  let head =
    `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\n` +
    'Content-Type: text/html; charset=utf-8\r\n' +
    'Cache-Control: no-store\r\n' +
    `Content-Length: ${body.length}\r\n`;
  if (opts.retryAfter !== undefined) head += `Retry-After: ${opts.retryAfter}\r\n`;
  if (opts.headers) head += opts.headers;
  if (opts.close) head += 'Connection: close\r\n';
  head += '\r\n';
  return opts.head ? Buffer.from(head, 'latin1') : Buffer.concat([Buffer.from(head, 'latin1'), body]);
}

/** The gate's fixed answers to malformed or unroutable requests. */
export const PAGES = {
  badRequest: page(400, 'Bad request', 'The request is malformed.', { close: true }),
  badHost: page(400, 'Bad request', 'The Host of this request is missing or not a valid host name.', { close: true }),
  headersTooLarge: page(431, 'Request header fields too large', 'The request headers are too large.', { close: true }),
  timeout: page(408, 'Request timeout', 'The request was not received in time.', { close: true }),
  notImplemented: page(501, 'Not implemented', 'This request method or transfer coding is not supported.', { close: true }),
  badVersion: page(505, 'HTTP version not supported', 'Only HTTP/1.0 and HTTP/1.1 are supported.', { close: true }),
} as const;

/** Page for a host that the gate does not know. */
export function unknownHostPage(host: string, close: boolean, head: boolean): Buffer {
  return page(404, 'No application here', `There is no application at ${host}.`, { close, head });
}

/**
 * Shown to a browser while its instance wakes for longer than the configured
 * delay: it refreshes itself, and the wake carries on meanwhile.
 */
export function startingPage(host: string, refreshSeconds: number, head: boolean): Buffer {
  return page(
    503,
    'Starting…',
    `The application at ${host} is starting. This page reloads by itself.`,
    { retryAfter: refreshSeconds, head },
    `<meta http-equiv="refresh" content="${refreshSeconds}">`,
  );
}

/** Redirect to the same URL over HTTPS. */
export function httpsRedirect(host: string, port: number, target: string, close: boolean): Buffer {
  const location = `https://${host}${port === 443 ? '' : `:${port}`}${target === '*' ? '/' : target}`;
  return Buffer.from(
    `HTTP/1.1 308 Permanent Redirect\r\nLocation: ${location}\r\nContent-Length: 0\r\n${close ? 'Connection: close\r\n' : ''}\r\n`,
    'latin1',
  );
}
