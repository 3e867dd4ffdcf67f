#!/usr/bin/env node
// Builds the web console (src/console/) into static files that the API serves at / (src/api/console-routes.ts):
// dist/console/index.html, app.js (one bundle, Preact included: no CDN, works offline) and app.css.
// Written beside, then renamed into place, so that a running server never serves a half-written console.
import { build } from 'esbuild';
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';

const out = 'dist/console';
const tmp = `dist/console.tmp-${process.pid}`;
rmSync(tmp, { recursive: true, force: true });
mkdirSync(tmp, { recursive: true });
await build({
  entryPoints: ['src/console/main.ts'],
  outfile: `${tmp}/app.js`,
  bundle: true,
  format: 'iife',
  platform: 'browser',
  // Browsers of the last few years (fetch streaming, DataTransfer, <dialog>-free UI).
  target: ['chrome100', 'firefox100', 'safari15'],
  minify: true,
  sourcemap: false,
  legalComments: 'none',
  logLevel: 'warning',
});
await build({
  entryPoints: ['src/console/app.css'],
  outfile: `${tmp}/app.css`,
  bundle: true,
  minify: true,
  logLevel: 'warning',
});
copyFileSync('src/console/index.html', `${tmp}/index.html`);
// Two builds at once (two test files) may both swap: a rename onto a directory another build has just put
// in place fails (ENOTEMPTY/EEXIST); move that one aside too and retry.
const old = `dist/console.old-${process.pid}`;
for (let attempt = 0; ; attempt++) {
  rmSync(old, { recursive: true, force: true });
  try {
    if (existsSync(out)) renameSync(out, old);
    renameSync(tmp, out);
    break;
  } catch (e) {
    if (attempt >= 5 || !['ENOTEMPTY', 'EEXIST', 'ENOENT'].includes(e.code)) throw e;
  }
}
rmSync(old, { recursive: true, force: true });
