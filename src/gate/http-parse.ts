/**
 * Just enough HTTP/1.1 parsing for the gate to route and frame messages
 * (RFC 9112). The gate never rebuilds a message it does not have to: it reads
 * the head to find Host, the body framing and the hop-by-hop headers, then
 * forwards bytes. Parsing is strict because a proxy that reads framing
 * differently from the app behind it is how requests get smuggled.
 */

/** tchar (RFC 9110 §5.6.2) by char code: header names and methods are tokens. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = 1;
const DIGITS = /^\d{1,15}$/;

function isTchar(c: number): boolean {
  return c < 128 && TCHAR[c] === 1;
}

/**
 * Index of the CR of the CRLF that ends the line starting at `pos`, or -1 when
 * a control character comes first: any but HTAB, a bare CR or a bare LF, each
 * a way to make two parsers disagree. One pass, no regular expression: this
 * runs over every byte of every request head.
 */
function lineEnd(h: string, pos: number): number {
  for (let i = pos; i < h.length; i++) {
    const c = h.charCodeAt(i);
    if (c < 32 || c === 127) {
      if (c === 13 && h.charCodeAt(i + 1) === 10) return i;
      if (c !== 9) return -1;
    }
  }
  return -1;
}

/** What the gate needs from a request head; one object per connection, reused. */
export class RequestHead {
  method = '';
  /** Target to forward (origin-form, also when the client sent absolute-form). */
  target = '';
  /** Host from an absolute-form target, which wins over the Host header (RFC 9112 §3.2.2). */
  absoluteHost: string | null = null;
  /** 1 for HTTP/1.1, 0 for HTTP/1.0. */
  minor = 1;
  host: string | null = null;
  /** -1 when absent. */
  contentLength = -1;
  chunked = false;
  connClose = false;
  connKeepAlive = false;
  connUpgrade = false;
  upgrade: string | null = null;
  cookie: string | null = null;
  accept: string | null = null;
  /** Index just past the request line's CRLF. */
  headersStart = 0;
  /**
   * [start, end) ranges of header lines the gate drops: hop-by-hop ones, and every
   * line a visitor could use to pose as someone else to the app (Forwarded,
   * X-Real-IP, X-Forwarded-*); the gate sets those from what it knows itself.
   */
  drop: number[] = [];
  /** Status to answer when parsing failed (400, 501, 505), 0 when the head is fine. */
  error = 0;

  reset(): void {
    this.absoluteHost = null;
    this.minor = 1;
    this.host = null;
    this.contentLength = -1;
    this.chunked = false;
    this.connClose = false;
    this.connKeepAlive = false;
    this.connUpgrade = false;
    this.upgrade = null;
    this.cookie = null;
    this.accept = null;
    this.drop.length = 0;
    this.error = 0;
  }

  /** True when the client will send no body. */
  get bodyless(): boolean {
    return !this.chunked && this.contentLength <= 0;
  }

  /** True when the client asked to close the connection after this exchange. */
  get wantsClose(): boolean {
    return this.connClose || (this.minor === 0 && !this.connKeepAlive);
  }
}

function fail(rh: RequestHead, status: number): false {
  rh.error = status;
  return false;
}

function lowerEq(h: string, at: number, lit: string): boolean {
  for (let i = 0; i < lit.length; i++) {
    if ((h.charCodeAt(at + i) | 0x20) !== lit.charCodeAt(i)) return false;
  }
  return true;
}

function trimValue(h: string, from: number, to: number): string {
  while (from < to && (h.charCodeAt(from) === 32 || h.charCodeAt(from) === 9)) from++;
  while (to > from && (h.charCodeAt(to - 1) === 32 || h.charCodeAt(to - 1) === 9)) to--;
  return h.slice(from, to);
}

function parseConnection(rh: RequestHead, v: string): void {
  // What browsers and clients send, without splitting.
  if (v.length === 10 && lowerEq(v, 0, 'keep-alive')) rh.connKeepAlive = true;
  else if (v.length === 5 && lowerEq(v, 0, 'close')) rh.connClose = true;
  else for (const raw of v.split(',')) {
    const t = raw.trim().toLowerCase();
    if (t === 'close') rh.connClose = true;
    else if (t === 'keep-alive') rh.connKeepAlive = true;
    else if (t === 'upgrade') rh.connUpgrade = true;
  }
}

/**
 * Parses a request head: `h` is its latin1 text from the request line through
 * the empty line (CRLF CRLF included). Fills `rh`; returns false with
 * `rh.error` set when the head must be rejected.
 */
export function parseRequestHead(h: string, rh: RequestHead): boolean {
  rh.reset();
  const lineEnd0 = lineEnd(h, 0);
  if (lineEnd0 < 0) return fail(rh, 400);
  let sp1 = 0;
  while (sp1 < lineEnd0 && isTchar(h.charCodeAt(sp1))) sp1++;
  if (sp1 === 0 || h.charCodeAt(sp1) !== 32) return fail(rh, 400);
  const sp2 = h.indexOf(' ', sp1 + 1);
  // A third space makes the version check below fail, so two are all that need finding.
  if (sp2 < 0 || sp2 >= lineEnd0) return fail(rh, 400);
  // The common methods as constants: no string is made for them.
  const method =
    sp1 === 3 && h.startsWith('GET') ? 'GET' : sp1 === 4 && h.startsWith('POST') ? 'POST' : sp1 === 4 && h.startsWith('HEAD') ? 'HEAD' : h.slice(0, sp1);
  rh.method = method;
  const v = sp2 + 1;
  if (lineEnd0 - v !== 8 || !h.startsWith('HTTP/', v) || !isDigit(h.charCodeAt(v + 5)) || h.charCodeAt(v + 6) !== 46 || !isDigit(h.charCodeAt(v + 7))) {
    return fail(rh, 400);
  }
  const major = h.charCodeAt(v + 5);
  const minor = h.charCodeAt(v + 7);
  if (major === 49 && minor === 49) rh.minor = 1;
  else if (major === 49 && minor === 48) rh.minor = 0;
  else return fail(rh, 505);
  // A request target: visible ASCII only (obs-text is not allowed in a URI).
  if (sp2 === sp1 + 1) return fail(rh, 400);
  for (let i = sp1 + 1; i < sp2; i++) {
    const c = h.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return fail(rh, 400);
  }
  const c0 = h.charCodeAt(sp1 + 1);
  if (c0 === 47 /* / */) rh.target = h.slice(sp1 + 1, sp2);
  else if (c0 === 42 /* * */ && sp2 === sp1 + 2 && method === 'OPTIONS') rh.target = '*';
  else if (!parseAbsoluteTarget(rh, h.slice(sp1 + 1, sp2))) return fail(rh, 400);
  rh.headersStart = lineEnd0 + 2;

  let hostCount = 0;
  let pos = lineEnd0 + 2;
  const end = h.length - 2;
  while (pos < end) {
    // A line that starts with SP or HTAB (obs-fold, RFC 9112 §5.2) has no name and is
    // rejected here: a proxy must reject it or replace it, and rejecting is safer.
    let colon = pos;
    while (isTchar(h.charCodeAt(colon))) colon++;
    if (colon === pos || h.charCodeAt(colon) !== 58 /* : */) return fail(rh, 400);
    const eol = lineEnd(h, colon + 1);
    if (eol < 0) return fail(rh, 400);
    const n = colon - pos;
    switch (n) {
      case 4:
        if (lowerEq(h, pos, 'host')) {
          hostCount++;
          rh.host = trimValue(h, colon + 1, eol);
          if (rh.absoluteHost !== null) rh.drop.push(pos, eol + 2);
        }
        break;
      case 6:
        if (lowerEq(h, pos, 'cookie')) {
          const v = trimValue(h, colon + 1, eol);
          rh.cookie = rh.cookie === null ? v : `${rh.cookie}; ${v}`;
        } else if (lowerEq(h, pos, 'accept')) rh.accept = trimValue(h, colon + 1, eol);
        break;
      case 7:
        if (lowerEq(h, pos, 'upgrade')) {
          rh.upgrade = trimValue(h, colon + 1, eol);
          rh.drop.push(pos, eol + 2);
        }
        break;
      case 9:
        // Forwarded (RFC 7239) and X-Real-IP: set by the gate, never taken from a visitor.
        if (lowerEq(h, pos, 'forwarded') || lowerEq(h, pos, 'x-real-ip')) rh.drop.push(pos, eol + 2);
        break;
      case 10:
        if (lowerEq(h, pos, 'connection')) {
          parseConnection(rh, trimValue(h, colon + 1, eol));
          rh.drop.push(pos, eol + 2);
        } else if (lowerEq(h, pos, 'keep-alive')) rh.drop.push(pos, eol + 2);
        break;
      case 14:
        if (lowerEq(h, pos, 'content-length')) {
          const v = trimValue(h, colon + 1, eol);
          // Duplicates, lists and signs are all rejected: only one plain number frames a body safely.
          if (rh.contentLength !== -1 || !DIGITS.test(v)) return fail(rh, 400);
          rh.contentLength = Number(v);
        }
        break;
      case 15:
        // Not appended to: the gate is the edge, so a visitor's own chain is only a claim.
        if (lowerEq(h, pos, 'x-forwarded-for')) rh.drop.push(pos, eol + 2);
        break;
      case 16:
        if (lowerEq(h, pos, 'x-forwarded-host') || lowerEq(h, pos, 'proxy-connection')) rh.drop.push(pos, eol + 2);
        break;
      case 17:
        if (lowerEq(h, pos, 'transfer-encoding')) {
          // Only a lone `chunked` is understood; anything else cannot be framed, and two
          // Transfer-Encoding lines are refused like two Content-Lengths.
          if (rh.chunked || trimValue(h, colon + 1, eol).toLowerCase() !== 'chunked') return fail(rh, 400);
          rh.chunked = true;
        } else if (lowerEq(h, pos, 'x-forwarded-proto')) rh.drop.push(pos, eol + 2);
        break;
    }
    pos = eol + 2;
  }
  if (rh.chunked && (rh.contentLength !== -1 || rh.minor === 0)) return fail(rh, 400);
  if (hostCount > 1 || (hostCount === 0 && rh.minor === 1)) return fail(rh, 400);
  if (rh.host !== null && rh.host.length === 0 && rh.absoluteHost === null) return fail(rh, 400);
  if (method === 'CONNECT') return fail(rh, 501);
  return true;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function parseAbsoluteTarget(rh: RequestHead, target: string): boolean {
  const m = /^https?:\/\/([^/?#]+)([^#]*)/i.exec(target);
  if (!m || m[1]!.includes('@')) return false;
  rh.absoluteHost = m[1]!;
  const rest = m[2]!;
  rh.target = rest.length === 0 ? '/' : rest.charCodeAt(0) === 63 /* ? */ ? `/${rest}` : rest;
  return true;
}

/** Value of one cookie in a Cookie header, or undefined. */
export function cookieValue(header: string | null, name: string): string | undefined {
  if (header === null) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** What the gate needs from a response head. */
export class ResponseHead {
  status = 0;
  minor = 1;
  contentLength = -1;
  chunked = false;
  connClose = false;
  /** A Transfer-Encoding line was present: it frames the body, and Content-Length lines must go. */
  transferEncoding = false;
  /**
   * A Content-Length line was present. With `transferEncoding`, such lines are
   * dropped from the forwarded head (RFC 9112 §6.3); that is rare, so they are
   * found again then instead of being recorded for every response.
   */
  sawLength = false;
  /** [start, end) of Connection and Keep-Alive lines, for rewriting when the client closes. */
  drop: number[] = [];
  ok = true;

  reset(): void {
    this.contentLength = -1;
    this.chunked = false;
    this.connClose = false;
    this.transferEncoding = false;
    this.sawLength = false;
    this.drop.length = 0;
    this.ok = true;
  }
}

/** Parses a response head given as latin1 text (CRLF CRLF included); see {@link parseResponseHeadBytes}. */
export function parseResponseHead(h: string, rs: ResponseHead): boolean {
  return parseResponseHeadBytes(Buffer.from(h, 'latin1'), 0, h.length, rs);
}

/**
 * Parses a response head from an app (trusted less than a client, but still
 * framed strictly) where it was read: b[start, end) runs from the status line
 * through the empty line. Works on the bytes, so that forwarding a response
 * makes no string; `rs.drop` offsets count from `start`.
 */
export function parseResponseHeadBytes(b: Uint8Array, start: number, end: number, rs: ResponseHead): boolean {
  rs.reset();
  // "HTTP/1.x SSS"
  if (
    end - start < 16 ||
    b[start] !== 72 ||
    b[start + 1] !== 84 ||
    b[start + 2] !== 84 ||
    b[start + 3] !== 80 ||
    b[start + 4] !== 47 ||
    b[start + 5] !== 49 ||
    b[start + 6] !== 46 ||
    b[start + 8] !== 32
  ) {
    return (rs.ok = false);
  }
  rs.minor = b[start + 7] === 49 ? 1 : 0;
  const d0 = b[start + 9]! - 48;
  const d1 = b[start + 10]! - 48;
  const d2 = b[start + 11]! - 48;
  if (d0 < 1 || d0 > 9 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return (rs.ok = false);
  rs.status = d0 * 100 + d1 * 10 + d2;
  let pos = start + 12;
  while (pos < end && !(b[pos] === 13 && b[pos + 1] === 10)) pos++;
  pos += 2;
  const last = end - 2;
  while (pos < last) {
    let colon = -1;
    let eol = pos;
    for (; eol < last; eol++) {
      const c = b[eol]!;
      if (c === 13 && b[eol + 1] === 10) break;
      if (c === 58 && colon < 0) colon = eol;
    }
    if (colon < 0) return (rs.ok = false);
    const n = colon - pos;
    if (n === 14 && lowerEqBytes(b, pos, 'content-length')) {
      const v = digitsValue(b, colon + 1, eol);
      if (v < 0 || (rs.contentLength !== -1 && rs.contentLength !== v)) return (rs.ok = false);
      rs.contentLength = v;
      rs.sawLength = true;
    } else if (n === 17 && lowerEqBytes(b, pos, 'transfer-encoding')) {
      // The codings of later lines follow those of earlier ones: the last line names the final one.
      rs.transferEncoding = true;
      rs.chunked = endsWithChunked(b, colon + 1, eol);
    } else if (n === 10 && (lowerEqBytes(b, pos, 'connection') || lowerEqBytes(b, pos, 'keep-alive'))) {
      if ((b[pos]! | 0x20) === 99 /* c */ && hasCloseToken(b, colon + 1, eol)) rs.connClose = true;
      rs.drop.push(pos - start, eol + 2 - start);
    }
    pos = eol + 2;
  }
  // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length; without a final
  // `chunked`, the body runs until the app closes the connection.
  if (rs.transferEncoding) {
    rs.contentLength = -1;
    if (!rs.chunked) rs.connClose = true;
  }
  return true;
}

function lowerEqBytes(b: Uint8Array, at: number, lit: string): boolean {
  for (let i = 0; i < lit.length; i++) {
    if ((b[at + i]! | 0x20) !== lit.charCodeAt(i)) return false;
  }
  return true;
}

function isOws(c: number): boolean {
  return c === 32 || c === 9;
}

/** A Content-Length value: 1 to 15 digits between optional whitespace; -1 otherwise. */
function digitsValue(b: Uint8Array, from: number, to: number): number {
  while (from < to && isOws(b[from]!)) from++;
  while (to > from && isOws(b[to - 1]!)) to--;
  if (to === from || to - from > 15) return -1;
  let v = 0;
  for (let i = from; i < to; i++) {
    const d = b[i]! - 48;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}

/** `chunked` as the whole value or after `,` or `, ` (the last coding applied). */
function endsWithChunked(b: Uint8Array, from: number, to: number): boolean {
  while (from < to && isOws(b[from]!)) from++;
  while (to > from && isOws(b[to - 1]!)) to--;
  const at = to - 7;
  if (at < from || !lowerEqBytes(b, at, 'chunked')) return false;
  return at === from || b[at - 1] === 44 || (b[at - 1] === 32 && at - 1 > from && b[at - 2] === 44);
}

/** True when a comma-separated list holds the token `close` (any case). */
function hasCloseToken(b: Uint8Array, from: number, to: number): boolean {
  let i = from;
  while (i < to) {
    let e = i;
    while (e < to && b[e] !== 44) e++;
    let s = i;
    let t = e;
    while (s < t && isSpace(b[s]!)) s++;
    while (t > s && isSpace(b[t - 1]!)) t--;
    if (t - s === 5 && lowerEqBytes(b, s, 'close')) return true;
    i = e + 1;
  }
  return false;
}

/** What `\s` matched here before: SP, HTAB, VT, FF (CR and LF cannot occur in a line). */
function isSpace(c: number): boolean {
  return c === 32 || (c >= 9 && c <= 13);
}
