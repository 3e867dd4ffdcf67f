import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

/**
 * The stunnel program on PATH: Debian's `stunnel4` first, then `stunnel`;
 * null when neither is installed. `EPH_STUNNEL` names one explicitly.
 */
export function findStunnel(env: NodeJS.ProcessEnv = process.env): string | null {
  const explicit = env.EPH_STUNNEL;
  if (explicit) return isExecutable(explicit) ? explicit : null;
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    for (const name of ['stunnel4', 'stunnel']) {
      const candidate = join(dir, name);
      if (isExecutable(candidate)) return candidate;
    }
  }
  return null;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
