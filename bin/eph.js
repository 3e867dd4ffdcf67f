#!/usr/bin/env node
// Runs the CLI bundle that `npm install` builds (scripts/build.mjs): no TypeScript compile at start.
// When the sources are newer than the bundle (a working copy being edited), or EPH_FROM_SOURCE=1, it runs
// the TypeScript sources through tsx instead, so that what runs is always what is in src/.
import { readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const bundle = `${root}dist/cli/main.mjs`;

function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = `${dir}/${entry.name}`;
    const t = entry.isDirectory() ? newestSource(p) : statSync(p).mtimeMs;
    if (t > newest) newest = t;
  }
  return newest;
}

function bundleIsCurrent() {
  if (process.env.EPH_FROM_SOURCE === '1') return false;
  try {
    return statSync(bundle).mtimeMs >= newestSource(`${root}src`);
  } catch {
    return false;
  }
}

if (bundleIsCurrent()) {
  await import(bundle);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
