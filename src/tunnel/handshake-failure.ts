/**
 * Turns OpenSSL's handshake errors into what an operator or a developer can
 * act on. The raw reason stays in parentheses for searching.
 *
 * @example
 * describeHandshakeFailure(err) // 'wrong key (binder does not verify)'
 */
export function describeHandshakeFailure(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ECONNRESET') return 'connection reset during the handshake';
  const reason = /:SSL routines:[^:]*:([^:]+):/.exec(err.message)?.[1] ?? err.message;
  const meaning = MEANINGS.find(([re]) => re.test(reason))?.[1];
  return meaning ? `${meaning} (${reason})` : reason;
}

// Server side: what the endpoint saw. Client side: the alert the server sent.
const MEANINGS: [RegExp, string][] = [
  [/binder does not verify|bad record mac|decrypt error|illegal parameter/, 'wrong key'],
  [/no suitable signature algorithm|handshake failure|no shared cipher/, 'unknown identity, or no PSK cipher in common'],
  [/wrong version number|http request|unknown protocol|packet length too long|record layer failure/, 'not a TLS client'],
  [/disconnected before secure TLS connection/, 'the server closed the connection during the handshake'],
];
