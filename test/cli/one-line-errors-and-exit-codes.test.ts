import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { eph, type EphResult } from './run-eph.ts';
import { startRecordedApi } from './recorded-api.ts';

/** Failure output is exactly one line `eph: …` on stderr, nothing on stdout. */
function assertOneLine(r: EphResult, status: number, pattern: RegExp): void {
  assert.equal(r.code, status, `exit status; stderr: ${r.stderr}`);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^eph: [^\n]+\n$/, `one line on stderr, got ${JSON.stringify(r.stderr)}`);
  assert.match(r.stderr, pattern);
}

async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as AddressInfo;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

test('usage errors exit 2 with one line and send nothing (against a recorded-shape API server)', async (t) => {
  const api = await startRecordedApi(t);
  const env = api.env;
  const [unknownCmd, missingArg, unknownOpt, badWeight, dupHost, allZero, badKind, badTail, aliasBoth, aliasNone, badTimeout] =
    await Promise.all([
      eph(['bogus'], { env }),
      eph(['show'], { env }),
      eph(['ls', '--colour'], { env }),
      eph(['gate', 'split', 'www.example.org', 'eph-aaaa1111.eph.localhost=90', 'eph-bbbb2222.eph.localhost=ten'], { env }),
      eph(['gate', 'split', 'www.example.org', 'eph-aaaa1111.eph.localhost=50', 'eph-aaaa1111.eph.localhost=50'], { env }),
      eph(['gate', 'split', 'www.example.org', 'a=0', 'b=0'], { env }),
      eph(['appliance', 'create', 'oracle', 'mydb'], { env }),
      eph(['logs', 'eph-aaaa1111.eph.localhost', '--tail', 'lots'], { env }),
      eph(['alias', 'eph-aaaa1111.eph.localhost', 'beta.example.org', '--clear'], { env }),
      eph(['alias', 'eph-aaaa1111.eph.localhost'], { env }),
      eph(['appliance', 'create', 'postgres', 'mydb', '--wait', '--timeout', 'soon'], { env }),
    ]);
  assertOneLine(unknownCmd, 2, /^eph: unknown command 'bogus'/);
  assertOneLine(missingArg, 2, /^eph: missing required argument 'host'/);
  assertOneLine(unknownOpt, 2, /^eph: unknown option '--colour'/);
  assertOneLine(badWeight, 2, /^eph: split: the weight in 'eph-bbbb2222\.eph\.localhost=ten' must be a whole number from 0 to 100$/m);
  assertOneLine(dupHost, 2, /^eph: split: eph-aaaa1111\.eph\.localhost is given twice$/m);
  assertOneLine(allZero, 2, /^eph: split: at least one weight must be above 0$/m);
  assertOneLine(badKind, 2, /^eph: appliance create: unknown kind 'oracle'; expected one of postgres, redis, static, mongo$/m);
  assertOneLine(badTail, 2, /^eph: --tail: expected a number of bytes, got 'lots'$/m);
  assertOneLine(aliasBoth, 2, /not both/);
  assertOneLine(aliasNone, 2, /missing DOMAIN/);
  assertOneLine(badTimeout, 2, /--timeout: expected a duration like 30m, got 'soon'/);
  assert.deepEqual(api.requests, [], 'no request reached the API');
});

test('missing credentials and a malformed EPH_URL are usage errors (exit 2)', async () => {
  const [noCreds, badUrl] = await Promise.all([
    eph(['ls'], { env: { EPH_URL: 'http://127.0.0.1:9' } }),
    eph(['ls'], { env: { EPH_URL: 'ftp://example.org', EPH_USER: 'u', EPH_TOKEN: 't' } }),
  ]);
  assertOneLine(noCreds, 2, /^eph: no credentials: set EPH_USER \(--user\) and EPH_TOKEN \(--token\)/);
  assertOneLine(badUrl, 2, /^eph: --url\/EPH_URL: expected an http:\/\/ or https:\/\/ URL, got 'ftp:\/\/example.org'$/m);
});

test('an unreachable server exits 1 naming the URL and the reason', async () => {
  const port = await closedPort();
  const r = await eph(['ls', '--json'], { env: { EPH_URL: `http://127.0.0.1:${port}`, EPH_USER: 'u', EPH_TOKEN: 't' } });
  assert.equal(r.stderr, `eph: cannot reach http://127.0.0.1:${port}: connection refused\n`);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
});

test("API errors exit 1 with the API's message; non-JSON error answers still give one line (recorded-shape API server)", async (t) => {
  const api = await startRecordedApi(t);
  api.on('GET /v1/instances/eph-00000000.eph.localhost', () => ({
    status: 404,
    json: { error: { code: 'NOT_FOUND', message: 'instance eph-00000000.eph.localhost not found' } },
  }));
  api.on('GET /v1/gate/routes', () => ({ status: 502, text: '<html>\n<body>Bad gateway</body>\n</html>\n', type: 'text/html' }));
  const [wrongToken, notFound, proxyPage] = await Promise.all([
    eph(['ls'], { env: { ...api.env, EPH_TOKEN: 'wrong' } }),
    eph(['show', 'eph-00000000.eph.localhost', '--json'], { env: api.env }),
    eph(['gate', 'ls'], { env: api.env }),
  ]);
  assertOneLine(wrongToken, 1, /^eph: unknown user or wrong token\n$/);
  assertOneLine(notFound, 1, /^eph: instance eph-00000000\.eph\.localhost not found\n$/);
  assertOneLine(proxyPage, 1, /^eph: HTTP 502: <html> <body>Bad gateway<\/body> <\/html>\n$/);
  // The credentials travel as HTTP Basic userID:token.
  const auth = api.requests.find((r) => r.url === '/v1/instances')?.headers.authorization;
  assert.equal(auth, `Basic ${Buffer.from('u-recorded:wrong').toString('base64')}`);
});

test('--help and --version exit 0; the top-level help lists the admin commands too', async () => {
  const [help, version, top] = await Promise.all([eph(['gate', 'split', '--help']), eph(['--version']), eph(['--help'])]);
  assert.equal(top.code, 0);
  for (const name of ['serve', 'users', 'publish', 'ls', 'logs', 'gate', 'appliance', 'tunnel']) {
    assert.match(top.stdout, new RegExp(`^  ${name} `, 'm'), `eph --help lists ${name}`);
  }
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: eph gate split \[options\] <domain> <targets\.\.\.>/);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
});
