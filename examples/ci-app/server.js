// A small app with its own unit tests exposed at /tests: TAP by default, ?format=junit or ?format=json.
// `eph ci run examples/ci-app --test http:/tests` publishes it, asks /tests and reads the answer.
import { createServer } from 'node:http';
import { total } from './lib.js';
import { asJunit, asTap, runTests } from './tests.js';

const port = Number(process.env.PORT || 8080);

createServer((req, res) => {
  const url = new URL(req.url, 'http://app');
  if (url.pathname === '/tests') {
    const results = runTests();
    const format = url.searchParams.get('format');
    if (format === 'json') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ tests: results }));
    }
    if (format === 'junit') {
      res.writeHead(200, { 'content-type': 'application/xml' });
      return res.end(asJunit(results));
    }
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    return res.end(asTap(results));
  }
  if (url.pathname === '/health') {
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end('{"ok":true}');
  }
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(`ci-app: the total of 1, 2 and 3 is ${total([1, 2, 3])}\n`);
}).listen(port, () => console.log(`ci-app listening on ${port}`));
