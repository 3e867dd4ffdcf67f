import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { TestCloud, TestUser } from '../helpers/cloud.ts';

export const CHROMIUM = '/usr/bin/chromium';
/** Decided before any test runs: only a machine without Chromium skips the browser tests. */
export const SKIP_BROWSER = existsSync(CHROMIUM) ? false : `${CHROMIUM} is not installed (Debian package chromium)`;

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const SCREENSHOTS = join(ROOT, 'test-output', 'console');

function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/**
 * Builds the console (scripts/build-console.mjs) when dist/console is missing
 * or older than src/console, so that the browser always gets today's sources.
 */
export function ensureConsoleBuilt(): void {
  const built = join(ROOT, 'dist', 'console', 'app.js');
  if (existsSync(built) && statSync(built).mtimeMs >= newest(join(ROOT, 'src', 'console'))) return;
  const r = spawnSync(process.execPath, ['scripts/build-console.mjs'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`building the console failed: ${r.stderr || r.stdout}`);
}

export function launchChromium(): Promise<Browser> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  // The default profile of launch() is a fresh temporary user-data-dir, removed on close.
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

/** Signs in through the form, as a user does; waits for the console's first page. */
export async function signIn(page: Page, cloud: TestCloud, user: TestUser = cloud.alice): Promise<void> {
  await page.goto(`${cloud.apiUrl}/`);
  await page.getByLabel('User ID').fill(user.id);
  await page.getByLabel('Token').fill(user.token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Instances', level: 1 }).waitFor({ timeout: 30_000 });
}

/** Opens a page of the console by its address (#/gate) and waits for its heading. */
export async function openPage(page: Page, path: string, heading: string): Promise<void> {
  await page.evaluate((h) => (location.hash = h), `#/${path}`);
  await page.getByRole('heading', { name: heading, level: 1 }).waitFor({ timeout: 30_000 });
}

export async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}
