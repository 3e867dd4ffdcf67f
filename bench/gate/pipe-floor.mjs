// A floor for any single-process Node proxy: each visitor connection gets its
// own connection to the app and bytes are copied both ways, with no HTTP at
// all (so it cannot route, pool or wake). What the gate cannot beat in Node.
import net from 'node:net';

const up = { host: '127.0.0.1', port: Number(process.env.APP_PORT) };
const server = net.createServer({ noDelay: true }, (client) => {
  const buf = Buffer.allocUnsafe(64 * 1024);
  const app = net.connect({
    ...up,
    noDelay: true,
    onread: { buffer: buf, callback: (n) => client.write(Buffer.from(buf.subarray(0, n))) },
  });
  client.on('data', (d) => app.write(d));
  client.on('close', () => app.destroy());
  app.on('close', () => client.destroy());
  client.on('error', () => {});
  app.on('error', () => {});
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));
process.stdin.on('end', () => process.exit(0)).resume();
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
