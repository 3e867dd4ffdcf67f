/**
 * Cipher suites every TLS-PSK peer of ours offers. TLS 1.3 suites come first,
 * AES-128-GCM before ChaCha20 (hardware AES is the faster of the two on
 * servers). Only SHA-256 suites work in TLS 1.3 with an external PSK set
 * through OpenSSL's PSK callbacks, hence no TLS_AES_256_GCM_SHA384. The
 * TLS 1.2 PSK suites are required: with no certificate, a TLS 1.2 peer finds
 * no other suite and fails with "no suitable signature algorithm".
 */
export const PSK_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-PSK-CHACHA20-POLY1305',
  'PSK-AES128-GCM-SHA256',
  'PSK-AES256-GCM-SHA384',
  'PSK-CHACHA20-POLY1305',
].join(':');

/** A peer that has not finished its handshake by then is cut off. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
