import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { EphError } from '../core/errors.ts';

/** What an uploaded certificate says about itself, for listings. */
export interface CertFacts {
  notAfter: number;
  notBefore: number;
  subject: string;
  issuer: string;
  /** DNS names of the subjectAltName (the subject's CN when it has none). */
  names: string[];
}

/** Largest PEM accepted for a chain or a key: real chains are a few KiB. */
const MAX_PEM_CHARS = 64 * 1024;

/**
 * Checks an uploaded certificate chain and key for `domain` (a normalised
 * name or `*.parent`): both PEM, the leaf covers the domain, the key is the
 * leaf's, the leaf has not expired, and TLS accepts the pair. Each refusal is
 * an INVALID_VALUE (400) naming the reason.
 */
export function checkCertPair(domain: string, cert: unknown, key: unknown, now: number): CertFacts {
  const refuse = (why: string): never => {
    throw new EphError('INVALID_VALUE', `certificate for ${domain}: ${why}`);
  };
  if (typeof cert !== 'string' || !cert.includes('-----BEGIN CERTIFICATE-----')) refuse('cert must be a PEM certificate chain (-----BEGIN CERTIFICATE-----)');
  if (typeof key !== 'string' || !/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key)) refuse('key must be a PEM private key (-----BEGIN PRIVATE KEY-----)');
  const certPem = cert as string;
  const keyPem = key as string;
  if (certPem.length > MAX_PEM_CHARS || keyPem.length > MAX_PEM_CHARS) refuse(`cert and key may be at most ${MAX_PEM_CHARS} characters each`);
  if (keyPem.includes('ENCRYPTED')) refuse('the key is encrypted; upload it without a passphrase');

  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(certPem);
  } catch (e) {
    return refuse(`cert cannot be read (${(e as Error).message})`);
  }
  let pk: KeyObject;
  try {
    pk = createPrivateKey(keyPem);
  } catch (e) {
    return refuse(`key cannot be read (${(e as Error).message})`);
  }
  if (!leaf.checkPrivateKey(pk)) refuse('the key does not match the certificate');

  const names = dnsNames(leaf);
  if (!covers(leaf, names, domain)) refuse(`it does not cover ${domain} (it is for ${names.join(', ') || 'no DNS name'})`);

  const notAfter = Date.parse(leaf.validTo);
  const notBefore = Date.parse(leaf.validFrom);
  if (!(notAfter > now)) refuse(`it expired on ${new Date(notAfter).toISOString()}`);

  try {
    createSecureContext({ cert: certPem, key: keyPem });
  } catch (e) {
    refuse(`TLS refuses the pair (${(e as Error).message})`);
  }
  return { notAfter, notBefore, subject: leaf.subject.replace(/\n/g, ', '), issuer: leaf.issuer.replace(/\n/g, ', '), names };
}

/** Facts of a stored (already checked) certificate. */
export function certFacts(cert: string): CertFacts {
  const leaf = new X509Certificate(cert);
  return {
    notAfter: Date.parse(leaf.validTo),
    notBefore: Date.parse(leaf.validFrom),
    subject: leaf.subject.replace(/\n/g, ', '),
    issuer: leaf.issuer.replace(/\n/g, ', '),
    names: dnsNames(leaf),
  };
}

function dnsNames(leaf: X509Certificate): string[] {
  const san = leaf.subjectAltName;
  if (san) {
    return san
      .split(/,\s*/)
      .filter((e) => e.startsWith('DNS:'))
      .map((e) => e.slice(4).toLowerCase());
  }
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(leaf.subject);
  return cn ? [cn[1]!.toLowerCase()] : [];
}

function covers(leaf: X509Certificate, names: string[], domain: string): boolean {
  // A wildcard slot needs the same wildcard in the certificate: one exact name under it is not enough.
  if (domain.startsWith('*.')) return names.includes(domain);
  return leaf.checkHost(domain) !== undefined;
}
