import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'undici';
import { buildZip } from '../helpers/archives.ts';
import { procfileApp, startTestCloud, type TestCloud } from '../helpers/cloud.ts';

/** GET /v1/instances/:h/logs shows the app's output; ?follow=1 streams new lines as they come. */
let cloud: TestCloud;

before(async () => {
  cloud = await startTestCloud();
});
after(() => cloud?.close());

// Prints one line per request, so that the test can make the app write on demand.
const CHATTY = `
import { createServer } from 'node:http';
console.log('chatty ready');
createServer((req, res) => {
  console.log('chatty got ' + req.url);
  res.end('ok\\n');
}).listen(Number(process.env.PORT));
`;

test("the logs endpoint shows the app's stdout (and the cloud's start line)", async () => {
  const h = await cloud.publish(await buildZip('examples/node-app'));
  const empty = await cloud.api('GET', `/v1/instances/${h}/logs`);
  assert.equal(empty.status, 200);
  assert.equal(empty.text, '', 'nothing before the first start');
  assert.equal((await cloud.visit(h)).status, 200);
  const r = await cloud.api('GET', `/v1/instances/${h}/logs`);
  assert.equal(r.status, 200);
  assert.match(String(r.headers['content-type']), /text\/plain/);
  assert.match(r.text, /node-app listening on 8080/);
  assert.match(r.text, /^\[eph\] \S+ starting /m);
});

test('?tail=N gives the last N bytes', async () => {
  const h = await cloud.publish(await procfileApp(CHATTY));
  await cloud.visit(h, '/first');
  await cloud.visit(h, '/last-one');
  const full = (await cloud.api('GET', `/v1/instances/${h}/logs`)).text;
  const tail = (await cloud.api('GET', `/v1/instances/${h}/logs?tail=20`)).text;
  assert.equal(tail.length, 20);
  assert.equal(tail, full.slice(-20));
  assert.match(tail, /last-one/);
});

test('?follow=1 streams lines written after the request, until the client goes', async () => {
  const h = await cloud.publish(await procfileApp(CHATTY));
  assert.equal((await cloud.visit(h, '/before')).status, 200);

  const ac = new AbortController();
  const deadline = setTimeout(() => ac.abort(new Error('follow: no new line within 10 s')), 10_000);
  try {
    const r = await request(`${cloud.apiUrl}/v1/instances/${h}/logs?follow=1`, {
      headers: { authorization: cloud.auth(cloud.alice) },
      signal: ac.signal,
    });
    assert.equal(r.statusCode, 200);
    let seen = '';
    let asked = false;
    for await (const chunk of r.body) {
      seen += String(chunk);
      // Ask the app to write only once the earlier output has arrived: what follows is new.
      if (!asked && seen.includes('chatty got /before')) {
        asked = true;
        assert.equal((await cloud.visit(h, '/while-following')).status, 200);
      }
      if (seen.includes('chatty got /while-following')) break;
    }
    assert.match(seen, /chatty ready/);
    assert.match(seen, /chatty got \/while-following/);
  } finally {
    clearTimeout(deadline);
    ac.abort();
  }
});

test('logs need credentials (401) and are the owner\'s only (404)', async () => {
  const h = await cloud.publish(await buildZip('examples/node-app'));
  assert.equal((await cloud.api('GET', `/v1/instances/${h}/logs`, { user: null })).status, 401);
  const bob = await cloud.addUser('bob');
  assert.equal((await cloud.api('GET', `/v1/instances/${h}/logs`, { user: bob })).status, 404);
  assert.equal((await cloud.api('GET', `/v1/instances/${h}/logs?follow=1`, { user: bob })).status, 404);
});
