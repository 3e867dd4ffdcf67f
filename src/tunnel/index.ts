/**
 * TLS-PSK tunnels (issue 5): psk.txt, the endpoint in front of each
 * appliance, the client tunnel behind `eph tunnel`, and stunnel.conf.
 */
export {
  MAX_PSK_IDENTITY_BYTES,
  MIN_PSK_KEY_BYTES,
  choosePskIdentity,
  formatPskFile,
  generatePsk,
  generatePskKey,
  parsePskFile,
  pskKeyBytes,
} from './psk-file.ts';
export { startPskEndpoint } from './psk-server.ts';
export type { PskConnectionInfo, PskEndpoint, PskEndpointOptions } from './psk-server.ts';
export { startPskClient } from './psk-client.ts';
export type { PskClient, PskClientOptions } from './psk-client.ts';
export { clientStunnelConf, parseStunnelConf } from './stunnel-conf.ts';
export type { ClientStunnelConfOptions, StunnelConf, StunnelSection } from './stunnel-conf.ts';
export { findStunnel } from './stunnel-binary.ts';
export { PSK_CIPHERS } from './tls-psk-options.ts';
