// How the gate frames and rewrites what it forwards, as pure functions (src/gate/decisions.ts,
// src/gate/forward-heads.ts): the response body framing (RFC 9112 §6.3), upstream reuse, when a
// response head is rewritten and into what, and the request head sent to the app.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { R_CHUNKED, R_CLOSE, R_LENGTH, R_NONE, responseFraming, upstreamReusable } from '../../src/gate/decisions.ts';
import {
  forwardingHead,
  forwardingLines,
  requestHeadToForward,
  responseHeadNeedsRewrite,
  responseHeadToForward,
} from '../../src/gate/forward-heads.ts';
import { RequestHead, ResponseHead, parseRequestHead, parseResponseHead } from '../../src/gate/http-parse.ts';

function res(head: string): ResponseHead {
  const rs = new ResponseHead();
  assert.ok(parseResponseHead(`${head}\r\n`, rs), head);
  return rs;
}

test('response framing: no body for HEAD, 204 and 304; chunked before Content-Length; else until close', () => {
  assert.equal(responseFraming(res('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n'), true), R_NONE);
  assert.equal(responseFraming(res('HTTP/1.1 204 No Content\r\n'), false), R_NONE);
  assert.equal(responseFraming(res('HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n'), false), R_NONE);
  assert.equal(responseFraming(res('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n'), false), R_LENGTH);
  assert.equal(responseFraming(res('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n'), false), R_LENGTH);
  assert.equal(responseFraming(res('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n'), false), R_CHUNKED);
  assert.equal(responseFraming(res('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n'), false), R_CLOSE);
  assert.equal(responseFraming(res('HTTP/1.1 200 OK\r\n'), false), R_CLOSE);
});

test('an upstream connection is reused only after an HTTP/1.1 response that did not close and was not framed by the close', () => {
  const ok = res('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n');
  assert.equal(upstreamReusable(ok, R_LENGTH), true);
  assert.equal(upstreamReusable(res('HTTP/1.0 200 OK\r\nContent-Length: 2\r\n'), R_LENGTH), false);
  assert.equal(upstreamReusable(res('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n'), R_LENGTH), false);
  assert.equal(upstreamReusable(res('HTTP/1.1 200 OK\r\n'), R_CLOSE), false);
});

test('most response heads go to the visitor untouched', () => {
  const rs = res('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n');
  assert.equal(responseHeadNeedsRewrite(rs, null, false, false), false);
  // The app closes anyway and says so: nothing to announce.
  assert.equal(responseHeadNeedsRewrite(res('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n'), null, true, false), false);
});

test('a response head is rewritten for a sticky cookie, a close to announce, a body until close, or CL beside TE', () => {
  const rs = res('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n');
  assert.equal(responseHeadNeedsRewrite(rs, 'Set-Cookie: eph_route=x\r\n', false, false), true);
  assert.equal(responseHeadNeedsRewrite(rs, null, true, false), true);
  assert.equal(responseHeadNeedsRewrite(res('HTTP/1.1 200 OK\r\n'), null, false, true), true);
  assert.equal(responseHeadNeedsRewrite(res('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n'), null, false, false), true);
});

test('the rewritten response head: cookie added, Connection lines replaced by close, Content-Length beside TE dropped', () => {
  const h = 'HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-App: 1\r\nContent-Length: 2\r\n\r\n';
  const rs = res(h.slice(0, -2));
  assert.equal(
    responseHeadToForward(h, rs, 'Set-Cookie: eph_route=a\r\n', true),
    'HTTP/1.1 200 OK\r\nX-App: 1\r\nContent-Length: 2\r\nSet-Cookie: eph_route=a\r\nConnection: close\r\n\r\n',
  );
  assert.equal(responseHeadToForward(h, rs, 'Set-Cookie: eph_route=a\r\n', false), `${h.slice(0, -2)}Set-Cookie: eph_route=a\r\n\r\n`);
  const te = 'HTTP/1.1 200 OK\r\ncontent-length: 7\r\nTransfer-Encoding: chunked\r\nContent-Length: 7\r\n\r\n';
  assert.equal(responseHeadToForward(te, res(te.slice(0, -2)), null, false), 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
});

test('the request head sent to the app: hop-by-hop and forwarding claims out, the gate\'s lines in', () => {
  const h =
    'GET /a?b HTTP/1.1\r\nHost: www.example.org\r\nConnection: keep-alive\r\nX-Forwarded-For: 6.6.6.6\r\n' +
    'Forwarded: for=6.6.6.6\r\nAccept: */*\r\n\r\n';
  const rh = new RequestHead();
  assert.ok(parseRequestHead(h, rh));
  const fwd = forwardingLines(forwardingHead('::ffff:192.0.2.9', false), 'www.example.org');
  assert.equal(
    requestHeadToForward(h, rh, fwd, false),
    'GET /a?b HTTP/1.1\r\nHost: www.example.org\r\nAccept: */*\r\n' +
      'X-Forwarded-For: 192.0.2.9\r\nX-Real-IP: 192.0.2.9\r\nX-Forwarded-Proto: http\r\n' +
      'Forwarded: for=192.0.2.9;proto=http;host="www.example.org"\r\nX-Forwarded-Host: www.example.org\r\n\r\n',
  );
});

test('the request head sent to the app: absolute-form becomes origin-form, an upgrade keeps its lines', () => {
  const h = 'GET http://www.example.org/ws HTTP/1.1\r\nHost: other.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n';
  const rh = new RequestHead();
  assert.ok(parseRequestHead(h, rh));
  assert.equal(
    requestHeadToForward(h, rh, 'X-F: 1\r\n', true),
    'GET /ws HTTP/1.1\r\nHost: www.example.org\r\nX-F: 1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n',
  );
});
