import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { H1, H2, readUntil, startApp, startGate, type App, type TestGate } from './gate.fixtures.ts';

let a: App;
let b: App;
let g: TestGate;
const WWW = 'www.example.test';

before(async () => {
  a = await startApp((_req, res) => res.end('from-a'));
  b = await startApp((_req, res) => res.end('from-b'));
  g = await startGate({}, [H1, H2]);
  g.backend.running.set(H1, a.upstream);
  g.backend.running.set(H2, b.upstream);
  g.table.set(WWW, [{ hostname: H1, weight: 1 }]);
});

after(async () => {
  await g.gate.close(1000);
  await a.close();
  await b.close();
});

test('one keep-alive connection follows a route switch and a change of Host between its requests', async () => {
  const sock = connect(g.port, '127.0.0.1');
  await once(sock, 'connect');
  // One request, then its whole answer (framed by Content-Length), on the same connection.
  const ask = async (host: string): Promise<string> => {
    sock.write(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    const t = await readUntil(sock, (x) => {
      const len = /content-length: (\d+)\r\n/i.exec(x);
      const end = x.indexOf('\r\n\r\n');
      return len !== null && end >= 0 && x.length >= end + 4 + Number(len[1]);
    });
    return t;
  };
  assert.match(await ask(WWW), /from-a$/);
  g.table.set(WWW, [{ hostname: H2, weight: 1 }]);
  assert.match(await ask(WWW), /from-b$/, 'the switch applies to the next request on the same connection');
  assert.match(await ask(H1), /from-a$/, 'another Host on the same connection');
  g.table.delete(WWW);
  assert.match(await ask(WWW), /^HTTP\/1\.1 404 /, 'an unmapped domain');
  sock.destroy();
});

test('activeCount is 0 again once the request is answered', async () => {
  const sock = connect(g.port, '127.0.0.1');
  await once(sock, 'connect');
  sock.resume();
  sock.write(`GET / HTTP/1.1\r\nHost: ${H1}\r\nConnection: close\r\n\r\n`);
  await once(sock, 'close');
  assert.equal(g.gate.activeCount(H1), 0);
});
