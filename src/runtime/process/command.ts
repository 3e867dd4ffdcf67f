import { existsSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, isAbsolute } from 'node:path';
import { EphError } from '../../core/errors.ts';
import type { LaunchSpec } from '../driver.ts';
import { findExecutable, realpathOr } from './executables.ts';

/** What to execute for one instance, before isolation is wrapped around it. */
export interface AppCommand {
  argv: string[];
  cwd: string;
  /** Directories (besides the image dir) the command needs to see, read-only. */
  needs: string[];
  /** `stunnel.conf` beside the image (or the Procfile), when there is one. */
  stunnelConf: string | null;
}

/**
 * Builds the command line from a LaunchSpec.
 * - pharo: `<vm> --headless <image> --no-quit` in the image's directory (the
 *   VM itself runs `startup.st` beside the image, as Pharo does).
 * - procfile: `/bin/sh -c <web command>` in the image directory.
 *
 * @throws EphError DEPENDENCY_MISSING when the Pharo VM cannot be found on
 *   `pathEnv`; START_FAILED when the image path is missing or escapes imageDir.
 */
export function buildCommand(spec: LaunchSpec, pathEnv: string): AppCommand {
  const root = resolve(spec.imageDir);
  if (!isDirectory(root)) throw new EphError('START_FAILED', `image directory not found: ${spec.imageDir}`);
  if (spec.kind === 'procfile') {
    if (spec.entry.trim().length === 0) throw new EphError('START_FAILED', 'the Procfile web command is empty');
    return { argv: ['/bin/sh', '-c', spec.entry], cwd: root, needs: [], stunnelConf: stunnelBeside(root) };
  }
  const image = resolve(root, spec.entry);
  const rel = relative(root, image);
  if (rel.startsWith('..') || isAbsolute(rel)) throw new EphError('START_FAILED', `image path escapes the image directory: ${spec.entry}`);
  if (!existsSync(image)) throw new EphError('START_FAILED', `image not found: ${spec.entry}`);
  const vm = findExecutable(spec.pharoVm, pathEnv);
  if (!vm) throw new EphError('DEPENDENCY_MISSING', `Pharo VM not found: ${spec.pharoVm} (set EPH_PHARO_VM)`);
  const cwd = dirname(image);
  return {
    argv: [vm, '--headless', image, '--no-quit'],
    cwd,
    needs: [...new Set([dirname(vm), dirname(realpathOr(vm))])],
    stunnelConf: stunnelBeside(cwd),
  };
}

function stunnelBeside(dir: string): string | null {
  const conf = join(dir, 'stunnel.conf');
  return existsSync(conf) ? conf : null;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
