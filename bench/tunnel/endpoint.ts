/**
 * Our TLS-PSK endpoint alone in its own process, for bench/tunnel/run.ts
 * (so that it does not share a CPU thread with the load generator, as
 * stunnel does not). Prints `{"port":N}` once listening.
 *
 *   node bin/run-ts.js bench/tunnel/endpoint.ts TARGET_PORT IDENTITY KEY
 */
import { startPskEndpoint } from '../../src/tunnel/psk-server.ts';

const [targetPort, identity, key] = process.argv.slice(2);
if (!targetPort || !identity || !key) {
  console.error('usage: endpoint.ts TARGET_PORT IDENTITY KEY');
  process.exit(2);
}
const identities = new Map([[identity, key]]);
const endpoint = await startPskEndpoint({
  listen: { host: '127.0.0.1', port: 0 },
  target: { host: '127.0.0.1', port: Number(targetPort) },
  identities: () => identities,
});
process.stdout.write(`${JSON.stringify({ port: endpoint.address.port })}\n`);
process.on('SIGTERM', () => void endpoint.close().then(() => process.exit(0)));
// The parent going away closes stdin: do not outlive it.
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
