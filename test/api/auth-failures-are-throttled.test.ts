import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { startTestCloud, type TestCloud, type TestUser } from '../helpers/cloud.ts';

/**
 * Failed authentications, as an attacker makes them: with real curl from
 * several loopback source addresses (127.0.0.x are all local on Linux), over
 * real HTTP. Small limits (configured as an operator would, by environment)
 * keep the loops short.
 */
let cloud: TestCloud;
let bob: TestUser;

before(async () => {
  cloud = await startTestCloud({}, { env: { EPH_AUTH_LIMIT_SOURCE: '5/1h', EPH_AUTH_LIMIT_USER: '8/1h', EPH_AUTH_TRACKED: '16' } });
  bob = await cloud.addUser('bob');
});
after(() => cloud?.close());

interface Answer {
  status: number;
  body: string;
  retryAfter: string | undefined;
}

/** curl from a chosen source address; answers status, body and Retry-After. Async: the cloud answers from this process. */
function curlFrom(source: string, ...args: string[]): Promise<Answer> {
  return new Promise((resolve, reject) => {
    execFile('curl', ['-s', '-D', '-', '--interface', source, ...args], { encoding: 'utf8' }, (err, stdout) => {
      if (err) return reject(err);
      const [head = '', ...rest] = stdout.split('\r\n\r\n');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
      const retryAfter = /^retry-after: *(.*)$/im.exec(head)?.[1]?.trim();
      resolve({ status, body: rest.join('\r\n\r\n'), retryAfter });
    });
  });
}

const me = () => `${cloud.apiUrl}/v1/me`;

test('an unknown user id and a known one with a wrong token each cost exactly one KDF run', async () => {
  const runs = () => cloud.users.kdfRuns;
  const r0 = runs();
  const unknown = await curlFrom('127.0.0.21', '-u', 'u-0000000000000000:wrong-token', me());
  assert.equal(unknown.status, 401);
  const r1 = runs();
  const wrong = await curlFrom('127.0.0.21', '-u', `${bob.id}:wrong-token`, me());
  assert.equal(wrong.status, 401);
  const r2 = runs();
  assert.equal(r1 - r0, 1, 'an unknown user is checked against a dummy hash with the same KDF');
  assert.equal(r2 - r1, 1, 'a wrong token costs one KDF run');
  assert.equal(unknown.body, wrong.body, 'the same answer either way');
  // A right token is checked once, then remembered: the Pharo client authenticates every request.
  assert.equal((await curlFrom('127.0.0.21', '-u', `${bob.id}:${bob.token}`, me())).status, 200);
  const r3 = runs();
  assert.equal((await curlFrom('127.0.0.21', '-u', `${bob.id}:${bob.token}`, me())).status, 200);
  assert.equal(runs(), r3);
});

test('a loop of wrong tokens from one address gets 429 with Retry-After; the right user from another address still signs in', async () => {
  const carol = await cloud.addUser('carol');
  const statuses: number[] = [];
  let limited: Answer | undefined;
  for (let i = 0; i < 12 && !limited; i++) {
    const r = await curlFrom('127.0.0.31', '-u', `${carol.id}:guess-${i}`, me());
    statuses.push(r.status);
    if (r.status === 429) limited = r;
  }
  assert.ok(limited, `no 429 after ${statuses.length} failures: ${statuses.join(' ')}`);
  assert.deepEqual(statuses.slice(0, 5), [401, 401, 401, 401, 401], 'the first five failures are plain 401s (limit 5/1h)');
  assert.match(limited.retryAfter ?? '', /^[1-9]\d*$/, 'Retry-After is a positive number of seconds');
  assert.equal((JSON.parse(limited.body) as { error: { code: string } }).error.code, 'RATE_LIMITED');
  // A throttled address is refused before its token is checked: no KDF run.
  const before = cloud.users.kdfRuns;
  assert.equal((await curlFrom('127.0.0.31', '-u', `${carol.id}:guess-again`, me())).status, 429);
  assert.equal(cloud.users.kdfRuns, before);
  // The right user, from another address, signs in; also through the compatibility API with ?auth=.
  assert.equal((await curlFrom('127.0.0.32', '-u', `${carol.id}:${carol.token}`, me())).status, 200);
  assert.equal((await curlFrom('127.0.0.33', `${cloud.apiUrl}${cloud.compatBase(carol)}?auth=${carol.token}`)).status, 200);
});

test('many addresses guessing one user: the user is throttled for addresses that failed, never for a clean one', async () => {
  const dave = await cloud.addUser('dave');
  // Eight failures (the per-user limit) spread over four addresses, two each: no address reaches its own limit.
  for (let a = 41; a < 45; a++) {
    for (let i = 0; i < 2; i++) assert.equal((await curlFrom(`127.0.0.${a}`, '-u', `${dave.id}:guess-${a}-${i}`, me())).status, 401);
  }
  const again = await curlFrom('127.0.0.41', '-u', `${dave.id}:guess-more`, me());
  assert.equal(again.status, 429, 'an address with failures of its own is refused for this user');
  assert.match(again.body, /for this user/);
  assert.match(again.retryAfter ?? '', /^[1-9]\d*$/);
  // Another user from that same address is not concerned by dave's limit.
  assert.equal((await curlFrom('127.0.0.41', '-u', `${bob.id}:${bob.token}`, me())).status, 200);
  // The owner, from an address that never failed, signs in during the attack.
  assert.equal((await curlFrom('127.0.0.46', '-u', `${dave.id}:${dave.token}`, me())).status, 200);
});

test('the memory of failures is bounded: invented user ids do not grow it past the configured maximum', async () => {
  for (let i = 0; i < 40; i++) {
    // One failure per address (limit 5) keeps every attempt a real check.
    const r = await curlFrom(`127.0.1.${i + 1}`, '-u', `u-invented${i}:x`, me());
    assert.equal(r.status, 401);
  }
  const tracked = cloud.users.failuresTracked;
  assert.ok(tracked.users <= 16, `user ids remembered: ${tracked.users}`);
  assert.ok(tracked.sources <= 16, `sources remembered: ${tracked.sources}`);
});

test('a token with a trailing NUL or another control character does not authenticate', async () => {
  const erin = await cloud.addUser('erin');
  const basic = (token: string) => `Authorization: Basic ${Buffer.from(`${erin.id}:${token}`).toString('base64')}`;
  for (const [i, bad] of [`${erin.token}\0`, `${erin.token}\n`, `\t${erin.token}`, `${erin.token}\x7f`].entries()) {
    const r = await curlFrom(`127.0.2.${i + 1}`, '-H', basic(bad), me());
    assert.equal(r.status, 401, `token ${JSON.stringify(bad)}`);
  }
  const query = await curlFrom('127.0.2.9', `${cloud.apiUrl}${cloud.compatBase(erin)}?auth=${erin.token}%00`);
  assert.equal(query.status, 401, '?auth=<token>%00');
  assert.equal((await curlFrom('127.0.2.10', '-H', basic(erin.token), me())).status, 200, 'the token itself works');
});

test('/v1 refuses the token in the query string; the compatibility API keeps ?auth= as the original had it', async () => {
  const fred = await cloud.addUser('fred');
  const v1 = await curlFrom('127.0.3.1', `${cloud.apiUrl}/v1/instances?user=${fred.id}&auth=${fred.token}`);
  assert.equal(v1.status, 401);
  assert.match(v1.body, /query string is not accepted/);
  const compat = await curlFrom('127.0.3.1', `${cloud.apiUrl}${cloud.compatBase(fred)}?auth=${fred.token}`);
  assert.equal(compat.status, 200);
  assert.ok(Array.isArray((JSON.parse(compat.body) as { ephemerics: unknown[] }).ephemerics));
});
