import { connect } from 'node:net';

export type RespValue = string | number | null | RespValue[];

/** An ACL user of the server and its password. */
export interface RedisLogin {
  user: string;
  password: string;
}

/**
 * Sends one command to a Redis server and answers its reply: the few
 * administrative commands the Redis appliance needs (SAVE, CONFIG SET,
 * INFO), so it does not depend on redis-cli. Error replies reject.
 */
export function redisCommand(port: number, login: RedisLogin, args: readonly string[], timeoutMs = 30_000): Promise<RespValue> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let replies = 0;
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`redis ${args[0]}: no answer within ${timeoutMs} ms`)));
    socket.once('error', reject);
    socket.write(encode(['AUTH', login.user, login.password]) + encode(args));
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      for (;;) {
        const parsed = parse(buf, 0);
        if (!parsed) return;
        buf = buf.subarray(parsed.end);
        replies++;
        if (parsed.value instanceof Error) {
          socket.destroy();
          reject(new Error(`redis ${replies === 1 ? 'AUTH' : args[0]}: ${parsed.value.message}`));
          return;
        }
        if (replies === 2) {
          socket.end();
          resolve(parsed.value);
          return;
        }
      }
    });
  });
}

function encode(args: readonly string[]): string {
  let s = `*${args.length}\r\n`;
  for (const a of args) s += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
  return s;
}

type Parsed = { value: RespValue | Error; end: number } | null;

function parse(buf: Buffer, at: number): Parsed {
  const eol = buf.indexOf('\r\n', at);
  if (eol < 0) return null;
  const line = buf.toString('utf8', at + 1, eol);
  const next = eol + 2;
  switch (String.fromCharCode(buf[at]!)) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new Error(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (buf.length < next + n + 2) return null;
      return { value: buf.toString('utf8', next, next + n), end: next + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const items: RespValue[] = [];
      let end = next;
      for (let i = 0; i < n; i++) {
        const item = parse(buf, end);
        if (!item) return null;
        if (item.value instanceof Error) return item;
        items.push(item.value);
        end = item.end;
      }
      return { value: items, end };
    }
    default:
      return { value: new Error(`unexpected reply '${line.slice(0, 40)}'`), end: buf.length };
  }
}
