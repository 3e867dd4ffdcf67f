/**
 * The gate's side of ACME HTTP-01: the directory fetches
 * `http://<domain>/.well-known/acme-challenge/<token>` and expects the key
 * authorization as the body (RFC 8555 §8.3). The gate answers it for any
 * host, before routing, so that no app can answer (or spoil) it.
 */

export const ACME_CHALLENGE_PREFIX = '/.well-known/acme-challenge/';

/** What the gate asks the cloud's ACME service. */
export interface AcmeChallengeAnswers {
  /** The key authorization for `token` when this process knows it; null otherwise (cheap, in memory). */
  answer(token: string): string | null;
  /** The same from the store: an order another replica started. Null when unknown. */
  lookup(token: string): Promise<string | null>;
}

/** The token of a challenge request target, or null when it is not a well-formed one (base64url, RFC 8555 §8.3). */
export function challengeToken(target: string): string | null {
  const token = target.slice(ACME_CHALLENGE_PREFIX.length);
  return /^[A-Za-z0-9_-]{1,256}$/.test(token) ? token : null;
}

/** The whole HTTP/1.1 answer: 200 with the key authorization, or 404. */
export function challengeResponse(keyAuthorization: string | null, opts: { close: boolean; head: boolean }): Buffer {
  const body = keyAuthorization ?? 'no such ACME challenge\n';
  const head =
    `HTTP/1.1 ${keyAuthorization === null ? '404 Not Found' : '200 OK'}\r\n` +
    'Content-Type: text/plain; charset=utf-8\r\n' +
    'Cache-Control: no-store\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    (opts.close ? 'Connection: close\r\n' : '') +
    '\r\n';
  return Buffer.from(opts.head ? head : head + body, 'utf8');
}
