import type { StoredCert } from '../store/cert-store.ts';

/** Where a domain's automatic certificate stands. */
export type AcmeStatus = 'pending' | 'valid' | 'failed' | 'renewing';

/** A domain whose certificate the cloud obtains and renews from the ACME directory. */
export interface AcmeDomain {
  /** Normalised domain (never a wildcard: HTTP-01 cannot prove one). */
  domain: string;
  /** The tenant who asked; the certificate is served only while they hold the domain. */
  userId: string;
  status: AcmeStatus;
  /** The last order's failure as the ACME server (or the network) told it; null after a success. */
  lastError: string | null;
  /** Failed orders in a row: the retry backoff doubles with each. */
  failures: number;
  /** When the next order is due (renewal or retry), epoch milliseconds. */
  nextAt: number;
  updatedAt: number;
}

/** An HTTP-01 answer the gate serves at /.well-known/acme-challenge/<token>. */
export interface AcmeChallenge {
  token: string;
  keyAuthorization: string;
  /** Dropped after this even when the order never finished (a crash mid-order). */
  expiresAt: number;
}

/** The cloud's account at one ACME directory, its key sealed by the cloud's secret box. */
export interface AcmeAccount {
  directory: string;
  sealedKey: string;
  /** The account's URL at the directory, once registered. */
  url: string | null;
}

/**
 * Durable state of automatic HTTPS; part of Store (SQLite and PostgreSQL).
 * Challenges are in the store so that any replica's gate can answer them.
 */
export interface AcmeStore {
  putAcmeDomain(d: AcmeDomain): Promise<void>;
  getAcmeDomain(domain: string): Promise<AcmeDomain | null>;
  /** Every automatic domain, or only `userId`'s, ordered by domain. */
  listAcmeDomains(userId?: string): Promise<AcmeDomain[]>;
  deleteAcmeDomain(domain: string): Promise<void>;
  /**
   * Installs an issued certificate and the domain's new state in one
   * transaction: a crash leaves either the old pair or the new one, never a
   * certificate without its status.
   */
  saveAcmeIssued(cert: StoredCert, d: AcmeDomain): Promise<void>;
  putAcmeChallenge(c: AcmeChallenge): Promise<void>;
  getAcmeChallenge(token: string): Promise<AcmeChallenge | null>;
  /** Deletes `token`'s challenge, and every challenge expired at `now`. */
  deleteAcmeChallenge(token: string, now: number): Promise<void>;
  getAcmeAccount(directory: string): Promise<AcmeAccount | null>;
  putAcmeAccount(a: AcmeAccount): Promise<void>;
}
