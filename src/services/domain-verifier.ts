import { createHmac, randomBytes } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { EphError } from '../core/errors.ts';

/** The one resolver method verification needs (node:dns's `promises.Resolver` has it). */
export interface TxtResolver {
  resolveTxt(name: string): Promise<string[][]>;
}

/** What a tenant publishes to prove a domain. */
export interface VerificationRecord {
  domain: string;
  /** `_ephemeric.<domain>` */
  record: string;
  type: 'TXT';
  value: string;
}

/** DNS answers that mean "no such record" rather than "DNS is failing". */
const ABSENT = new Set(['ENOTFOUND', 'ENODATA', 'NXDOMAIN', 'ENONAME']);

/**
 * Proof of domain control by a DNS TXT record, for clouds where the operator
 * switched on `--verify-domains`: before a tenant's first claim of a domain
 * outside the cloud's, `_ephemeric.<domain>` (or the same record at a parent
 * domain, with that parent's value) must hold the token shown by the API.
 *
 * Tokens are an HMAC of the tenant and the domain under a secret of the
 * cloud: stable, nothing to store, and useless for another tenant or domain.
 *
 * @example
 * const v = new DomainVerifier({ secret, resolver: new dns.promises.Resolver() });
 * v.record(user.id, 'example.org'); // { record: '_ephemeric.example.org', value: 'eph-verify-…' }
 * await v.require(user.id, 'www.example.org'); // FORBIDDEN until the record is published
 */
export class DomainVerifier {
  readonly #secret: Buffer;
  readonly #resolver: TxtResolver;

  constructor(deps: { secret: Buffer; resolver: TxtResolver }) {
    if (deps.secret.length < 16) throw new EphError('INVALID_CONFIG', 'domain verification secret: expected at least 16 bytes');
    this.#secret = deps.secret;
    this.#resolver = deps.resolver;
  }

  /** The record proving `userId` controls `domain` (a normalised name). */
  record(userId: string, domain: string): VerificationRecord {
    const mac = createHmac('sha256', this.#secret).update(`${userId}\n${domain}`).digest('base64url').slice(0, 32);
    return { domain, record: `_ephemeric.${domain}`, type: 'TXT', value: `eph-verify-${mac}` };
  }

  /**
   * Whether the record of `domain` or of one of its parents (down to two
   * labels: a top-level domain proves nothing) carries the tenant's value.
   * UNAVAILABLE when DNS itself fails: a retry may pass.
   */
  async verified(userId: string, domain: string): Promise<boolean> {
    const labels = domain.split('.');
    for (let i = 0; i <= labels.length - 2; i++) {
      const d = labels.slice(i).join('.');
      const want = this.record(userId, d);
      let answers: string[][];
      try {
        answers = await this.#resolver.resolveTxt(want.record);
      } catch (e) {
        if (ABSENT.has((e as NodeJS.ErrnoException).code ?? '')) continue;
        throw new EphError('UNAVAILABLE', `cannot look up ${want.record} TXT (${(e as Error).message}); try again`, { retryAfter: 30 });
      }
      // A TXT record may come split in 255-byte strings: joined, they are one value.
      if (answers.some((chunks) => chunks.join('') === want.value)) return true;
    }
    return false;
  }

  /** FORBIDDEN, naming the record to publish, unless {@link verified}. */
  async require(userId: string, domain: string): Promise<void> {
    if (await this.verified(userId, domain)) return;
    const r = this.record(userId, domain);
    throw new EphError(
      'FORBIDDEN',
      `${domain} is not verified: publish a DNS TXT record ${r.record} with the value ${r.value} (GET /v1/names/${domain}/verification shows it), then retry`,
    );
  }
}

/** The cloud's verification secret, created (0600) in the data directory on first use. */
export async function loadVerifySecret(file: string): Promise<Buffer> {
  try {
    const s = await readFile(file);
    if (s.length >= 16) return s;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const s = randomBytes(32);
  await writeFile(file, s, { mode: 0o600, flag: 'w' });
  await chmod(file, 0o600);
  return s;
}
