/**
 * The heads the gate forwards, built from the ones it read (pure functions:
 * strings in, strings out). A request goes to the app without its hop-by-hop
 * lines and the visitor's forwarding claims, with the gate's own forwarding
 * lines; a response goes to the visitor with the gate's few changes.
 */
import type { RequestHead, ResponseHead } from './http-parse.ts';

/**
 * The start of the forwarding lines the gate adds to every request, from what
 * it knows itself: the peer's address and whether the visitor came over TLS.
 * `X-Forwarded-For` holds the peer only (the gate is the edge: any chain a
 * visitor sends is a claim, dropped with the rest of its forwarding lines).
 * Ends inside `Forwarded`, just before its host=, which is per Host.
 */
export function forwardingHead(remote: string, tls: boolean): string {
  // An IPv4 visitor on a dual-stack listener shows as ::ffff:a.b.c.d; apps expect a.b.c.d.
  const addr = remote.startsWith('::ffff:') && remote.includes('.') ? remote.slice(7) : remote || 'unknown';
  const proto = tls ? 'https' : 'http';
  // RFC 7239 §6: an IPv6 address is quoted and bracketed.
  const node = addr.includes(':') ? `"[${addr}]"` : addr;
  return `X-Forwarded-For: ${addr}\r\nX-Real-IP: ${addr}\r\nX-Forwarded-Proto: ${proto}\r\nForwarded: for=${node};proto=${proto};host=`;
}

/**
 * All forwarding lines for one Host value `raw`: {@link forwardingHead}'s
 * start, then the host. `raw` passed the head parser and normalizeHost: no CR,
 * LF, quote or backslash can be in it.
 */
export function forwardingLines(head: string, raw: string): string {
  return `${head}"${raw}"\r\nX-Forwarded-Host: ${raw}\r\n`;
}

/**
 * The request head sent upstream: `h` as read (request line through the
 * empty line) without the lines the parser marked to drop, then
 * `forwarding` (see {@link forwardingLines}), then the upgrade lines when the
 * request upgrades. An absolute-form target becomes origin-form plus Host.
 */
export function requestHeadToForward(h: string, rh: RequestHead, forwarding: string, upgrade: boolean): string {
  const drop = rh.drop;
  let s: string;
  let from: number;
  if (rh.absoluteHost === null) {
    s = '';
    from = 0;
  } else {
    s = `${rh.method} ${rh.target} HTTP/1.${rh.minor}\r\nHost: ${rh.absoluteHost}\r\n`;
    from = rh.headersStart;
  }
  for (let i = 0; i < drop.length; i += 2) {
    s += h.slice(from, drop[i]);
    from = drop[i + 1]!;
  }
  s += h.slice(from, h.length - 2);
  s += forwarding;
  if (upgrade) s += `Connection: upgrade\r\nUpgrade: ${rh.upgrade}\r\n`;
  return `${s}\r\n`;
}

/**
 * True when a response head cannot go to the visitor as the app sent it: a
 * sticky cookie to add, a close to announce (`closeAfter`: the gate closes
 * after this exchange; `untilClose`: the body runs until the app closes), or a
 * Content-Length beside a Transfer-Encoding to remove. Most responses need
 * none and go as bytes.
 */
export function responseHeadNeedsRewrite(rs: ResponseHead, setCookie: string | null, closeAfter: boolean, untilClose: boolean): boolean {
  return setCookie !== null || (closeAfter && !rs.connClose) || untilClose || (rs.transferEncoding && rs.sawLength);
}

/**
 * The response head with the gate's changes: the sticky cookie, Connection: close
 * when closing, and no Content-Length next to a Transfer-Encoding (RFC 9112 §6.3:
 * a proxy removes it, or the client might frame the body by it).
 */
export function responseHeadToForward(h: string, rs: ResponseHead, setCookie: string | null, closing: boolean): string {
  let s = h.slice(0, h.length - 2);
  if (closing && rs.drop.length > 0) {
    s = '';
    let from = 0;
    for (let k = 0; k < rs.drop.length; k += 2) {
      s += h.slice(from, rs.drop[k]);
      from = rs.drop[k + 1]!;
    }
    s += h.slice(from, h.length - 2);
  }
  if (rs.transferEncoding && rs.sawLength) s = withoutContentLength(s);
  if (setCookie !== null) s += setCookie;
  if (closing) s += 'Connection: close\r\n';
  return `${s}\r\n`;
}

/** A head (lines ending in CRLF, no final empty line) without its Content-Length lines. */
export function withoutContentLength(head: string): string {
  let out = '';
  let pos = 0;
  while (pos < head.length) {
    const eol = head.indexOf('\r\n', pos);
    const end = eol < 0 ? head.length : eol + 2;
    const colon = head.indexOf(':', pos);
    if (!(colon === pos + 14 && head.slice(pos, colon).toLowerCase() === 'content-length')) out += head.slice(pos, end);
    pos = end;
  }
  return out;
}
