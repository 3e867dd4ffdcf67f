import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * A loopback TCP port that is free right now and not in `taken` (ports
 * recorded for stopped appliances, which nothing holds at the moment).
 */
export async function freeLoopbackPort(taken: ReadonlySet<number> = new Set()): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    if (!taken.has(port)) return port;
  }
  throw new Error('no free loopback port found');
}

/** True when `port` can be bound on `host` right now. */
export function portIsFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}
