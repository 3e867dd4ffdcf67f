import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { chromium, type Browser, type Response } from 'playwright-core';
import { startTestCloud, type TestCloud } from '../helpers/cloud.ts';
import { versionApp } from './gate-apps.ts';

/**
 * A real Chromium visits a sleeping instance whose app needs about 3 s to
 * listen: the gate holds the request for 2 s, then hands the browser its
 * small "starting…" page, whose refresh lands on the app.
 */
const CHROMIUM = '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (Debian package chromium)`;

let cloud: TestCloud;
let browser: Browser;
let slow: string;

before(async () => {
  if (skip) return;
  cloud = await startTestCloud();
  slow = await cloud.publish(await versionApp('slow-app', { startDelayMs: 3000 }));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      // The browser reaches the gate by hostname, as it would through DNS.
      '--host-resolver-rules=MAP *.eph.test 127.0.0.1',
    ],
  });
});
after(async () => {
  await browser?.close();
  await cloud?.close();
});

test('Chromium gets the "starting…" page from a slow-waking instance, then the app after its refresh', { skip }, async () => {
  const page = await browser.newPage();
  const documents: Array<{ status: number; url: string }> = [];
  page.on('response', (r: Response) => {
    if (r.request().isNavigationRequest()) documents.push({ status: r.status(), url: r.url() });
  });
  const url = `http://${slow}:${cloud.gatePort}/`;
  const started = Date.now();
  const first = await page.goto(url, { timeout: 30_000 });
  assert.ok(first);
  assert.equal(first.status(), 503, 'the first answer is the starting page');
  assert.equal(await page.title(), 'Starting…');
  assert.match(await page.locator('body').innerText(), new RegExp(`The application at ${slow.replace(/\./g, '\\.')} is starting`));
  assert.ok(Date.now() - started >= 1800, 'the gate held the request about 2 s before answering with the page');

  // The page refreshes by itself; no click, no reload from the test.
  await page.waitForFunction(() => document.querySelector('#v')?.textContent === 'slow-app', undefined, { timeout: 20_000, polling: 100 });
  assert.equal(await page.title(), 'slow-app');
  assert.equal(await page.locator('#v').innerText(), 'slow-app');
  assert.deepEqual(
    documents.map((d) => [d.status, d.url]),
    [
      [503, url],
      [200, url],
    ],
    'one starting page, then the app',
  );
  await page.close();
});
