import { isIP } from 'node:net';
import { EphError } from '../core/errors.ts';
import { normalizeHost } from '../core/ids.ts';

/**
 * The one spelling of a public name used in every comparison: lower case,
 * no trailing dot, no port. Null when `raw` is not a well-formed DNS name.
 * Wildcards (`*.example.org`) keep their `*.` prefix.
 */
export function normalizeName(raw: unknown): string | null {
  if (typeof raw !== 'string') return null;
  const t = raw.trim();
  if (t.startsWith('*.')) {
    const rest = normalizeHost(t.slice(2));
    return rest && !t.slice(2).includes(':') ? `*.${rest}` : null;
  }
  if (t.includes(':')) return null; // a port or an IPv6 literal: never a public name
  return normalizeHost(t);
}

/** True for `[::1]`, `::1`, `127.0.0.1`, `10.1`, `0x7f.1`: anything a resolver could read as an address. */
export function isIpLiteral(raw: string): boolean {
  const t = raw.trim().replace(/\.$/, '');
  const bare = t.startsWith('[') && t.endsWith(']') ? t.slice(1, -1) : t;
  if (isIP(bare) !== 0) return true;
  // inet_aton forms (127.1, 2130706433, 0x7f.0.0.1): no DNS top-level label is all digits or hex-with-0x.
  const last = bare.split('.').pop() ?? '';
  return /^(\d+|0x[0-9a-f]+)$/i.test(last);
}

/** `localhost` and every name under it (RFC 6761: they always mean this machine). */
export function isLocalhostName(name: string): boolean {
  return name === 'localhost' || name.endsWith('.localhost');
}

/** True when `name` is `domain` itself or under it. */
export function isUnder(name: string, domain: string): boolean {
  return name === domain || name.endsWith(`.${domain}`);
}

/** The parent of a name one label up (`www.example.org` → `example.org`), or null for a single label. */
export function parentOf(name: string): string | null {
  const dot = name.indexOf('.');
  return dot > 0 ? name.slice(dot + 1) : null;
}

/**
 * Checks a name a tenant wants to claim (alias, gate domain, certificate
 * domain) and answers its normalised spelling. Refusals, the same for every
 * API because every claim comes through here:
 * - 400 INVALID_HOSTNAME: not a DNS name, an IP literal (v4 or v6, bracketed
 *   or not), `localhost` or a name under it (outside the cloud's domain);
 * - 409 CONFLICT: the cloud's own domain or a name under it: the platform
 *   owns them (instance hostnames, static sites, future platform names).
 */
export function checkClaimableName(raw: unknown, cloudDomain: string, what = 'name'): string {
  const shown = typeof raw === 'string' ? raw : String(raw);
  if (typeof raw === 'string' && isIpLiteral(raw.startsWith('*.') ? raw.slice(2) : raw)) {
    throw new EphError('INVALID_HOSTNAME', `${what} '${shown}' is an IP address; only DNS names can be routed`);
  }
  const name = normalizeName(raw);
  if (!name) throw new EphError('INVALID_HOSTNAME', `${what} '${shown}' is not a valid DNS name`);
  const bare = name.startsWith('*.') ? name.slice(2) : name;
  const cloud = cloudDomain.toLowerCase().replace(/\.$/, '');
  if (isUnder(bare, cloud)) {
    const kind = bare === cloud ? "is the cloud's own domain" : `is under the cloud's domain ${cloud} (instance hostnames and static sites)`;
    throw new EphError('CONFLICT', `${what} ${name} ${kind}; names there belong to the platform`);
  }
  if (isLocalhostName(bare)) throw new EphError('INVALID_HOSTNAME', `${what} ${name}: localhost names always mean the visitor's own machine`);
  return name;
}
