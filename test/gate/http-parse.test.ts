import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CHUNK_BAD, CHUNK_MORE, ChunkScanner } from '../../src/gate/chunk-scanner.ts';
import { RequestHead, cookieValue, parseRequestHead, parseResponseHead, ResponseHead } from '../../src/gate/http-parse.ts';

const BODY = Buffer.from('4\r\nWiki\r\n5;name=v\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\nNEXT', 'latin1');
const END = BODY.length - 4;

test('the chunk scanner finds the end of a chunked body however the bytes are split', () => {
  // Whole, byte by byte, and at every two-way split.
  assert.equal(new ChunkScanner().scan(BODY, 0, BODY.length), END);
  const s = new ChunkScanner();
  let at = -1;
  for (let i = 0; i < BODY.length && at < 0; i++) {
    const r = s.scan(BODY, i, i + 1);
    if (r >= 0) at = r;
    else assert.equal(r, CHUNK_MORE);
  }
  assert.equal(at, END);
  for (let cut = 1; cut < END; cut++) {
    const sc = new ChunkScanner();
    assert.equal(sc.scan(BODY, 0, cut), CHUNK_MORE, `cut ${cut}`);
    assert.equal(sc.scan(BODY, cut, BODY.length), END, `cut ${cut}`);
  }
});

test('the chunk scanner rejects malformed framing', () => {
  for (const bad of ['g\r\n', '\r\n', '3\n', '3\r\nabcX', '0x3\r\n', ' 3\r\n', '3\r\nabc\r\r', '0\r\n\n', '0\r\nT: 1\n']) {
    assert.equal(new ChunkScanner().scan(Buffer.from(bad, 'latin1'), 0, bad.length), CHUNK_BAD, JSON.stringify(bad));
  }
});

test('the request head parser reads framing, hop-by-hop headers and the target', () => {
  const rh = new RequestHead();
  const h =
    'POST http://Example.test:81/p?q HTTP/1.1\r\nHost: other\r\nContent-Length: 12\r\nConnection: keep-alive, Upgrade\r\n' +
    'Upgrade: websocket\r\nCookie: a=1\r\nCookie: eph_route=x\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n';
  assert.equal(parseRequestHead(h, rh), true);
  assert.equal(rh.method, 'POST');
  assert.equal(rh.absoluteHost, 'Example.test:81');
  assert.equal(rh.target, '/p?q');
  assert.equal(rh.contentLength, 12);
  assert.equal(rh.connKeepAlive && rh.connUpgrade, true);
  assert.equal(rh.upgrade, 'websocket');
  assert.equal(cookieValue(rh.cookie, 'eph_route'), 'x');
  assert.equal(rh.drop.length / 2, 4, 'Host (absolute-form), Connection, Upgrade and X-Forwarded-For are dropped');
});

test('HTTP/1.0 closes by default; keep-alive keeps it open', () => {
  const rh = new RequestHead();
  assert.equal(parseRequestHead('GET / HTTP/1.0\r\nHost: a\r\n\r\n', rh), true);
  assert.equal(rh.wantsClose, true);
  assert.equal(parseRequestHead('GET / HTTP/1.0\r\nHost: a\r\nConnection: Keep-Alive\r\n\r\n', rh), true);
  assert.equal(rh.wantsClose, false);
});

test('the response head parser reads status and framing', () => {
  const rs = new ResponseHead();
  assert.equal(parseResponseHead('HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n', rs), true);
  assert.equal(rs.status, 204);
  assert.equal(rs.connClose, true);
  assert.equal(parseResponseHead('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n', rs), true);
  assert.equal(rs.chunked, true);
  assert.equal(rs.contentLength, -1, 'chunked wins over Content-Length');
  assert.equal(parseResponseHead('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n', rs), false);
  assert.equal(parseResponseHead('HTTP/2 200\r\n\r\n', rs), false);
});
