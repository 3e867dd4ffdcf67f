import { SaxesParser } from 'saxes';
import { EphError } from '../core/errors.ts';

/** An element of a WebDAV request body, with its namespace resolved. */
export interface XmlElement {
  /** Namespace URI ('' for none). */
  ns: string;
  local: string;
  attrs: { ns: string; local: string; value: string }[];
  children: XmlNode[];
}

export type XmlNode = XmlElement | string;

export const DAV_NS = 'DAV:';

/** Largest request body a WebDAV method parses (PROPFIND, PROPPATCH, LOCK). */
export const MAX_XML_BODY_BYTES = 256 * 1024;
/** Deepest element nesting accepted: a deeper body is an attack, not a property value. */
const MAX_DEPTH = 64;

/**
 * Parses a request body as namespace-aware XML (XML 1.0 + Namespaces 1.0,
 * by saxes). Anything not well-formed, an unbound prefix, a prefix
 * undeclared with `xmlns:p=""` (saxes refuses both), a DOCTYPE (no entity
 * tricks) or a tree over
 * {@link MAX_DEPTH} levels is BAD_REQUEST: RFC 4918 §8.2 asks for 400.
 */
export function parseXml(body: string): XmlElement {
  const parser = new SaxesParser({ xmlns: true, position: false });
  const stack: XmlElement[] = [];
  let root: XmlElement | null = null;
  let failure: string | null = null;
  parser.on('error', (e) => {
    failure ??= e.message;
  });
  parser.on('doctype', () => {
    failure ??= 'a DOCTYPE is not accepted';
  });
  parser.on('opentag', (tag) => {
    const el: XmlElement = {
      ns: tag.uri ?? '',
      local: tag.local ?? tag.name,
      attrs: Object.values(tag.attributes)
        .filter((a) => a.prefix !== 'xmlns' && a.name !== 'xmlns')
        .map((a) => ({ ns: a.uri ?? '', local: a.local ?? a.name, value: a.value })),
      children: [],
    };
    const parent = stack.at(-1);
    if (parent) parent.children.push(el);
    else root ??= el;
    stack.push(el);
    if (stack.length > MAX_DEPTH) failure ??= `elements nested deeper than ${MAX_DEPTH}`;
  });
  parser.on('closetag', () => {
    stack.pop();
  });
  const text = (t: string): void => {
    const parent = stack.at(-1);
    if (parent) parent.children.push(t);
  };
  parser.on('text', text);
  parser.on('cdata', text);
  try {
    parser.write(body).close();
  } catch (e) {
    failure ??= (e as Error).message;
  }
  if (failure !== null) throw new EphError('BAD_REQUEST', `request body: not well-formed XML (${String(failure).slice(0, 200)})`);
  if (root === null) throw new EphError('BAD_REQUEST', 'request body: no XML element');
  return root;
}

/** The element children of `el`. */
export function elements(el: XmlElement): XmlElement[] {
  return el.children.filter((c): c is XmlElement => typeof c !== 'string');
}

/** The first DAV: child named `local`, or undefined. */
export function davChild(el: XmlElement, local: string): XmlElement | undefined {
  return elements(el).find((c) => c.ns === DAV_NS && c.local === local);
}

export function isDav(el: XmlElement, local: string): boolean {
  return el.ns === DAV_NS && el.local === local;
}

/**
 * The content of an element as XML that stands alone: every element
 * declares its own namespace (`xmlns="…"`), attributes in a namespace get a
 * prefix declared on the same element. Used to keep a dead property's value
 * and an owner element exactly, whatever prefixes the client chose.
 */
export function innerXml(el: XmlElement): string {
  return el.children.map((c) => (typeof c === 'string' ? escapeXml(c) : outerXml(c))).join('');
}

function outerXml(el: XmlElement): string {
  const decls = [`xmlns="${escapeXml(el.ns)}"`];
  const attrs: string[] = [];
  el.attrs.forEach((a, i) => {
    if (a.ns === '') attrs.push(`${a.local}="${escapeXml(a.value)}"`);
    else {
      decls.push(`xmlns:a${i}="${escapeXml(a.ns)}"`);
      attrs.push(`a${i}:${a.local}="${escapeXml(a.value)}"`);
    }
  });
  const open = [el.local, ...decls, ...attrs].join(' ');
  return el.children.length === 0 ? `<${open}/>` : `<${open}>${innerXml(el)}</${el.local}>`;
}

/** Text safe in XML content and attribute values. */
export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/**
 * A property element `<name>value</name>` in the namespace `ns`, declared
 * on the element itself (prefix `p`, or the empty default namespace).
 */
export function propElement(ns: string, local: string, value: string | null): string {
  const open = ns === '' ? `${local} xmlns=""` : `p:${local} xmlns:p="${escapeXml(ns)}"`;
  const close = ns === '' ? local : `p:${local}`;
  return value === null || value === '' ? `<${open}/>` : `<${open}>${value}</${close}>`;
}
