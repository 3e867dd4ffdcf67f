import { randomBytes } from 'node:crypto';

/** `eph-` + 8 lowercase hex, as the original cloud names instances. */
export function newInstanceLabel(): string {
  return `eph-${randomBytes(4).toString('hex')}`;
}

export function newUserId(): string {
  return randomBytes(8).toString('hex');
}

export function newToken(): string {
  return randomBytes(24).toString('base64url');
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * Lower-cases, drops a trailing dot and a port; returns null when the result
 * is not a well-formed DNS name (RFC 1123 labels).
 */
export function normalizeHost(raw: string): string | null {
  let h = raw.trim().toLowerCase();
  if (h.startsWith('[')) return null;
  const colon = h.indexOf(':');
  if (colon >= 0) {
    const port = h.slice(colon + 1);
    if (!/^\d{0,5}$/.test(port)) return null;
    h = h.slice(0, colon);
  }
  if (h.endsWith('.')) h = h.slice(0, -1);
  if (h.length === 0 || h.length > 253) return null;
  for (const label of h.split('.')) if (!LABEL.test(label)) return null;
  return h;
}

export function isInstanceHostname(host: string, domain: string): boolean {
  return host.length === 13 + domain.length && host.endsWith(`.${domain}`) && /^eph-[0-9a-f]{8}\./.test(host);
}
