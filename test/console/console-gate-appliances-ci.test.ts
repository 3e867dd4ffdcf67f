import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { procfileApp, startTestCloud, until, type TestCloud } from '../helpers/cloud.ts';
import { versionApp } from '../e2e/gate-apps.ts';
import { onPath } from '../../src/appliances/binaries.ts';
import { ensureConsoleBuilt, launchChromium, openPage, screenshot, signIn, SKIP_BROWSER } from './console-fixtures.ts';

/**
 * The web console in a real Chromium against a real cloud: map a domain,
 * promote beta → www and roll back (each a click or three) with the history;
 * a static appliance's stunnel tab (upload psk.txt, copy stunnel.conf); CI
 * runs with their tests; every page at 375 px without horizontal overflow;
 * every control with an accessible name as Chromium computes it.
 */
const skip = SKIP_BROWSER;
// Decided before any test runs: without redis-server only the Redis appliance test is skipped.
const skipRedis = skip || (onPath('redis-server') === null ? 'redis-server is not installed (Debian package redis-server)' : false);
const PID = process.pid;
const WWW = `www.shop${PID}.test`;
const BETA = `beta.shop${PID}.test`;

let cloud: TestCloud;
let browser: Browser;
let context: BrowserContext | undefined;
let page: Page;
let v1: string;
let v2: string;

before(async () => {
  if (skip) return;
  ensureConsoleBuilt();
  // A loaded CI machine may take long to wake an instance: the health gate waits generously.
  cloud = await startTestCloud({}, { healthTimeoutMs: 90_000 });
  [v1, v2] = await Promise.all([cloud.publish(await versionApp('v1'), { name: 'shop-v1.zip' }), cloud.publish(await versionApp('v2'), { name: 'shop-v2.zip' })]);
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await cloud?.close();
});

async function freshPage(opts: { width?: number; clipboard?: boolean } = {}): Promise<Page> {
  await context?.close();
  context = await browser.newContext({
    viewport: { width: opts.width ?? 1100, height: 900 },
    ...(opts.clipboard ? { permissions: ['clipboard-read', 'clipboard-write'] } : {}),
  });
  page = await context.newPage();
  page.setDefaultTimeout(30_000);
  await signIn(page, cloud);
  return page;
}

/** What the route card of `domain` shows as its instance(s). */
const targetsOn = (domain: string) => page.locator(`li[data-domain="${domain}"] .targets`).innerText();

test('gate: map two domains, promote beta → www in one click, roll back in one click, and read the history', { skip }, async () => {
  await freshPage();
  await openPage(page, 'gate', 'Gate');
  for (const [domain, host] of [[WWW, v1], [BETA, v2]] as const) {
    await page.getByLabel('Domain', { exact: true }).fill(domain);
    await page.getByLabel('Instance', { exact: true }).selectOption(host);
    await page.getByRole('button', { name: 'Map', exact: true }).click();
    await until(`${domain} → ${host} on the page`, async () => (await page.locator(`li[data-domain="${domain}"]`).count()) === 1 && (await targetsOn(domain)).includes(host), 120_000);
  }
  assert.equal((await cloud.visit(WWW)).body, 'v1');
  assert.equal((await cloud.visit(BETA)).body, 'v2');

  // Promote: the form already proposes beta.X → www.X; one click.
  assert.equal(await page.getByLabel('From', { exact: true }).inputValue(), BETA);
  assert.equal(await page.getByLabel('To', { exact: true }).inputValue(), WWW);
  await page.getByRole('button', { name: 'Promote', exact: true }).click();
  await until('www to show v2', async () => (await targetsOn(WWW)).includes(v2), 120_000);
  assert.equal((await cloud.visit(WWW)).body, 'v2', 'the gate serves what beta served');
  await screenshot(page, 'gate-promoted');

  // Roll back: one click.
  await page.getByRole('button', { name: `Roll back ${WWW}` }).click();
  await until('www to show v1 again', async () => (await targetsOn(WWW)).includes(v1), 120_000);
  assert.equal((await cloud.visit(WWW)).body, 'v1');

  // History: one click, as the API records it.
  await page.getByRole('button', { name: `History of ${WWW}` }).click();
  const items = page.getByRole('list', { name: `History of ${WWW}` }).getByRole('listitem');
  const api = ((await cloud.api('GET', `/v1/gate/routes/${WWW}/history`)).json as { history: Array<{ action: string }> }).history;
  assert.ok(api.length >= 3, JSON.stringify(api));
  await until('the history list', async () => (await items.count()) === api.length, 30_000);
  const text = await page.getByRole('list', { name: `History of ${WWW}` }).innerText();
  for (const h of api) assert.ok(text.includes(` ${h.action} by `), `${h.action} in ${text}`);
  await screenshot(page, 'gate-rolled-back');

  // A refused map shows the API's reason (a name of the platform).
  await page.getByLabel('Domain', { exact: true }).fill('x.eph.test');
  await page.getByRole('button', { name: 'Map', exact: true }).click();
  await until('the refusal', async () => /\(CONFLICT\)$/.test(await page.getByRole('alert').innerText().catch(() => '')), 30_000);
});

test('appliances: create a static site, keep its psk.txt, then the stunnel tab: upload psk.txt, copy stunnel.conf, the eph tunnel command', { skip }, async () => {
  await freshPage({ clipboard: true });
  await openPage(page, 'appliances', 'Appliances');
  await page.getByLabel('Kind', { exact: true }).selectOption('static');
  await page.getByLabel('Name', { exact: true }).fill('docs');
  await page.getByRole('button', { name: 'Create appliance' }).click();
  const once = page.getByRole('region', { name: 'psk.txt of docs' });
  await once.waitFor();
  assert.match(await once.locator('pre').innerText(), /^docs-client:[0-9a-f]{64}\s*$/);
  await page.getByRole('button', { name: 'I saved it' }).click();

  const card = page.locator('li[data-appliance="docs"]');
  await card.waitFor();
  await until('the appliance running', async () => (await card.innerText()).includes('static · running'), 60_000);
  await card.getByRole('tab', { name: 'Stunnel' }).click();

  // psk.txt: a broken file is refused with the API's reason; a good one replaces the identities.
  await page.getByLabel('psk.txt').setInputFiles({ name: 'psk.txt', mimeType: 'text/plain', buffer: Buffer.from('broken\n') });
  await until('the refusal', async () => /^psk\.txt line 1: /.test(await page.getByRole('alert').innerText().catch(() => '')), 30_000);
  const key = randomBytes(32).toString('hex');
  await page.getByLabel('psk.txt').setInputFiles({ name: 'psk.txt', mimeType: 'text/plain', buffer: Buffer.from(`laptop:${key}\nci:${randomBytes(32).toString('hex')}\n`) });
  await until('the new identities', async () => (await card.locator('.identities').innerText()) === 'laptop, ci', 30_000);
  assert.deepEqual((await cloud.api('GET', '/v1/appliances/docs/psk')).json, { identities: ['laptop', 'ci'] });

  // stunnel.conf: shown, copied to the clipboard, downloadable; all as the API serves it.
  const conf = (await cloud.api('GET', '/v1/appliances/docs/stunnel.conf')).text;
  assert.match(conf, /^\[docs\]\nclient = yes\n/);
  assert.equal((await page.getByLabel('stunnel.conf of docs', { exact: true }).innerText()).trimEnd(), conf.trimEnd());
  await page.getByRole('button', { name: 'Copy stunnel.conf' }).click();
  await page.getByRole('status').filter({ hasText: 'stunnel.conf copied' }).waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), conf);
  assert.equal(await page.getByRole('link', { name: 'Download stunnel.conf' }).getAttribute('href'), '/v1/appliances/docs/stunnel.conf');
  const download = await page.evaluate(async () => (await fetch('/v1/appliances/docs/stunnel.conf')).text());
  assert.equal(download, conf, 'the download link works with the session cookie');
  assert.match(await page.getByLabel('eph tunnel command', { exact: true }).innerText(), new RegExp(`EPH_USER=${cloud.alice.id} .*eph tunnel docs --psk psk\\.txt$`));
  await screenshot(page, 'appliance-stunnel');
});

test('appliances: a Redis appliance created from the console runs, with its endpoint and connection URL', { skip: skipRedis }, async () => {
  await freshPage();
  await openPage(page, 'appliances', 'Appliances');
  await page.getByLabel('Kind', { exact: true }).selectOption('redis');
  await page.getByLabel('Name', { exact: true }).fill('cache');
  await page.getByRole('button', { name: 'Create appliance' }).click();
  await page.getByRole('region', { name: 'psk.txt of cache' }).waitFor({ timeout: 60_000 });
  const card = page.locator('li[data-appliance="cache"]');
  await until('the Redis appliance running', async () => (await card.innerText().catch(() => '')).includes('redis · running'), 60_000);
  const view = (await cloud.api('GET', '/v1/appliances/cache')).json as { public: string; url: string };
  const text = await card.innerText();
  assert.ok(text.includes(view.public), `${view.public} in ${text}`);
  assert.ok(view.url.startsWith('redis://') && text.includes(view.url), `${view.url} in ${text}`);
  await screenshot(page, 'appliance-redis');
});

test('CI runs: status, per-test results, steps and the log excerpt', { skip }, async () => {
  const created = await cloud.api('POST', '/v1/ci/runs', { body: { name: 'shop tests', ttlSeconds: 600 } });
  assert.equal(created.status, 201, created.text);
  const id = (created.json as { id: string }).id;
  const app = await procfileApp("import { createServer } from 'node:http';\nconsole.log('ci app says hi');\ncreateServer((q, s) => s.end('ok')).listen(8080);\n");
  const published = await cloud.api('POST', `/v1/ci/runs/${id}/archive`, { body: app, headers: { 'content-type': 'application/zip', 'x-name': 'shop.zip' } });
  assert.equal(published.status, 201, published.text);
  const host = (published.json as { hostname: string }).hostname;
  assert.equal((await cloud.api('POST', `/v1/instances/${host}/start`)).status, 200);
  await until('the app to log', async () => (await cloud.api('GET', `/v1/instances/${host}/logs`)).text.includes('ci app says hi'), 30_000);
  const finished = await cloud.api('POST', `/v1/ci/runs/${id}/finish`, {
    body: {
      status: 'failed',
      steps: [{ name: 'publish', status: 'ok', ms: 120 }, { name: 'test', status: 'failed', ms: 40, detail: '1 of 2 failed' }],
      tests: [
        { suite: 'http:/tests', name: 'adds', status: 'pass', durationMs: 2 },
        { suite: 'http:/tests', name: 'rounds', status: 'fail', message: 'expected 12.01, got 12', durationMs: 3 },
      ],
    },
  });
  assert.equal(finished.status, 200, finished.text);

  await freshPage();
  await openPage(page, 'ci', 'CI runs');
  const card = page.locator(`li[data-run="${id}"]`);
  await card.waitFor();
  assert.equal(await card.locator('[data-status]').innerText(), 'failed');
  assert.match(await card.innerText(), /1 of 2 passed/);
  await page.getByRole('button', { name: `Details of run shop tests (${id})` }).click();
  const tests = page.getByRole('list', { name: 'Test results of shop tests' });
  await tests.waitFor();
  const text = await tests.innerText();
  assert.match(text, /pass\s+http:\/tests › adds/);
  assert.match(text, /fail\s+http:\/tests › rounds \(3 ms\)\s+expected 12\.01, got 12/);
  assert.match(await card.innerText(), /test: failed \(40 ms\) — 1 of 2 failed/);
  const run = (await cloud.api('GET', `/v1/ci/runs/${id}`)).json as { logExcerpt: string | null };
  if (run.logExcerpt) assert.equal((await page.getByLabel(`Log excerpt of run ${id}`).innerText()).trimEnd(), run.logExcerpt.trimEnd());
  await screenshot(page, 'ci-run');
});

/** The pages with their panels opened (the widest content each can show). */
async function eachPage(visit: (name: string) => Promise<void>): Promise<void> {
  await openPage(page, 'instances', 'Instances');
  await page.locator(`li[data-host="${v1}"]`).waitFor();
  await page.getByRole('button', { name: `Log of ${v1}` }).click();
  await page.getByRole('button', { name: `Set alias of ${v2}` }).click();
  await visit('instances');
  await openPage(page, 'publish', 'Publish');
  await visit('publish');
  await openPage(page, 'gate', 'Gate');
  const routes = ((await cloud.api('GET', '/v1/gate/routes')).json as { routes: Array<{ domain: string }> }).routes;
  if (routes[0]) {
    await page.locator(`li[data-domain="${routes[0].domain}"]`).waitFor();
    await page.getByRole('button', { name: `History of ${routes[0].domain}` }).click();
    await page.getByRole('list', { name: `History of ${routes[0].domain}` }).waitFor();
  }
  await visit('gate');
  await openPage(page, 'appliances', 'Appliances');
  const apps = ((await cloud.api('GET', '/v1/appliances')).json as { appliances: Array<{ name: string }> }).appliances;
  if (apps[0]) {
    const card = page.locator(`li[data-appliance="${apps[0].name}"]`);
    await card.getByRole('tab', { name: 'Stunnel' }).click();
    await card.locator('.identities').waitFor();
  }
  await visit('appliances');
  await openPage(page, 'ci', 'CI runs');
  const runs = ((await cloud.api('GET', '/v1/ci/runs')).json as { runs: Array<{ id: string; name: string }> }).runs;
  if (runs[0]) await page.getByRole('button', { name: `Details of run ${runs[0].name} (${runs[0].id})` }).click();
  await visit('ci');
}

test('at 375 px wide no page scrolls sideways (panels open); the console asks only its own origin, for /, its two files and /v1; no CSP violation, no script error', { skip }, async () => {
  const requests: string[] = [];
  const problems: string[] = [];
  browser.on('disconnected', () => problems.push('browser disconnected'));
  await context?.close();
  context = undefined;
  const watch = (p: Page) => {
    p.on('request', (r) => requests.push(r.url()));
    p.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    p.on('console', (m) => {
      if (/Content Security Policy|Refused to/i.test(m.text())) problems.push(`console: ${m.text()}`);
    });
  };
  context = await browser.newContext({ viewport: { width: 375, height: 900 } });
  page = await context.newPage();
  page.setDefaultTimeout(30_000);
  watch(page);
  await signIn(page, cloud);
  const widths: Record<string, number> = {};
  await eachPage(async (name) => {
    widths[name] = await page.evaluate(() => document.documentElement.scrollWidth);
    await screenshot(page, `mobile-375-${name}`);
  });
  for (const [name, w] of Object.entries(widths)) assert.ok(w <= 375, `${name}: scrollWidth ${w} > 375`);
  assert.deepEqual(Object.keys(widths), ['instances', 'publish', 'gate', 'appliances', 'ci']);
  // The sign-in page too.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  assert.ok((await page.evaluate(() => document.documentElement.scrollWidth)) <= 375);
  await screenshot(page, 'mobile-375-sign-in');
  assert.deepEqual(problems, []);
  const foreign = requests.filter((u) => {
    const url = new URL(u);
    return url.origin !== cloud.apiUrl || !(url.pathname === '/' || url.pathname.startsWith('/console/') || url.pathname.startsWith('/v1/'));
  });
  assert.deepEqual(foreign, [], 'every request goes to the API origin');
  assert.ok(requests.some((u) => u.endsWith('/console/app.js')) && requests.some((u) => u.includes('/v1/instances')), requests.join('\n'));
});

interface AxName {
  what: string;
  name: string;
}

/** Every control of the page (buttons, inputs, selects, links, tabs) with the accessible name Chromium computes for it. */
async function controlNames(): Promise<AxName[]> {
  const cdp = await page.context().newCDPSession(page);
  try {
    await cdp.send('DOM.enable');
    await cdp.send('Accessibility.enable');
    const { root } = await cdp.send('DOM.getDocument', { depth: -1 });
    const { nodeIds } = await cdp.send('DOM.querySelectorAll', { nodeId: root.nodeId, selector: 'button, input, select, textarea, a[href], [role="tab"], [tabindex]:not([tabindex="-1"])' });
    const out: AxName[] = [];
    for (const nodeId of nodeIds) {
      const { nodes } = await cdp.send('Accessibility.getPartialAXTree', { nodeId, fetchRelatives: false });
      const { outerHTML } = await cdp.send('DOM.getOuterHTML', { nodeId });
      const ax = nodes[0];
      out.push({ what: outerHTML.slice(0, 120), name: ax && !ax.ignored ? String(ax.name?.value ?? '').trim() : '(ignored)' });
    }
    return out;
  } finally {
    await cdp.detach();
  }
}

test('every button, input, select, link and tab has an accessible name (as Chromium computes it), on every page and the sign-in form', { skip }, async () => {
  await freshPage();
  const unnamed: string[] = [];
  let checked = 0;
  await eachPage(async (name) => {
    const controls = await controlNames();
    checked += controls.length;
    for (const c of controls) if (c.name === '' || c.name === '(ignored)') unnamed.push(`${name}: ${c.what}`);
  });
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  const signInControls = await controlNames();
  assert.deepEqual(signInControls.map((c) => c.name), ['User ID', 'Token', 'Sign in']);
  assert.deepEqual(unnamed, []);
  assert.ok(checked > 40, `only ${checked} controls checked`);
});
