/**
 * The gate under benchmark, in its own process (as it runs in production, and
 * so that it does not share an event loop with the benchmark driver). Routes
 * one host to the app given by APP_PORT.
 */
import { createGate } from '../../src/gate/gate.ts';
import { RoutingTable } from '../../src/gate/routing-table.ts';

const host = process.env.GATE_HOST ?? 'eph-00000001.eph.localhost';
const up = { host: '127.0.0.1', port: Number(process.env.APP_PORT) };
const table = new RoutingTable();
table.set(host, [{ hostname: host, weight: 1 }]);
const gate = createGate({
  table,
  backend: { upstream: () => up, wake: async () => up, touch: () => {} },
  wakeHtmlAfterMs: 0,
});
const addr = await gate.listen('127.0.0.1', 0);
console.log(JSON.stringify({ port: addr.port }));
process.stdin.on('end', () => process.exit(0)).resume();
// A clean exit on the benchmark's SIGTERM, so that --cpu-prof gets written.
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(0));
