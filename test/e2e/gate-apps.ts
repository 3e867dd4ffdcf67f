/**
 * Small real apps for the gate's whole-system tests, each a Procfile archive
 * run by the real process driver (node inside the instance's sandbox).
 */
import { procfileApp } from '../helpers/cloud.ts';

/**
 * Answers `version` on every path: as an HTML page (title and <h1 id="v">)
 * when the client accepts HTML, as plain text otherwise. `status` is the
 * answer's status; `startDelayMs` delays listening (a slow-starting app).
 */
export function versionApp(version: string, opts: { status?: number; startDelayMs?: number } = {}): Promise<Buffer> {
  return procfileApp(`import { createServer } from 'node:http';
const version = ${JSON.stringify(version)};
const status = ${opts.status ?? 200};
const server = createServer((req, res) => {
  const html = String(req.headers.accept ?? '').includes('text/html');
  const body = html ? '<!doctype html><html><head><title>' + version + '</title></head><body><h1 id="v">' + version + '</h1></body></html>' : version;
  res.writeHead(status, { 'content-type': html ? 'text/html; charset=utf-8' : 'text/plain', 'content-length': Buffer.byteLength(body) });
  res.end(body);
});
setTimeout(() => server.listen(Number(process.env.PORT)), ${opts.startDelayMs ?? 0});
process.on('SIGTERM', () => process.exit(0));
`);
}

/**
 * A WebSocket echo server written against RFC 6455 with node:http alone (the
 * sandbox has no node_modules): each text message comes back as `echo:<text>`.
 * Plain GETs answer `ws-app`.
 */
export function wsEchoApp(): Promise<Buffer> {
  return procfileApp(`import { createServer } from 'node:http';
import { createHash } from 'node:crypto';
const server = createServer((_req, res) => res.end('ws-app'));
server.on('upgrade', (req, socket) => {
  const accept = createHash('sha1').update(req.headers['sec-websocket-key'] + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  socket.write('HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Accept: ' + accept + '\\r\\n\\r\\n');
  const send = (first, payload) => {
    const head = payload.length < 126 ? Buffer.from([first, payload.length]) : Buffer.from([first, 126, payload.length >> 8, payload.length & 255]);
    socket.write(Buffer.concat([head, payload]));
  };
  let buf = Buffer.alloc(0);
  socket.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (buf.length < 2) return;
      const op = buf[0] & 15;
      let len = buf[1] & 127;
      let off = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
      else if (len === 127) return socket.destroy();
      const masked = (buf[1] & 128) !== 0;
      const mask = masked ? buf.subarray(off, off + 4) : null;
      if (masked) off += 4;
      if (buf.length < off + len) return;
      const payload = Buffer.from(buf.subarray(off, off + len));
      buf = buf.subarray(off + len);
      if (mask) for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
      if (op === 8) { socket.end(Buffer.from([136, 0])); return; }
      if (op === 9) send(138, payload);
      else if (op === 1) send(129, Buffer.from('echo:' + payload.toString('utf8')));
    }
  });
  socket.on('error', () => {});
});
server.listen(Number(process.env.PORT));
process.on('SIGTERM', () => process.exit(0));
`);
}
