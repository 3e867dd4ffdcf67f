import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { procfileApp, startTestCloud, type TestCloud } from '../helpers/cloud.ts';

/**
 * A stranger streams an endless chunked upload: the cloud must answer 401 at
 * once, stop reading and close. Measured from the attacker's side: how many
 * bytes the client socket got rid of before the connection died.
 */
let cloud: TestCloud;

before(async () => {
  cloud = await startTestCloud();
});
after(() => cloud?.close());

/** Bytes past which the server is plainly reading the body (kernel buffers on loopback hold a few MB). */
const FAR_LESS = 16 * 1024 * 1024;
/** Where the attacker gives up: the server read it all. */
const GIVE_UP = 256 * 1024 * 1024;

interface Outcome {
  written: number;
  closed: boolean;
  response: string;
}

/** Sends `head`, then 64 KiB chunks, honouring backpressure, until the connection dies or GIVE_UP bytes went out. */
function endlessChunkedUpload(port: number, head: string): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    const chunk = Buffer.concat([Buffer.from('10000\r\n'), Buffer.alloc(0x10000, 0x50), Buffer.from('\r\n')]);
    let written = 0;
    let response = '';
    let ended = false;
    const deadline = setTimeout(() => finish(false), 60_000);
    const finish = (closed: boolean) => {
      if (ended) return;
      ended = true;
      clearTimeout(deadline);
      sock.destroy();
      resolve({ written, closed, response });
    };
    sock.on('data', (d: Buffer) => (response += d.toString('latin1')));
    sock.on('error', () => finish(true));
    sock.on('close', () => finish(true));
    const pump = () => {
      while (!ended && written < GIVE_UP) {
        // Counted when the kernel took it: what the server (or the buffers in between) accepted.
        const ok = sock.write(chunk, (err) => {
          if (!err) written += chunk.length;
        });
        if (!ok) return void sock.once('drain', pump);
      }
      if (written >= GIVE_UP) finish(false);
    };
    sock.once('connect', () => {
      sock.write(head);
      pump();
    });
    sock.once('error', (e) => (ended ? undefined : reject(e)));
  });
}

const head = (method: string, path: string, type: string, extra = '') =>
  `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${type}\r\nX-Name: big.zip\r\nTransfer-Encoding: chunked\r\n${extra}\r\n`;

const ZIP = 'application/zip';
for (const [what, method, path, type, auth] of [
  ['no credentials, compatibility API', 'POST', () => cloud.compatBase(), ZIP, () => ''],
  ['a wrong token, compatibility API', 'POST', () => cloud.compatBase(), ZIP, () => `Authorization: Basic ${Buffer.from(`${cloud.alice.id}:wrong`).toString('base64')}\r\n`],
  ['no credentials, /v1', 'POST', () => '/v1/instances', ZIP, () => ''],
  ['an unknown user, /v1', 'POST', () => '/v1/instances', ZIP, () => `Authorization: Basic ${Buffer.from('u-nobody:wrong').toString('base64')}\r\n`],
  // JSON bodies are parsed before the route runs: the 401 must still come first, not a 413 after 1 MB read.
  ['no credentials, a JSON body to /v1 PATCH', 'PATCH', () => '/v1/instances/eph-00000000.eph.test', 'application/json', () => ''],
  ['no credentials, multipart to the compatibility API', 'POST', () => `${cloud.compatBase()}/`, 'multipart/form-data; boundary=x', () => ''],
] as const) {
  test(`an endless chunked ${method} with ${what} is answered 401 and its connection closed, unread`, async () => {
    const out = await endlessChunkedUpload(cloud.apiPort, head(method, path(), type, auth()));
    assert.ok(out.closed, `the server kept reading: ${out.written} bytes accepted and still open`);
    assert.match(out.response, /^HTTP\/1\.1 401 /, 'answered 401');
    assert.match(out.response, /\r\nconnection: close\r\n/i, 'the answer says the connection closes');
    assert.ok(out.written < FAR_LESS, `${out.written} bytes were accepted before the connection closed`);
  });
}

test('an authenticated keep-alive client is not disconnected by a refusal of a bodiless request', async () => {
  // The rule closes only when a body is left unread: a 404 on a GET keeps the connection.
  const r = await cloud.api('GET', '/v1/instances/eph-00000000.eph.test');
  assert.equal(r.status, 404);
  assert.notEqual(String(r.headers.connection ?? '').toLowerCase(), 'close');
});

test('curl uploading 48 MB with a wrong ?auth= sees the 401 and the upload is cut short', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'eph-unread-'));
  try {
    const file = join(dir, 'big.zip');
    writeFileSync(file, Buffer.alloc(48 * 1024 * 1024, 0x50));
    const url = `${cloud.apiUrl}${cloud.compatBase()}/?auth=wrong`;
    for (const form of [['-F', `imageZip=@${file}`], ['-H', 'Content-Type: application/zip', '--data-binary', `@${file}`]]) {
      const out = await new Promise<string>((resolve, reject) =>
        execFile('curl', ['-sS', '-w', '\n%{http_code} %{size_upload}', ...form, url], { encoding: 'utf8' }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
      );
      const [status, uploaded] = out.trimEnd().split('\n').pop()!.split(' ').map(Number);
      assert.equal(status, 401, out);
      assert.match(out, /"UNAUTHORIZED"/);
      assert.ok(uploaded! < FAR_LESS, `curl uploaded ${uploaded} bytes before the server closed`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Sends a request head with `Expect: 100-continue` and collects what the server answers, until `done(text)` says so. */
function expectContinue(head: string, done: (text: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(cloud.apiPort, '127.0.0.1');
    let text = '';
    const deadline = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no complete answer within 30 s; got: ${JSON.stringify(text)}`));
    }, 30_000);
    sock.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (done(text)) {
        clearTimeout(deadline);
        sock.destroy();
        resolve(text);
      }
    });
    sock.on('error', reject);
    sock.once('connect', () => sock.write(head));
  });
}

test('Expect: 100-continue from a stranger: 401 without 100 Continue, so the body is never sent', async () => {
  const head = `POST ${cloud.compatBase()} HTTP/1.1\r\nHost: x\r\nContent-Type: application/zip\r\nContent-Length: 2000000000\r\nExpect: 100-continue\r\nAuthorization: Basic ${Buffer.from(`${cloud.alice.id}:wrong`).toString('base64')}\r\n\r\n`;
  const text = await expectContinue(head, (t) => /\r\n\r\n\{.*\}$/s.test(t) || /^HTTP\/1\.1 100/.test(t));
  assert.match(text, /^HTTP\/1\.1 401 /, 'the first thing answered is the 401');
  assert.doesNotMatch(text, /100 Continue/);
  assert.match(text, /\r\nconnection: close\r\n/i);
});

test('Expect: 100-continue from the right user: 100 Continue once authenticated, then the publish', async () => {
  const zip = await procfileApp("import http from 'node:http';\nhttp.createServer((_q, s) => s.end('ok')).listen(8080);\n");
  const head = `POST ${cloud.compatBase()} HTTP/1.1\r\nHost: x\r\nContent-Type: application/zip\r\nContent-Length: ${zip.length}\r\nExpect: 100-continue\r\nX-Name: expect.zip\r\nAuthorization: ${cloud.auth(cloud.alice)}\r\n\r\n`;
  const sock = connect(cloud.apiPort, '127.0.0.1');
  try {
    let text = '';
    const got = (re: RegExp) =>
      new Promise<void>((resolve, reject) => {
        const deadline = setTimeout(() => reject(new Error(`waited 30 s for ${re}; got ${JSON.stringify(text)}`)), 30_000);
        const check = () => {
          if (!re.test(text)) return;
          clearTimeout(deadline);
          sock.off('data', onData);
          resolve();
        };
        const onData = (d: Buffer) => {
          text += d.toString('latin1');
          check();
        };
        sock.on('data', onData);
        check();
      });
    sock.write(head);
    await got(/^HTTP\/1\.1 100 Continue\r\n\r\n/);
    sock.write(zip);
    await got(/\r\n\r\n"eph-[0-9a-f]{8}\.eph\.test"$/);
    assert.match(text, /HTTP\/1\.1 200 /);
  } finally {
    sock.destroy();
  }
});
