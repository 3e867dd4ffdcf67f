import { EphError } from '../core/errors.ts';

/** One condition of an If header list: a state token or an entity tag, maybe negated. */
export interface IfCondition {
  not: boolean;
  token?: string;
  etag?: string;
}

/** One list of an If header; `resource` is the tag (a URL as sent), null for an untagged list. */
export interface IfList {
  resource: string | null;
  conditions: IfCondition[];
}

/**
 * Parses an If header (RFC 4918 §10.4): tagged and untagged lists of
 * `Not`, `<state-token>` and `[etag]` conditions. Malformed headers are
 * BAD_REQUEST.
 */
export function parseIf(header: string): IfList[] {
  const lists: IfList[] = [];
  let i = 0;
  let resource: string | null = null;
  const bad = (why: string): EphError => new EphError('BAD_REQUEST', `If header: ${why}`);
  const skipSpace = (): void => {
    while (i < header.length && /\s/.test(header[i] ?? '')) i++;
  };
  const until = (close: string): string => {
    const end = header.indexOf(close, i + 1);
    if (end < 0) throw bad(`missing '${close}'`);
    const s = header.slice(i + 1, end);
    i = end + 1;
    return s;
  };
  skipSpace();
  if (i >= header.length) throw bad('empty');
  while (i < header.length) {
    const c = header[i];
    if (c === '<') resource = until('>');
    else if (c === '(') {
      i++;
      const conditions: IfCondition[] = [];
      for (;;) {
        skipSpace();
        if (header[i] === ')') {
          i++;
          break;
        }
        let not = false;
        if (/^not\b/i.test(header.slice(i, i + 4)) && header.slice(i, i + 3).toLowerCase() === 'not') {
          not = true;
          i += 3;
          skipSpace();
        }
        if (header[i] === '<') conditions.push({ not, token: until('>') });
        else if (header[i] === '[') conditions.push({ not, etag: until(']') });
        else throw bad(`unexpected '${header.slice(i, i + 10)}'`);
      }
      if (conditions.length === 0) throw bad('an empty list');
      lists.push({ resource, conditions });
    } else throw bad(`unexpected '${header.slice(i, i + 10)}'`);
    skipSpace();
  }
  if (lists.length === 0) throw bad('no list');
  return lists;
}

/** Every state token the header names outside a `Not`: the lock tokens the request submits. */
export function submittedTokens(lists: IfList[]): Set<string> {
  const out = new Set<string>();
  for (const l of lists) for (const c of l.conditions) if (c.token !== undefined && !c.not) out.add(c.token);
  return out;
}
