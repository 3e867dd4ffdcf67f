import { randomBytes } from 'node:crypto';
import { EphError } from '../core/errors.ts';

/** stunnel refuses keys shorter than this many bytes (after hex decoding). */
export const MIN_PSK_KEY_BYTES = 16;
/** Longest identity accepted: the PSK_MAX_IDENTITY_LEN of older OpenSSL releases, so any peer takes it. */
export const MAX_PSK_IDENTITY_BYTES = 128;

const HEX = /^[0-9a-fA-F]+$/;
// Identities travel in the clear in the handshake and end up in logs and
// file names: keep them to printable ASCII without separators.
const IDENTITY = /^[\x21-\x39\x3b-\x7e]+$/;

/**
 * The bytes a PSK key stands for, exactly as stunnel reads psk.txt: a key
 * written in hexadecimal (even length) is binary, any other key is its UTF-8
 * bytes. Every TLS peer in this project derives keys here, so that our
 * endpoint, our client and stunnel agree (a mismatch shows as "binder does
 * not verify" or "bad record mac").
 *
 * @example
 * pskKeyBytes('00112233445566778899aabbccddeeff').length // 16
 * pskKeyBytes('correct horse battery').length // 21
 */
export function pskKeyBytes(key: string): Buffer {
  return key.length % 2 === 0 && HEX.test(key) ? Buffer.from(key, 'hex') : Buffer.from(key, 'utf8');
}

/** Why `identity` cannot be used, or null when it can. */
function identityProblem(identity: string): string | null {
  if (identity === '') return 'empty identity before ":"';
  if (Buffer.byteLength(identity) > MAX_PSK_IDENTITY_BYTES) {
    return `identity is longer than ${MAX_PSK_IDENTITY_BYTES} bytes`;
  }
  if (!IDENTITY.test(identity)) return `identity "${identity}" may only hold printable ASCII without spaces or ":"`;
  return null;
}

/** Why `key` cannot be used, or null when it can. */
function keyProblem(key: string): string | null {
  if (key === '' || /[\x00-\x1f\x7f]/.test(key)) {
    return `expected IDENTITY:KEY with a key of at least ${MIN_PSK_KEY_BYTES} characters`;
  }
  // stunnel would silently make the space part of the key: "id: secret" is
  // almost always a typo for "id:secret", so refuse it rather than guess.
  if (key.trim() !== key) return 'the key starts or ends with a space';
  const bytes = pskKeyBytes(key).length;
  if (bytes < MIN_PSK_KEY_BYTES) {
    const hex = key.length % 2 === 0 && HEX.test(key);
    return hex
      ? `the key is ${bytes} bytes written in hexadecimal; at least ${MIN_PSK_KEY_BYTES} bytes (${MIN_PSK_KEY_BYTES * 2} hex digits) are needed`
      : `expected IDENTITY:KEY with a key of at least ${MIN_PSK_KEY_BYTES} characters`;
  }
  return null;
}

/**
 * Reads a stunnel `psk.txt`: one `IDENTITY:KEY` per line (split at the first
 * colon), keys of at least 16 bytes (hex keys count their decoded bytes).
 * Blank lines and `#` comments are accepted here for convenience, although
 * stunnel itself does not accept comments; {@link formatPskFile} never writes
 * them. Keys are returned as written; use {@link pskKeyBytes} for their bytes.
 *
 * @throws EphError INVALID_VALUE naming the line, e.g.
 *   `psk.txt line 3: expected IDENTITY:KEY with a key of at least 16 characters`
 * @example
 * parsePskFile('alice:0123456789abcdef0123456789abcdef\n').get('alice')
 */
export function parsePskFile(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const firstLine = new Map<string, number>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const n = i + 1;
    // Files edited on Windows end lines with CRLF; stunnel would keep the CR.
    const line = lines[i]!.replace(/\r$/, '');
    if (line.trim() === '' || line.trimStart().startsWith('#')) continue;
    const colon = line.indexOf(':');
    if (colon < 0) throw bad(n, `expected IDENTITY:KEY with a key of at least ${MIN_PSK_KEY_BYTES} characters`);
    const identity = line.slice(0, colon);
    const key = line.slice(colon + 1);
    const problem = identityProblem(identity) ?? keyProblem(key);
    if (problem) throw bad(n, problem);
    const first = firstLine.get(identity);
    if (first !== undefined) throw bad(n, `duplicate identity "${identity}" (first on line ${first})`);
    firstLine.set(identity, n);
    out.set(identity, key);
  }
  if (out.size === 0) throw new EphError('INVALID_VALUE', 'psk.txt: no IDENTITY:KEY line');
  return out;
}

function bad(line: number, why: string): EphError {
  return new EphError('INVALID_VALUE', `psk.txt line ${line}: ${why}`);
}

/**
 * Writes identities back as a psk.txt that stunnel reads (no comments).
 * Validates like {@link parsePskFile}, so it never writes a file stunnel refuses.
 */
export function formatPskFile(identities: ReadonlyMap<string, string> | Readonly<Record<string, string>>): string {
  const entries = identities instanceof Map ? [...identities] : Object.entries(identities);
  if (entries.length === 0) throw new EphError('INVALID_VALUE', 'psk.txt: no IDENTITY:KEY line');
  let text = '';
  entries.forEach(([identity, key], i) => {
    const problem = identityProblem(identity) ?? keyProblem(key);
    if (problem) throw bad(i + 1, problem);
    text += `${identity}:${key}\n`;
  });
  return text;
}

/** A new random key: 32 bytes written as 64 hex digits (stunnel reads it as binary). */
export function generatePskKey(): string {
  return randomBytes(32).toString('hex');
}

/**
 * A new psk.txt line `IDENTITY:KEY` with a random key.
 *
 * @example
 * generatePsk('laptop') // 'laptop:3f9c…' (64 hex digits)
 */
export function generatePsk(identity: string): string {
  const problem = identityProblem(identity);
  if (problem) throw new EphError('INVALID_VALUE', `PSK identity: ${problem}`);
  return `${identity}:${generatePskKey()}`;
}

/**
 * The identity and key a client tunnel uses: `wanted` when given, otherwise
 * the first identity of the file (what stunnel's client does without
 * `PSKidentity`).
 */
export function choosePskIdentity(
  identities: ReadonlyMap<string, string>,
  wanted?: string,
): { identity: string; key: string } {
  if (wanted !== undefined) {
    const key = identities.get(wanted);
    if (key === undefined) throw new EphError('INVALID_VALUE', `psk.txt has no identity "${wanted}"`);
    return { identity: wanted, key };
  }
  const first = identities.entries().next();
  if (first.done) throw new EphError('INVALID_VALUE', 'psk.txt: no IDENTITY:KEY line');
  return { identity: first.value[0], key: first.value[1] };
}
