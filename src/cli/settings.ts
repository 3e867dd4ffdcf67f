import { UsageError } from './cli-error.ts';

/** Where and as whom the CLI talks to the API. */
export interface ClientSettings {
  /** Base URL without a trailing slash, e.g. `http://127.0.0.1:7070`. */
  url: string;
  user: string;
  token: string;
}

export interface SettingFlags {
  url?: string;
  user?: string;
  token?: string;
}

export const DEFAULT_URL = 'http://127.0.0.1:7070';

/**
 * Flags win over EPH_URL / EPH_USER / EPH_TOKEN, which win over the default
 * URL. Checked before anything is sent so a typo costs no round trip.
 *
 * @example
 * resolveSettings({ user: 'u1' }, { EPH_TOKEN: 't' }) // { url: 'http://127.0.0.1:7070', user: 'u1', token: 't' }
 */
export function resolveSettings(flags: SettingFlags, env: NodeJS.ProcessEnv = process.env): ClientSettings {
  const raw = flags.url ?? (env.EPH_URL || DEFAULT_URL);
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new UsageError(`--url/EPH_URL: expected a URL like ${DEFAULT_URL}, got '${raw}'`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new UsageError(`--url/EPH_URL: expected an http:// or https:// URL, got '${raw}'`);
  }
  const user = flags.user ?? env.EPH_USER ?? '';
  const token = flags.token ?? env.EPH_TOKEN ?? '';
  if (!user || !token) {
    const missing = [!user && 'EPH_USER (--user)', !token && 'EPH_TOKEN (--token)'].filter(Boolean).join(' and ');
    throw new UsageError(`no credentials: set ${missing}; \`eph users add NAME\` prints them`);
  }
  if (user.includes(':')) throw new UsageError(`--user/EPH_USER: a user id cannot contain ':', got '${user}'`);
  return { url: raw.replace(/\/+$/, ''), user, token };
}
