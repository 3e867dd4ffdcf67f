// The gate's wake and retry decisions as pure functions (src/gate/decisions.ts): the answer to a
// failed wake, when a browser gets the "Starting…" page, which requests may be sent again, how old a
// pooled connection may be, and what happens when the connection to an instance closes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EphError } from '../../src/core/errors.ts';
import {
  CLOSE_BAD_GATEWAY,
  CLOSE_CUT,
  CLOSE_RETRY_AFTER_WAKE,
  CLOSE_RETRY_NEW,
  CLOSE_WAKE_AGAIN,
  SAFE_REUSE_MS,
  afterUpstreamClose,
  isRetryable,
  upstreamMaxIdleAge,
  wakeFailureAnswer,
  wantsStartingPage,
  type UpstreamCloseFacts,
} from '../../src/gate/decisions.ts';

const HOST = 'www.example.org';

function text(p: Buffer): string {
  return p.toString('utf8');
}

test('a failed wake answers by the error: quota 503 + Retry-After, start failure 502, timeout 504, gone 404', () => {
  const quota = wakeFailureAnswer(new EphError('QUOTA_EXCEEDED', '2 running of 2', { retryAfter: 30 }), HOST, false, false);
  assert.equal(quota.status, 503);
  assert.match(text(quota.page), /^HTTP\/1\.1 503 [^\r]*\r\n/);
  assert.match(text(quota.page), /\r\nRetry-After: 30\r\n/);
  assert.match(text(quota.page), /cannot start now: 2 running of 2\./);
  assert.equal(quota.unexpected, false);
  assert.match(text(wakeFailureAnswer(new EphError('QUOTA_EXCEEDED'), HOST, false, false).page), /\r\nRetry-After: 60\r\n/, 'default Retry-After');

  const start = wakeFailureAnswer(new EphError('START_FAILED', 'exit code 3'), HOST, false, false);
  assert.equal(start.status, 502);
  assert.match(text(start.page), /failed to start: exit code 3/);
  assert.equal(wakeFailureAnswer(new EphError('WAKE_TIMEOUT'), HOST, false, false).status, 504);
  const gone = wakeFailureAnswer(new EphError('NOT_FOUND'), HOST, false, false);
  assert.equal(gone.status, 404);
  assert.match(text(gone.page), /no application at www\.example\.org/);
});

test('a failed wake: UNAVAILABLE is 503, other server errors 502, client errors keep their status', () => {
  assert.equal(wakeFailureAnswer(new EphError('UNAVAILABLE', 'the site is stopped'), HOST, false, false).status, 503);
  assert.equal(wakeFailureAnswer(new EphError('INTERNAL'), HOST, false, false).status, 502);
  assert.equal(wakeFailureAnswer(new EphError('BAD_REQUEST', 'no'), HOST, false, false).status, 400);
});

test('a failed wake with an error of no known kind is an unexpected 502 (the gate logs it); its text is not shown', () => {
  const a = wakeFailureAnswer(new Error('secret internals'), HOST, false, false);
  assert.equal(a.status, 502);
  assert.equal(a.unexpected, true);
  assert.doesNotMatch(text(a.page), /secret internals/);
  assert.match(text(a.page), /could not be started/);
});

test('a failed wake page closes the connection when asked, and answers HEAD with the head only', () => {
  const err = new EphError('WAKE_TIMEOUT');
  assert.match(text(wakeFailureAnswer(err, HOST, true, false).page), /\r\nConnection: close\r\n/);
  assert.doesNotMatch(text(wakeFailureAnswer(err, HOST, false, false).page), /Connection: close/);
  const head = text(wakeFailureAnswer(err, HOST, false, true).page);
  assert.ok(head.endsWith('\r\n\r\n'), 'no body after the head');
  assert.match(head, /\r\nContent-Length: [1-9]\d*\r\n/, 'the length the GET would have');
});

test('the "Starting…" page goes to a browser loading a page, and only when enabled', () => {
  const html = 'text/html,application/xhtml+xml;q=0.9';
  assert.equal(wantsStartingPage('GET', html, true, false, 2000), true);
  assert.equal(wantsStartingPage('HEAD', html, true, false, 2000), true);
  assert.equal(wantsStartingPage('GET', html, true, false, 0), false, 'disabled');
  assert.equal(wantsStartingPage('POST', html, true, false, 2000), false, 'not a page load');
  assert.equal(wantsStartingPage('GET', html, false, false, 2000), false, 'a body still to read');
  assert.equal(wantsStartingPage('GET', html, true, true, 2000), false, 'a WebSocket');
  assert.equal(wantsStartingPage('GET', 'application/json', true, false, 2000), false, 'an API client');
  assert.equal(wantsStartingPage('GET', null, true, false, 2000), false, 'curl');
});

test('only whole idempotent requests may be sent twice', () => {
  for (const m of ['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']) assert.equal(isRetryable(m, true), true, m);
  assert.equal(isRetryable('POST', true), false);
  assert.equal(isRetryable('PATCH', true), false);
  assert.equal(isRetryable('PUT', false), false, 'a body that was streamed cannot be replayed');
});

test('pooled connections: a retry takes a new one, a replayable request any, another only a recent one', () => {
  assert.equal(upstreamMaxIdleAge(true, true), -1);
  assert.equal(upstreamMaxIdleAge(true, false), -1);
  assert.equal(upstreamMaxIdleAge(false, true), Infinity);
  assert.equal(upstreamMaxIdleAge(false, false), SAFE_REUSE_MS);
});

const base: UpstreamCloseFacts = {
  gotResponse: false,
  headSent: false,
  reused: false,
  woke: false,
  retryable: true,
  retries: 0,
  errorCode: 'ECONNREFUSED',
};

test('a connection refused before anything was sent: wake the instance again, once', () => {
  for (const errorCode of ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', null]) {
    assert.equal(afterUpstreamClose({ ...base, errorCode }), CLOSE_WAKE_AGAIN, String(errorCode));
    // Nothing was sent, so even a POST is woken for.
    assert.equal(afterUpstreamClose({ ...base, errorCode, retryable: false }), CLOSE_WAKE_AGAIN, String(errorCode));
  }
  assert.equal(afterUpstreamClose({ ...base, woke: true }), CLOSE_BAD_GATEWAY, 'the second time');
  assert.equal(afterUpstreamClose({ ...base, errorCode: 'EHOSTUNREACH' }), CLOSE_BAD_GATEWAY);
  assert.equal(afterUpstreamClose({ ...base, errorCode: '' }), CLOSE_BAD_GATEWAY, 'an error without a code');
});

test('sent and closed unanswered: a stale pooled connection is retried on a new one; a new one after a wake', () => {
  const sent = { ...base, headSent: true };
  assert.equal(afterUpstreamClose({ ...sent, reused: true }), CLOSE_RETRY_NEW);
  assert.equal(afterUpstreamClose({ ...sent, reused: true, woke: true }), CLOSE_RETRY_NEW, 'a stale connection says nothing of the app');
  assert.equal(afterUpstreamClose(sent), CLOSE_RETRY_AFTER_WAKE);
  assert.equal(afterUpstreamClose({ ...sent, woke: true }), CLOSE_BAD_GATEWAY);
});

test('sent and closed unanswered: no retry for a POST, none past two', () => {
  const sent = { ...base, headSent: true, reused: true };
  assert.equal(afterUpstreamClose({ ...sent, retryable: false }), CLOSE_BAD_GATEWAY);
  assert.equal(afterUpstreamClose({ ...sent, retries: 1 }), CLOSE_RETRY_NEW);
  assert.equal(afterUpstreamClose({ ...sent, retries: 2 }), CLOSE_BAD_GATEWAY);
});

test('closed in the middle of a response: cut, never retried', () => {
  assert.equal(afterUpstreamClose({ ...base, headSent: true, gotResponse: true }), CLOSE_CUT);
  assert.equal(afterUpstreamClose({ ...base, headSent: true, gotResponse: true, reused: true }), CLOSE_CUT);
});
