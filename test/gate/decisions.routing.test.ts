// The gate's routing decisions as pure functions (src/gate/decisions.ts): which answer a host's
// route calls for, which instance of a split a visitor gets and when it gets the sticky cookie, and
// which page a refused request head gets. No socket: every rule is checked on its inputs alone.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  InstanceChoice,
  ROUTE_FORWARD,
  ROUTE_REDIRECT,
  ROUTE_UNKNOWN,
  chooseInstance,
  rejectionPage,
  routeAction,
} from '../../src/gate/decisions.ts';
import { PAGES } from '../../src/gate/error-pages.ts';
import { RoutingTable, STICKY_COOKIE, type HostRoute } from '../../src/gate/routing-table.ts';

const A = 'eph-0000000a.eph.localhost';
const B = 'eph-0000000b.eph.localhost';

function route(targets: Array<[string, number]>, httpsRedirect = false): HostRoute {
  const t = new RoutingTable();
  t.set('www.example.org', targets.map(([hostname, weight]) => ({ hostname, weight })), httpsRedirect);
  return t.get('www.example.org')!;
}

/** A table whose weighted draw always lands at `x` (0 ≤ x < 1) of the total. */
function drawAt(x: number): { pick(r: HostRoute, sticky: string | undefined): string } {
  const t = new RoutingTable();
  return { pick: (r, sticky) => t.pick(r, sticky, x) };
}

test('a host without a route, or whose targets all weigh 0, is unknown (404)', () => {
  assert.equal(routeAction(undefined, false), ROUTE_UNKNOWN);
  assert.equal(routeAction(undefined, true), ROUTE_UNKNOWN);
  assert.equal(routeAction(route([[A, 0]]), false), ROUTE_UNKNOWN);
  assert.equal(routeAction(route([[A, 0]], true), false), ROUTE_UNKNOWN, 'no redirect to a host that serves nothing');
});

test('plain HTTP to a route with httpsRedirect is redirected; over TLS, or without the flag, it is forwarded', () => {
  assert.equal(routeAction(route([[A, 1]], true), false), ROUTE_REDIRECT);
  assert.equal(routeAction(route([[A, 1]], true), true), ROUTE_FORWARD);
  assert.equal(routeAction(route([[A, 1]], false), false), ROUTE_FORWARD);
});

test('a single target is chosen without a cookie, whatever cookie the visitor sends', () => {
  const out = new InstanceChoice();
  const never = { pick: (): string => assert.fail('a single target needs no draw') };
  chooseInstance(route([[A, 1]]), null, never, out);
  assert.deepEqual({ ...out }, { instance: A, setCookie: null });
  chooseInstance(route([[A, 1]]), `${STICKY_COOKIE}=${B}`, never, out);
  assert.deepEqual({ ...out }, { instance: A, setCookie: null });
});

test('a split: a new visitor gets the drawn side and a cookie naming it', () => {
  const out = new InstanceChoice();
  const split = route([[A, 90], [B, 10]]);
  chooseInstance(split, null, drawAt(0.5), out);
  assert.equal(out.instance, A);
  assert.equal(out.setCookie, `Set-Cookie: ${STICKY_COOKIE}=${A}; Path=/; HttpOnly; SameSite=Lax\r\n`);
  chooseInstance(split, 'theme=dark', drawAt(0.95), out);
  assert.equal(out.instance, B);
  assert.equal(out.setCookie, `Set-Cookie: ${STICKY_COOKIE}=${B}; Path=/; HttpOnly; SameSite=Lax\r\n`);
});

test('a split: a visitor whose cookie names a target stays there and gets no new cookie', () => {
  const out = new InstanceChoice();
  const split = route([[A, 90], [B, 10]]);
  // The draw would say A; the cookie says B, among other cookies.
  chooseInstance(split, `theme=dark; ${STICKY_COOKIE}=${B}; x=1`, drawAt(0.1), out);
  assert.deepEqual({ ...out }, { instance: B, setCookie: null });
});

test('a split: a cookie naming an instance no longer in the route is replaced', () => {
  const out = new InstanceChoice();
  chooseInstance(route([[A, 50], [B, 50]]), `${STICKY_COOKIE}=eph-0000000c.eph.localhost`, drawAt(0.7), out);
  assert.equal(out.instance, B);
  assert.match(out.setCookie ?? '', new RegExp(`^Set-Cookie: ${STICKY_COOKIE}=${B};`));
  // A weight-0 target is out of the live targets: its visitors move too.
  chooseInstance(route([[A, 100], [B, 0]]), `${STICKY_COOKIE}=${B}`, drawAt(0.7), out);
  assert.deepEqual({ ...out }, { instance: A, setCookie: null }, 'one live target: no split, no cookie');
});

test('a refused request head gets the page of its status', () => {
  assert.equal(rejectionPage(505), PAGES.badVersion);
  assert.equal(rejectionPage(501), PAGES.notImplemented);
  assert.equal(rejectionPage(400), PAGES.badRequest);
  assert.match(rejectionPage(505).toString('latin1'), /^HTTP\/1\.1 505 /);
});
