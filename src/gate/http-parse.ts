/**
 * Just enough HTTP/1.1 parsing for the gate to route and frame messages
 * (RFC 9112). The gate never rebuilds a message it does not have to: it reads
 * the head to find Host, the body framing and the hop-by-hop headers, then
 * forwards bytes. Parsing is strict because a proxy that reads framing
 * differently from the app behind it is how requests get smuggled.
 */

/** Header names are tokens (RFC 9110 §5.6.2); sticky so that it checks in place without slicing. */
const TOKEN_COLON = /[!#$%&'*+.^_`|~0-9A-Za-z-]+:/y;
const METHOD = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Any control character other than HTAB, or a CR or LF that is not part of a CRLF pair. */
const BAD_BYTES = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n/;
const DIGITS = /^\d{1,15}$/;
/** A request target: visible ASCII only (obs-text is not allowed in a URI). */
const TARGET = /^[\x21-\x7e]+$/;

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
  xff: string | null = null;
  /** Index just past the request line's CRLF. */
  headersStart = 0;
  /** [start, end) ranges of header lines the gate drops (hop-by-hop, X-Forwarded-*). */
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
    this.xff = null;
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
  for (const raw of v.split(',')) {
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
  // Bare CR or LF, NUL and other controls: each is a way to make two parsers disagree.
  if (BAD_BYTES.test(h)) return fail(rh, 400);
  const lineEnd = h.indexOf('\r\n');
  const sp1 = h.indexOf(' ');
  const sp2 = sp1 < 0 ? -1 : h.indexOf(' ', sp1 + 1);
  // A third space makes the version check below fail, so two are all that need finding.
  if (sp1 <= 0 || sp2 < 0 || sp2 >= lineEnd) return fail(rh, 400);
  const method = h.slice(0, sp1);
  if (!METHOD.test(method)) return fail(rh, 400);
  rh.method = method;
  const version = h.slice(sp2 + 1, lineEnd);
  if (version === 'HTTP/1.1') rh.minor = 1;
  else if (version === 'HTTP/1.0') rh.minor = 0;
  else if (/^HTTP\/\d\.\d$/.test(version)) return fail(rh, 505);
  else return fail(rh, 400);
  const target = h.slice(sp1 + 1, sp2);
  if (!TARGET.test(target)) return fail(rh, 400);
  if (target.charCodeAt(0) === 47 /* / */) rh.target = target;
  else if (target === '*' && method === 'OPTIONS') rh.target = target;
  else if (!parseAbsoluteTarget(rh, target)) return fail(rh, 400);
  rh.headersStart = lineEnd + 2;

  let hostCount = 0;
  let pos = lineEnd + 2;
  const end = h.length - 2;
  while (pos < end) {
    const eol = h.indexOf('\r\n', pos);
    const c0 = h.charCodeAt(pos);
    // obs-fold (RFC 9112 §5.2): a proxy must reject it or replace it; rejecting is safer.
    if (c0 === 32 || c0 === 9) return fail(rh, 400);
    TOKEN_COLON.lastIndex = pos;
    if (!TOKEN_COLON.test(h) || TOKEN_COLON.lastIndex > eol) return fail(rh, 400);
    const colon = TOKEN_COLON.lastIndex - 1;
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
        if (lowerEq(h, pos, 'x-forwarded-for')) {
          const v = trimValue(h, colon + 1, eol);
          rh.xff = rh.xff === null ? v : `${rh.xff}, ${v}`;
          rh.drop.push(pos, eol + 2);
        }
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
  /** [start, end) of Connection and Keep-Alive lines, for rewriting when the client closes. */
  drop: number[] = [];
  ok = true;

  reset(): void {
    this.contentLength = -1;
    this.chunked = false;
    this.connClose = false;
    this.drop.length = 0;
    this.ok = true;
  }
}

/** Parses a response head from an app (trusted less than a client, but still framed strictly). */
export function parseResponseHead(h: string, rs: ResponseHead): boolean {
  rs.reset();
  if (!h.startsWith('HTTP/1.') || h.charCodeAt(8) !== 32) return (rs.ok = false);
  rs.minor = h.charCodeAt(7) === 49 ? 1 : 0;
  const status = Number(h.slice(9, 12));
  if (!(status >= 100 && status <= 999)) return (rs.ok = false);
  rs.status = status;
  let pos = h.indexOf('\r\n') + 2;
  const end = h.length - 2;
  while (pos < end) {
    const eol = h.indexOf('\r\n', pos);
    const colon = h.indexOf(':', pos);
    if (colon < 0 || colon > eol) return (rs.ok = false);
    const n = colon - pos;
    if (n === 14 && lowerEq(h, pos, 'content-length')) {
      const v = trimValue(h, colon + 1, eol);
      if (!DIGITS.test(v) || (rs.contentLength !== -1 && rs.contentLength !== Number(v))) return (rs.ok = false);
      rs.contentLength = Number(v);
    } else if (n === 17 && lowerEq(h, pos, 'transfer-encoding')) {
      const v = trimValue(h, colon + 1, eol).toLowerCase();
      // A response may be close-delimited with another coding; only a final `chunked` frames it.
      if (v === 'chunked' || v.endsWith(',chunked') || v.endsWith(', chunked')) rs.chunked = true;
      else rs.connClose = true;
    } else if (n === 10 && (lowerEq(h, pos, 'connection') || lowerEq(h, pos, 'keep-alive'))) {
      if (h.charCodeAt(pos) === 99 || h.charCodeAt(pos) === 67) {
        if (/(^|,)\s*close\s*(,|$)/i.test(h.slice(colon + 1, eol))) rs.connClose = true;
      }
      rs.drop.push(pos, eol + 2);
    }
    pos = eol + 2;
  }
  if (rs.chunked) rs.contentLength = -1;
  return true;
}

// Chunked-body scanner states.
const C_SIZE = 0;
const C_EXT = 1;
const C_SIZE_LF = 2;
const C_DATA = 3;
const C_DATA_CR = 4;
const C_DATA_LF = 5;
const C_TRAILER_START = 6;
const C_TRAILER = 7;
const C_TRAILER_LF = 8;
const C_FINAL_LF = 9;

/** Chunk scanner result: the body is not finished within the given bytes. */
export const CHUNK_MORE = -1;
/** Chunk scanner result: malformed chunked framing. */
export const CHUNK_BAD = -2;

/**
 * Finds where a chunked body ends without copying it (RFC 9112 §7.1), so the
 * gate can forward the bytes as they are and still know where the next
 * message starts. Chunk sizes must be plain hex; extensions are skipped.
 */
export class ChunkScanner {
  #state = C_SIZE;
  #digits = 0;
  #size = 0;
  #remaining = 0;

  reset(): void {
    this.#state = C_SIZE;
    this.#digits = 0;
    this.#size = 0;
    this.#remaining = 0;
  }

  /** Returns the index just past the body's end, CHUNK_MORE, or CHUNK_BAD. */
  scan(b: Uint8Array, start: number, end: number): number {
    let i = start;
    let state = this.#state;
    while (i < end) {
      const c = b[i]!;
      switch (state) {
        case C_SIZE: {
          const d = c >= 48 && c <= 57 ? c - 48 : (c | 0x20) >= 97 && (c | 0x20) <= 102 ? (c | 0x20) - 87 : -1;
          if (d >= 0) {
            if (++this.#digits > 13) return this.#bad();
            this.#size = this.#size * 16 + d;
          } else if (this.#digits === 0) return this.#bad();
          else if (c === 13) state = C_SIZE_LF;
          else if (c === 59 /* ; */) state = C_EXT;
          else return this.#bad();
          i++;
          break;
        }
        case C_EXT:
          if (c === 13) state = C_SIZE_LF;
          else if (c === 10 || (c < 32 && c !== 9) || c === 127) return this.#bad();
          i++;
          break;
        case C_SIZE_LF:
          if (c !== 10) return this.#bad();
          i++;
          if (this.#size === 0) state = C_TRAILER_START;
          else {
            this.#remaining = this.#size;
            state = C_DATA;
          }
          this.#size = 0;
          this.#digits = 0;
          break;
        case C_DATA: {
          const take = Math.min(this.#remaining, end - i);
          this.#remaining -= take;
          i += take;
          if (this.#remaining === 0) state = C_DATA_CR;
          break;
        }
        case C_DATA_CR:
          if (c !== 13) return this.#bad();
          state = C_DATA_LF;
          i++;
          break;
        case C_DATA_LF:
          if (c !== 10) return this.#bad();
          state = C_SIZE;
          i++;
          break;
        case C_TRAILER_START:
          if (c === 13) state = C_FINAL_LF;
          else if (c === 10) return this.#bad();
          else state = C_TRAILER;
          i++;
          break;
        case C_TRAILER:
          if (c === 13) state = C_TRAILER_LF;
          else if (c === 10) return this.#bad();
          i++;
          break;
        case C_TRAILER_LF:
          if (c !== 10) return this.#bad();
          state = C_TRAILER_START;
          i++;
          break;
        case C_FINAL_LF:
          if (c !== 10) return this.#bad();
          this.reset();
          return i + 1;
      }
    }
    this.#state = state;
    return CHUNK_MORE;
  }

  #bad(): number {
    this.reset();
    return CHUNK_BAD;
  }
}
