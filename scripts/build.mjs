#!/usr/bin/env node
// Bundles the CLI (and the server it starts) to JavaScript once, at install (`prepare`), so that `eph`
// does not compile TypeScript on every start. Output: dist/cli/main.mjs plus chunks for what is loaded
// lazily (`serve`, `users`). Written beside, then renamed into place, so a running `eph` never reads a
// half-written bundle. bin/eph.js runs the sources instead when they are newer than the bundle.
import { build } from 'esbuild';
import { existsSync, renameSync, rmSync } from 'node:fs';

const out = 'dist/cli';
const tmp = `dist/cli.tmp-${process.pid}`;
await build({
  entryPoints: ['src/cli/main.ts'],
  outdir: tmp,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  // Dependencies stay in node_modules: native ones (better-sqlite3) cannot be bundled, and loading the
  // others from there keeps the bundle small; the cost that mattered was compiling TypeScript.
  packages: 'external',
  sourcemap: 'linked',
  logLevel: 'warning',
});
const old = `dist/cli.old-${process.pid}`;
if (existsSync(out)) renameSync(out, old);
renameSync(tmp, out);
rmSync(old, { recursive: true, force: true });
