import { mkdir, stat } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { resolve } from 'node:path';
import { EphError } from '../core/errors.ts';

/** A data directory held by this process until close() or its end. */
export interface DataDirLock {
  close(): Promise<void>;
}

/**
 * Holds `dir` for this `eph serve` process: a second one on the same data
 * directory would run the start-up recovery and kill the first one's
 * instances, namespaces and half-written uploads.
 *
 * The lock is a listening Linux abstract unix socket named after the
 * directory's device and inode. The kernel frees it when the process ends,
 * however it ends (kill -9 included), so a stale lock cannot block the next
 * start; binding is atomic, so two starts at once cannot both win. The holder
 * answers a connection with its pid, which the refusal names. Abstract sockets
 * are per network namespace: two servers in different containers sharing one
 * volume are not detected.
 *
 * @throws EphError CONFLICT when another live process holds the directory.
 * @example
 * const lock = await lockDataDir(config.dataDir);
 * ...
 * await lock.close();
 */
export async function lockDataDir(dir: string): Promise<DataDirLock> {
  const full = resolve(dir);
  await mkdir(full, { recursive: true });
  const st = await stat(full);
  const name = `\0eph-serve-${st.dev}-${st.ino}`;
  const server = createServer((socket) => {
    socket.on('error', () => undefined);
    socket.end(`${process.pid}\n`);
  });
  try {
    await new Promise<void>((ok, fail) => {
      server.once('error', fail);
      server.listen(name, () => {
        server.off('error', fail);
        ok();
      });
    });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    const pid = await holderPid(name);
    throw new EphError('CONFLICT', `data directory ${full} is in use by another eph serve${pid ? ` (pid ${pid})` : ''}: stop it first, or give this one another --data`);
  }
  // The lock must not keep the process alive, nor fail it later.
  server.unref();
  server.on('error', () => undefined);
  return {
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/** The pid the holder of `name` answers with; null if it does not answer within 2 s. */
function holderPid(name: string): Promise<number | null> {
  return new Promise((done) => {
    let text = '';
    const socket = connect(name);
    const finish = (pid: number | null): void => {
      clearTimeout(timer);
      socket.destroy();
      done(pid);
    };
    const timer = setTimeout(() => finish(null), 2000);
    socket.on('data', (c: Buffer) => (text += c.toString()));
    socket.on('end', () => finish(/^\d+\n$/.test(text) ? Number(text) : null));
    socket.on('error', () => finish(null));
  });
}
