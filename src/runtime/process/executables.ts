import { accessSync, constants, realpathSync, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';

/**
 * Resolves a command the way a shell would: a name containing `/` is taken as
 * a path (relative to the current directory), anything else is looked up on
 * `pathEnv`. Returns the absolute path of an executable file, or null.
 */
export function findExecutable(cmd: string, pathEnv: string = process.env.PATH ?? ''): string | null {
  if (cmd.length === 0) return null;
  if (cmd.includes('/')) return isExecutableFile(resolve(cmd)) ? resolve(cmd) : null;
  for (const dir of pathEnv.split(delimiter)) {
    if (!dir || !isAbsolute(dir)) continue;
    const candidate = join(dir, cmd);
    if (isExecutableFile(candidate)) return candidate;
  }
  return null;
}

/** The first of `names` found on `pathEnv`. */
export function findFirstExecutable(names: readonly string[], pathEnv?: string): string | null {
  for (const n of names) {
    const found = findExecutable(n, pathEnv);
    if (found) return found;
  }
  return null;
}

/** realpath that falls back to the input for paths that cannot be resolved. */
export function realpathOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
