import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { request } from 'undici';
import { buildZip } from '../helpers/archives.ts';
import { procfileApp, startTestCloud, until, type TestCloud } from '../helpers/cloud.ts';

/**
 * Issue 8 item 7: a `logs?follow=1` client that never reads, next to an app
 * that writes tens of MB of output. The bytes the cloud holds for that
 * follower (eph_log_follow_queued_bytes in /metrics: stream buffers and the
 * socket's write queue) stay bounded, the follower is cut off once the app has
 * written more than the bound past it, and the cloud keeps serving.
 */
let cloud: TestCloud;
const sockets: Socket[] = [];

before(async () => {
  cloud = await startTestCloud();
});
after(async () => {
  for (const s of sockets) s.destroy();
  await cloud?.close();
});

// GET /flood?mb=N writes N MiB of numbered 1 KiB lines to stdout, waiting for the pipe when it is full.
const FLOOD = `
import { createServer } from 'node:http';
console.log('flood ready');
const line = 'x'.repeat(1000);
createServer(async (req, res) => {
  const mb = Number(new URL(req.url, 'http://h').searchParams.get('mb') ?? 0);
  for (let i = 0; i < mb * 1024; i++) {
    if (!process.stdout.write(String(i).padStart(8, '0') + ' ' + line + '\\n')) await new Promise((r) => process.stdout.once('drain', r));
  }
  res.end('flooded\\n');
}).listen(Number(process.env.PORT));
`;

async function metric(name: string): Promise<number> {
  const r = await request(`${cloud.apiUrl}/metrics`);
  const text = await r.body.text();
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  assert.ok(m, `${name} missing from /metrics`);
  return Number(m[1]);
}

test('a follower that never reads holds a bounded number of bytes, is cut off, and the cloud keeps serving', async () => {
  const quiet = await cloud.publish(await buildZip('examples/node-app'));
  const chatty = await cloud.publish(await procfileApp(FLOOD));
  assert.equal((await cloud.visit(chatty, '/flood?mb=0')).status, 200);
  assert.equal((await cloud.visit(quiet)).status, 200);

  // A raw client: sends the request, then never reads a byte.
  const port = Number(new URL(cloud.apiUrl).port);
  const sock = connect(port, '127.0.0.1');
  sockets.push(sock);
  sock.on('error', () => undefined);
  sock.pause();
  await new Promise<void>((r) => sock.once('connect', () => r()));
  sock.write(`GET /v1/instances/${chatty}/logs?follow=1 HTTP/1.1\r\nHost: api\r\nAuthorization: ${cloud.auth(cloud.alice)}\r\n\r\n`);
  await until('the follower is registered', async () => (await metric('eph_log_followers')) === 1, 30_000);

  // Rounds of 16 MiB of output until the follower is cut off: the first ones fill the kernel's
  // socket buffers (several MB on loopback), the next ones put the follower behind.
  let most = 0;
  const deadline = Date.now() + 120_000;
  for (let round = 0; ; round++) {
    let flooded = false;
    const flood = cloud.visit(chatty, '/flood?mb=16').finally(() => (flooded = true));
    while (!flooded) {
      most = Math.max(most, await metric('eph_log_follow_queued_bytes'));
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal((await flood).status, 200);
    most = Math.max(most, await metric('eph_log_follow_queued_bytes'));
    // One read chunk (64 KiB) plus stream and socket buffers, about 200 KiB; without back-pressure
    // this grows by megabytes a round.
    assert.ok(most <= 512 * 1024, `the server held ${most} bytes for a follower that does not read`);
    if ((await metric('eph_log_followers')) === 0) break;
    assert.ok(Date.now() < deadline, `the follower was not cut off after ${round + 1} rounds of 16 MiB`);
  }
  assert.ok((await metric('eph_log_followers_dropped_total')) >= 1);
  // The cloud keeps serving: the API, the other instance, the chatty one.
  assert.equal((await cloud.api('GET', '/v1/health')).status, 200);
  assert.equal((await cloud.visit(quiet)).status, 200);
  assert.equal((await cloud.visit(chatty, '/flood?mb=0')).status, 200);
});

test('a follower that reads gets the new lines, and is not cut off by a quiet log', async () => {
  const h = await cloud.publish(await procfileApp(FLOOD));
  assert.equal((await cloud.visit(h, '/flood?mb=0')).status, 200);
  const ac = new AbortController();
  const r = await request(`${cloud.apiUrl}/v1/instances/${h}/logs?follow=1`, { headers: { authorization: cloud.auth(cloud.alice) }, signal: ac.signal });
  try {
    assert.equal(r.statusCode, 200);
    let text = '';
    const got = new Promise<void>((resolve, reject) => {
      r.body.on('data', (c: Buffer) => {
        text += c.toString();
        // The last line of 2 MiB of output: every line read through, none cut off.
        if (text.includes('00002047 ')) resolve();
      });
      r.body.on('error', reject);
    });
    assert.equal((await cloud.visit(h, '/flood?mb=2')).status, 200);
    await got;
  } finally {
    ac.abort();
  }
});
