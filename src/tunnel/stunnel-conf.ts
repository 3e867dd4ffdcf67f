import { EphError } from '../core/errors.ts';

export interface ClientStunnelConfOptions {
  /** Section name, the appliance's name (e.g. `mydb`). */
  service: string;
  /** Local clear-text address, e.g. `127.0.0.1:5432`. */
  accept: string;
  /** The public TLS-PSK endpoint, `host:port`. */
  connect: string;
  /** Default `psk.txt`, next to the stunnel.conf. */
  pskFile?: string;
}

/**
 * The client `stunnel.conf` a user copies from the appliance's stunnel tab,
 * in exactly the documented shape.
 *
 * @example
 * clientStunnelConf({ service: 'mydb', accept: '127.0.0.1:5432', connect: 'db.example.org:40123' })
 * // [mydb]
 * // client = yes
 * // accept = 127.0.0.1:5432
 * // connect = db.example.org:40123
 * // PSKsecrets = psk.txt
 */
export function clientStunnelConf(opts: ClientStunnelConfOptions): string {
  for (const [name, value] of Object.entries(opts)) {
    // One value per line is the whole syntax: a newline would inject options.
    if (typeof value === 'string' && (/[\r\n]/.test(value) || value.trim() === '')) {
      throw new EphError('INVALID_VALUE', `stunnel.conf ${name}: expected a non-empty single-line value`);
    }
  }
  if (/[[\]]/.test(opts.service)) {
    throw new EphError('INVALID_VALUE', `stunnel.conf service: '${opts.service}' may not contain brackets`);
  }
  return [
    `[${opts.service}]`,
    'client = yes',
    `accept = ${opts.accept}`,
    `connect = ${opts.connect}`,
    `PSKsecrets = ${opts.pskFile ?? 'psk.txt'}`,
    '',
  ].join('\n');
}

export interface StunnelSection {
  name: string;
  /** Line of the `[name]` header (1-based). */
  line: number;
  /**
   * Options by lower-cased name (stunnel matches names case-insensitively);
   * the last value when an option is repeated.
   */
  options: Record<string, string>;
  /** Every value of every option, in order: `connect` may be given several times (failover). */
  all: Record<string, string[]>;
}

export interface StunnelConf {
  /** Global options, before the first section. */
  global: Record<string, string>;
  sections: StunnelSection[];
}

// Options stunnel accepts more than once in one section; any other repeat
// is almost certainly a mistake in a hand-written file.
const REPEATABLE = new Set(['connect', 'options', 'sni', 'curves', 'include', 'redirect', 'socket', 'exec', 'execargs']);

/**
 * Reads a stunnel.conf (e.g. one shipped in an application archive):
 * `; comment` and `# comment` lines, `[section]` headers, `name = value`.
 *
 * @throws EphError INVALID_CONFIG naming the line, e.g.
 *   `stunnel.conf line 4: expected NAME = VALUE, got 'client yes'`
 */
export function parseStunnelConf(text: string): StunnelConf {
  const conf: StunnelConf = { global: {}, sections: [] };
  const globalAll: Record<string, string[]> = {};
  let section: StunnelSection | null = null;
  const sectionLine = new Map<string, number>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const n = i + 1;
    const line = lines[i]!.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith(';') || line.startsWith('#')) continue;
    if (line.startsWith('[')) {
      const m = /^\[([^\]]*)\]$/.exec(line);
      if (!m) throw bad(n, `expected [SECTION], got '${line}'`);
      const name = m[1]!.trim();
      if (name === '') throw bad(n, 'empty section name');
      const first = sectionLine.get(name.toLowerCase());
      if (first !== undefined) throw bad(n, `section [${name}] repeated (first on line ${first})`);
      sectionLine.set(name.toLowerCase(), n);
      section = { name, line: n, options: {}, all: {} };
      conf.sections.push(section);
      continue;
    }
    const eq = line.indexOf('=');
    const key = eq < 0 ? '' : line.slice(0, eq).trim().toLowerCase();
    if (key === '' || key === '__proto__' || !/^[a-z0-9_.-]+$/.test(key)) throw bad(n, `expected NAME = VALUE, got '${line}'`);
    const value = line.slice(eq + 1).trim();
    const options = section ? section.options : conf.global;
    const all = section ? section.all : globalAll;
    if (Object.hasOwn(options, key) && !REPEATABLE.has(key)) {
      throw bad(n, `'${key}' repeated in ${section ? `[${section.name}]` : 'the global options'}`);
    }
    options[key] = value;
    // hasOwn, not ??=: a plain object already "has" keys like `constructor`.
    if (Object.hasOwn(all, key)) all[key]!.push(value);
    else all[key] = [value];
  }
  return conf;
}

function bad(line: number, why: string): EphError {
  return new EphError('INVALID_CONFIG', `stunnel.conf line ${line}: ${why}`);
}
