import { chmodSync, copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SOURCE = fileURLToPath(new URL('../fixtures/pharo-vm-standin', import.meta.url));

let copy: string | null = null;

/**
 * The stand-in Pharo VM, copied to a world-readable temp dir: sandboxed apps
 * run as uid 65534, and a checkout may live where that user cannot reach
 * (e.g. under /root).
 */
export function standinVm(): string {
  if (copy) return copy;
  const dir = mkdtempSync(join(tmpdir(), 'eph-vm-'));
  chmodSync(dir, 0o755);
  const file = join(dir, 'pharo-vm-standin');
  copyFileSync(SOURCE, file);
  chmodSync(file, 0o755);
  copy = file;
  return file;
}
