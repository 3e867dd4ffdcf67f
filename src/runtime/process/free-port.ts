import { createServer } from 'node:net';

/**
 * A TCP port on 127.0.0.1 that was free a moment ago, not in `avoid`. The
 * kernel picks it; another process could take it before the app binds, which
 * shows up as the app failing to listen (and so as a failed start).
 */
export async function freeLoopbackPort(avoid: ReadonlySet<number>): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const addr = s.address();
        const p = typeof addr === 'object' && addr ? addr.port : 0;
        s.close(() => resolve(p));
      });
    });
    if (port > 0 && !avoid.has(port)) return port;
  }
  throw new Error('could not find a free loopback port');
}
