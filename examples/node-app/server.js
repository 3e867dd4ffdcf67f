// A tiny app for Ephemeric: listens on $PORT (the cloud sets 8080) and
// answers every path with a greeting; /health is what a gate health check asks.
import { createServer } from 'node:http';

const port = Number(process.env.PORT || 8080);

const server = createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: true, pid: process.pid }));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
  res.end('hello from node-app\n');
});

server.listen(port, () => console.log(`node-app listening on ${port}`));

// Instances are stopped with SIGTERM when idle: close cleanly.
process.on('SIGTERM', () => server.close(() => process.exit(0)));
