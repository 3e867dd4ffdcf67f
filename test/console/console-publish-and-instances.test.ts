import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { procfileApp, startTestCloud, until, type TestCloud } from '../helpers/cloud.ts';
import { zipFrom } from '../helpers/archives.ts';
import { versionApp } from '../e2e/gate-apps.ts';
import { ensureConsoleBuilt, launchChromium, openPage, screenshot, signIn, SKIP_BROWSER } from './console-fixtures.ts';

/**
 * The web console in a real Chromium against a real cloud: sign in (and a
 * wrong token's message), publish by drag and drop and with the "Archive"
 * file input, a refused archive's message as the API wrote it, the live
 * instance list and waking an instance. A screenshot per test goes to
 * test-output/console/.
 */
const skip = SKIP_BROWSER;

let cloud: TestCloud;
let browser: Browser;
let context: BrowserContext;
let page: Page;

before(async () => {
  if (skip) return;
  ensureConsoleBuilt();
  cloud = await startTestCloud();
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await cloud?.close();
});

/** A fresh browser context (no cookie) per test. */
async function freshPage(width = 1100): Promise<Page> {
  await context?.close();
  context = await browser.newContext({ viewport: { width, height: 900 } });
  page = await context.newPage();
  page.setDefaultTimeout(30_000);
  return page;
}

test('sign in: a wrong token is refused with a clear message; the right one (keyboard only) opens the console; the cookie is HttpOnly and Strict; sign out', { skip }, async () => {
  await freshPage();
  await page.goto(`${cloud.apiUrl}/`);
  await page.getByLabel('User ID').fill(cloud.alice.id);
  await page.getByLabel('Token').fill('not-the-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  const alert = page.getByRole('alert');
  await alert.waitFor();
  assert.equal(await alert.innerText(), 'Sign-in refused: unknown user ID or wrong token.');
  await screenshot(page, 'sign-in-refused');

  // By keyboard alone: focus the first field, type, Tab, type, Enter.
  await page.getByLabel('User ID').focus();
  await page.keyboard.press('Control+A');
  await page.keyboard.type(cloud.alice.id);
  await page.keyboard.press('Tab');
  await page.keyboard.press('Control+A');
  await page.keyboard.type(cloud.alice.token);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Instances', level: 1 }).waitFor();
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'eph_session');
  assert.ok(session, `cookies: ${JSON.stringify(cookies)}`);
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  assert.equal(session.path, '/');
  assert.equal(await page.evaluate(() => document.cookie), '', 'page scripts cannot read the session cookie');
  await screenshot(page, 'signed-in');

  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('button', { name: 'Sign in' }).waitFor();
  // The session is gone on the server: the old cookie, replayed, is refused.
  const replay = await cloud.api('GET', '/v1/session', { user: null, headers: { cookie: `eph_session=${session.value}` } });
  assert.equal(replay.status, 401, replay.text);
});

/** Drops `bytes` as a file named `name` on the drop zone with a real DataTransfer built in the page. */
async function dropFile(name: string, bytes: Buffer): Promise<void> {
  await page.evaluate(
    ({ name, b64 }) => {
      const bin = atob(b64);
      const data = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) data[i] = bin.charCodeAt(i);
      const dt = new DataTransfer();
      dt.items.add(new File([data], name, { type: 'application/zip' }));
      const zone = document.getElementById('dropzone')!;
      zone.dispatchEvent(new DragEvent('dragenter', { bubbles: true, cancelable: true, dataTransfer: dt }));
      zone.dispatchEvent(new DragEvent('dragover', { bubbles: true, cancelable: true, dataTransfer: dt }));
      zone.dispatchEvent(new DragEvent('drop', { bubbles: true, cancelable: true, dataTransfer: dt }));
    },
    { name, b64: bytes.toString('base64') },
  );
}

/** Watches the page for the upload progress bar (it may show only briefly on loopback). */
async function watchProgress(): Promise<void> {
  await page.evaluate(() => {
    const w = window as unknown as { progressSeen: string[] };
    w.progressSeen = [];
    new MutationObserver(() => {
      const p = document.querySelector('progress');
      const label = document.querySelector('label[for="upload-progress"]');
      if (p && label) w.progressSeen.push(label.textContent ?? '');
    }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
  });
}

async function publishedHost(): Promise<string> {
  const link = page.locator('#published a.new-host');
  await link.waitFor();
  const host = await link.innerText();
  assert.match(host, /^eph-[0-9a-f]{8}\.eph\.test$/);
  assert.equal(await link.getAttribute('href'), `http://${host}:${cloud.gatePort}/`);
  return host;
}

test('publish by drag and drop: a DataTransfer drop uploads the archive with a progress bar, and the new hostname is a link', { skip }, async () => {
  await freshPage();
  await signIn(page, cloud);
  await openPage(page, 'publish', 'Publish');
  await watchProgress();
  // Over a megabyte of incompressible bytes, so that the upload is more than one write.
  const filler = Buffer.alloc(1536 * 1024);
  for (let i = 0; i < filler.length; i++) filler[i] = (i * 7919 + (i >> 8) * 104729) & 0xff;
  const archive = await zipFrom([
    { name: 'Procfile', data: 'web: node app.mjs\n' },
    { name: 'app.mjs', data: "import { createServer } from 'node:http'; createServer((q, s) => s.end('dropped')).listen(8080);\n" },
    { name: 'filler.bin', data: filler, store: true },
  ]);
  await dropFile('dropped-app.zip', archive);
  const host = await publishedHost();
  const seen = await page.evaluate(() => (window as unknown as { progressSeen: string[] }).progressSeen);
  assert.ok(seen.some((s) => s.startsWith('Uploading dropped-app.zip')), `progress shown: ${JSON.stringify(seen.slice(0, 5))}`);
  const inst = await cloud.api('GET', `/v1/instances/${host}`);
  assert.equal(inst.status, 200, inst.text);
  assert.equal((inst.json as { imageName: string }).imageName, 'dropped-app.zip');
  await screenshot(page, 'publish-drag-and-drop');
});

test('publish with the file input labelled "Archive"; a dropped file anywhere on another page is published too', { skip }, async () => {
  await freshPage();
  await signIn(page, cloud);
  await openPage(page, 'publish', 'Publish');
  await page.getByLabel('Archive').setInputFiles({ name: 'picked-app.zip', mimeType: 'application/zip', buffer: await versionApp('picked') });
  const host = await publishedHost();
  assert.equal(((await cloud.api('GET', `/v1/instances/${host}`)).json as { imageName: string }).imageName, 'picked-app.zip');
  await screenshot(page, 'publish-file-input');
  // The link leads to the instances page, where the new one is listed.
  await page.getByRole('link', { name: 'see it among your instances' }).click();
  await page.locator(`li[data-host="${host}"]`).waitFor();
  // Dropped on the instances page (not on the drop zone): the console opens Publish and publishes it.
  await page.evaluate(async (b64) => {
    const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([data], 'anywhere.zip', { type: 'application/zip' }));
    document.body.dispatchEvent(new DragEvent('dragover', { bubbles: true, cancelable: true, dataTransfer: dt }));
    document.body.dispatchEvent(new DragEvent('drop', { bubbles: true, cancelable: true, dataTransfer: dt }));
  }, (await versionApp('anywhere')).toString('base64'));
  await page.getByRole('heading', { name: 'Publish', level: 1 }).waitFor();
  const second = await publishedHost();
  assert.notEqual(second, host);
  assert.equal(((await cloud.api('GET', `/v1/instances/${second}`)).json as { imageName: string }).imageName, 'anywhere.zip');
});

test("a refused archive shows the API's own message and code; nothing is published", { skip }, async () => {
  await freshPage();
  await signIn(page, cloud);
  await openPage(page, 'publish', 'Publish');
  const before = ((await cloud.api('GET', '/v1/instances')).json as { instances: unknown[] }).instances.length;
  const noApp = await zipFrom([{ name: 'README.txt', data: 'no app here\n' }]);
  const api = await cloud.api('POST', '/v1/instances', { body: noApp, headers: { 'content-type': 'application/zip', 'x-name': 'readme.zip' } });
  const apiError = (api.json as { error: { code: string; message: string } }).error;
  assert.equal(apiError.code, 'ARCHIVE_NO_APP');
  await page.getByLabel('Archive').setInputFiles({ name: 'readme.zip', mimeType: 'application/zip', buffer: noApp });
  const alert = page.getByRole('alert');
  await alert.waitFor();
  assert.equal(await alert.innerText(), `${apiError.message} (ARCHIVE_NO_APP)`);
  await screenshot(page, 'publish-refused');
  // Not an archive at all: the API's other message.
  await page.getByLabel('Archive').setInputFiles({ name: 'notes.zip', mimeType: 'application/zip', buffer: Buffer.from('just some text, not a zip\n') });
  await until('the second refusal', async () => /\(ARCHIVE_INVALID\)$/.test(await alert.innerText()), 30_000);
  assert.match(await alert.innerText(), /not a zip, tar or tar\.gz archive/);
  await dropFile('README.zip', noApp);
  await until('the drop refusal', async () => /\(ARCHIVE_NO_APP\)$/.test(await alert.innerText()), 30_000);
  assert.equal(((await cloud.api('GET', '/v1/instances')).json as { instances: unknown[] }).instances.length, before);
});

test('the instance list follows the cloud without a reload; Wake starts an asleep instance; Stop, alias and the log', { skip }, async () => {
  const host = await cloud.publish(await procfileApp("import { createServer } from 'node:http';\nconsole.log('hello from the app');\ncreateServer((q, s) => s.end('up')).listen(8080);\n"), { name: 'wake-me.zip' });
  const stopped = await cloud.api('POST', `/v1/instances/${host}/stop`);
  assert.equal(stopped.status, 200, stopped.text);
  await freshPage();
  await signIn(page, cloud);
  const card = page.locator(`li[data-host="${host}"]`);
  const state = card.locator('[data-state]');
  await until('the card to show asleep', async () => (await state.getAttribute('data-state')) === 'asleep', 30_000);
  assert.match(await card.innerText(), /wake-me\.zip/);
  await screenshot(page, 'instances-asleep');

  await page.getByRole('button', { name: `Wake ${host}` }).click();
  await until('the card to show running', async () => (await state.getAttribute('data-state')) === 'running', 60_000).catch(async (e: Error) => {
    await screenshot(page, 'instances-wake-failed');
    throw new Error(`${e.message}; the page says: ${await page.locator('main').innerText()}`);
  });
  assert.equal(((await cloud.api('GET', `/v1/instances/${host}`)).json as { state: string }).state, 'running');
  assert.equal((await cloud.visit(host)).body, 'up');
  await screenshot(page, 'instances-woken');

  // A change made elsewhere (the API) shows without a reload: the list polls.
  const navigations: string[] = [];
  page.on('framenavigated', (f) => navigations.push(f.url()));
  assert.equal((await cloud.api('POST', `/v1/instances/${host}/stop`)).status, 200);
  await until('the card to show asleep again', async () => (await state.getAttribute('data-state')) === 'asleep', 30_000);
  assert.deepEqual(navigations, [], 'no reload');

  // The log, streamed.
  assert.equal((await cloud.api('POST', `/v1/instances/${host}/start`)).status, 200);
  await page.getByRole('button', { name: `Log of ${host}` }).click();
  const log = page.getByRole('log', { name: `Log of ${host}` });
  await until('the log to show the app line', async () => (await log.innerText()).includes('hello from the app'), 30_000);

  // Alias.
  await page.getByRole('button', { name: `Set alias of ${host}` }).click();
  await page.getByLabel('Alias (a domain, empty for none)').fill(`wake${process.pid}.example.org`);
  await page.getByRole('button', { name: 'Save alias' }).click();
  await until('the alias to be set', async () => ((await cloud.api('GET', `/v1/instances/${host}`)).json as { alias: string | null }).alias === `wake${process.pid}.example.org`, 30_000);
  await until('the card to show the alias', async () => (await card.innerText()).includes(`wake${process.pid}.example.org`), 30_000);

  // Stop by the console.
  await until('the card to show running', async () => (await state.getAttribute('data-state')) === 'running', 30_000);
  await page.getByRole('button', { name: `Stop ${host}` }).click();
  await until('stopped', async () => ((await cloud.api('GET', `/v1/instances/${host}`)).json as { state: string }).state === 'asleep', 30_000);
});

test('delete asks for confirmation first; Cancel keeps the instance, "Yes, delete" removes it', { skip }, async () => {
  const host = await cloud.publish(await versionApp('doomed'), { name: 'doomed.zip' });
  await freshPage();
  await signIn(page, cloud);
  await page.locator(`li[data-host="${host}"]`).waitFor();
  await page.getByRole('button', { name: `Delete ${host}` }).click();
  await page.getByRole('group', { name: `Confirm deleting ${host}` }).waitFor();
  await page.getByRole('button', { name: 'Cancel' }).click();
  assert.equal((await cloud.api('GET', `/v1/instances/${host}`)).status, 200, 'still there after Cancel');
  await page.getByRole('button', { name: `Delete ${host}` }).click();
  await page.getByRole('button', { name: `Yes, delete ${host}` }).click();
  await page.locator(`li[data-host="${host}"]`).waitFor({ state: 'detached' });
  assert.equal((await cloud.api('GET', `/v1/instances/${host}`)).status, 404);
});

test('by keyboard alone: Tab reaches an asleep instance\'s Wake button, Enter wakes it; focus is visible', { skip }, async () => {
  const host = await cloud.publish(await versionApp('keyboard'), { name: 'keyboard.zip' });
  assert.equal((await cloud.api('POST', `/v1/instances/${host}/stop`)).status, 200);
  await freshPage();
  await signIn(page, cloud);
  const state = page.locator(`li[data-host="${host}"] [data-state]`);
  await until('the card to show asleep', async () => (await state.getAttribute('data-state')) === 'asleep', 30_000);
  await page.locator('body').focus();
  let tabs = 0;
  const target = `Wake ${host}`;
  while (tabs < 200 && (await page.evaluate(() => document.activeElement?.getAttribute('aria-label') ?? ''))!== target) {
    await page.keyboard.press('Tab');
    tabs++;
  }
  assert.ok(tabs < 200, `${target} not reached by Tab`);
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement!).outlineStyle);
  assert.notEqual(outline, 'none', 'the focused control shows a focus ring');
  await page.keyboard.press('Enter');
  await until('the card to show running', async () => (await state.getAttribute('data-state')) === 'running', 60_000);
  assert.equal((await cloud.visit(host)).body, 'keyboard');
});
