/** An uploaded certificate of a gate domain, as stored. */
export interface StoredCert {
  /** Normalised domain the certificate is served for: `www.example.org` or a wildcard `*.example.org`. */
  domain: string;
  userId: string;
  /** PEM chain, leaf first. */
  cert: string;
  /** PEM private key of the leaf. */
  key: string;
  /** Expiry of the leaf, epoch milliseconds. */
  notAfter: number;
  updatedAt: number;
  /** `acme` when the cloud obtained it (automatic HTTPS); absent or `uploaded` for a user's upload. */
  source?: 'uploaded' | 'acme';
}

/**
 * Where uploaded gate certificates live. The SQLite and PostgreSQL stores
 * implement it (test/store/store.conformance.ts checks both).
 */
export interface CertStore {
  /** Inserts or replaces the certificate of `cert.domain`. */
  putCert(cert: StoredCert): Promise<void>;
  getCert(domain: string): Promise<StoredCert | null>;
  /** Every certificate, or only `userId`'s, ordered by domain. */
  listCerts(userId?: string): Promise<StoredCert[]>;
  deleteCert(domain: string): Promise<void>;
}
