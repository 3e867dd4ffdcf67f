import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RequestHead, ResponseHead, parseRequestHead, parseResponseHead, parseResponseHeadBytes } from '../../src/gate/http-parse.ts';

const H = 'Host: a.test\r\n';

test('request heads: what is accepted and the status of what is not', () => {
  const cases: Array<[string, string, number]> = [
    ['plain GET', `GET / HTTP/1.1\r\n${H}\r\n`, 0],
    ['HTAB and obs-text in a value', `GET / HTTP/1.1\r\n${H}X-A: a\tb\xe9\r\n\r\n`, 0],
    ['OPTIONS *', `OPTIONS * HTTP/1.1\r\n${H}\r\n`, 0],
    ['* with another method', `GET * HTTP/1.1\r\n${H}\r\n`, 400],
    ['an extension method', `PURGE /x HTTP/1.1\r\n${H}\r\n`, 0],
    ['HTTP/2.0', `GET / HTTP/2.0\r\n${H}\r\n`, 505],
    ['HTTP/2.0 with a bad target', `GET /\x7f HTTP/2.0\r\n${H}\r\n`, 400],
    ['HTTP/1.10', `GET / HTTP/1.10\r\n${H}\r\n`, 400],
    ['two spaces after the method', `GET  / HTTP/1.1\r\n${H}\r\n`, 400],
    ['no target', `GET HTTP/1.1\r\n${H}\r\n`, 400],
    ['a tab in the method', `G\tT / HTTP/1.1\r\n${H}\r\n`, 400],
    ['obs-text in the target', `GET /\xe9 HTTP/1.1\r\n${H}\r\n`, 400],
    ['DEL in a value', `GET / HTTP/1.1\r\n${H}X-A: a\x7fb\r\n\r\n`, 400],
    ['bare LF in a value', `GET / HTTP/1.1\r\n${H}X-A: a\nb\r\n\r\n`, 400],
    ['a control character in the request line', `GET /\x01 HTTP/1.1\r\n${H}\r\n`, 400],
    ['empty header name', `GET / HTTP/1.1\r\n${H}: x\r\n\r\n`, 400],
    ['CONNECT', `CONNECT a.test:443 HTTP/1.1\r\n${H}\r\n`, 400],
  ];
  const rh = new RequestHead();
  for (const [name, h, status] of cases) {
    assert.equal(parseRequestHead(h, rh), status === 0, name);
    assert.equal(rh.error, status, name);
  }
});

test('request heads: methods, Connection tokens in any case', () => {
  const rh = new RequestHead();
  for (const m of ['GET', 'POST', 'HEAD', 'PUT', 'DELETE']) {
    assert.equal(parseRequestHead(`${m} /p HTTP/1.1\r\n${H}\r\n`, rh), true);
    assert.equal(rh.method, m);
    assert.equal(rh.target, '/p');
  }
  assert.equal(parseRequestHead(`GET / HTTP/1.1\r\n${H}Connection: CLOSE\r\n\r\n`, rh), true);
  assert.equal(rh.connClose, true);
  assert.equal(parseRequestHead(`GET / HTTP/1.1\r\n${H}Connection: Keep-Alive\r\n\r\n`, rh), true);
  assert.equal(rh.connKeepAlive && !rh.connClose, true);
  assert.equal(parseRequestHead(`GET / HTTP/1.1\r\n${H}Connection: upgrade, Close\r\nUpgrade: websocket\r\n\r\n`, rh), true);
  assert.equal(rh.connUpgrade && rh.connClose, true);
  assert.equal(rh.host, 'a.test');
});

test('response heads: framing read from the bytes where they landed', () => {
  const rs = new ResponseHead();
  const parse = (h: string): boolean => parseResponseHead(h, rs);
  assert.equal(parse('HTTP/1.1 200 OK\r\nContent-Length:  7 \r\n\r\n'), true);
  assert.equal(rs.contentLength, 7);
  assert.equal(parse('HTTP/1.1 200 OK\r\nContent-Length: 7a\r\n\r\n'), false);
  assert.equal(parse('HTTP/1.1 200 OK\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n'), true, 'equal duplicates are fine');
  assert.equal(parse('HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456\r\n\r\n'), false);
  assert.equal(parse('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n'), true);
  assert.equal(rs.chunked && !rs.connClose, true);
  assert.equal(parse('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip,Chunked\r\n\r\n'), true);
  assert.equal(rs.chunked, true);
  assert.equal(parse('HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n'), true);
  assert.equal(rs.chunked || !rs.connClose, false, 'not chunked: close-delimited');
  assert.equal(parse('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n'), true);
  assert.equal(rs.connClose && !rs.chunked, true);
  assert.equal(parse('HTTP/1.1 200 OK\r\nConnection: keep-alive , CLOSE\r\nKeep-Alive: timeout=5\r\n\r\n'), true);
  assert.equal(rs.connClose, true);
  assert.deepEqual(rs.drop, [17, 49, 49, 72], 'Connection and Keep-Alive lines');
  assert.equal(parse('HTTP/1.1 200 OK\r\nConnection: closed\r\n\r\n'), true);
  assert.equal(rs.connClose, false);
  assert.equal(parse('HTTP/1.0 101 Switching\r\n\r\n'), true);
  assert.equal(rs.status === 101 && rs.minor === 0, true);
  assert.equal(parse('HTTP/1.1 1e2 Odd\r\n\r\n'), false);
  assert.equal(parse('HTTP/1.1 099 Low\r\n\r\n'), false);
  assert.equal(parse('HTTP/1.1 200 OK\r\nNoColon\r\n\r\n'), false);
  assert.equal(parse('HTTP/1.1 200\r\n\r\n'), true, 'no reason phrase');
  assert.equal(parse('HTTP/1.1 20\r\n\r\n'), false);
});

test('response heads: offsets count from where the head starts in the buffer', () => {
  const rs = new ResponseHead();
  const head = 'HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n';
  const b = Buffer.from(`junk${head}tail`, 'latin1');
  assert.equal(parseResponseHeadBytes(b, 4, 4 + head.length, rs), true);
  assert.equal(rs.status, 204);
  assert.equal(rs.connClose, true);
  assert.deepEqual(rs.drop, [25, 44]);
});
