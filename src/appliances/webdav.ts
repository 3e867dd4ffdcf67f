import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { EphError, isEphError } from '../core/errors.ts';
import { contentTypeOf } from './content-types.ts';
import type { StaticEntry, StaticFiles } from './static-files.ts';
import { etagOf, normalizePath } from './static-files.ts';
import { requestPath, sendFailure, sendSimple, serveFile } from './static-site.ts';
import type { IfList } from './webdav-if.ts';
import { parseIf, submittedTokens } from './webdav-if.ts';
import type { DavLock } from './webdav-locks.ts';
import { LockTable, MAX_LOCK_OWNER_BYTES, lockSeconds } from './webdav-locks.ts';
import type { PropChange } from './webdav-props.ts';
import { DeadPropStore } from './webdav-props.ts';
import type { XmlElement } from './webdav-xml.ts';
import { DAV_NS, MAX_XML_BODY_BYTES, davChild, elements, escapeXml as xml, innerXml, isDav, parseXml, propElement } from './webdav-xml.ts';

/** Methods a WebDAV route must accept besides the usual ones (for a router that checks them). */
export const WEBDAV_METHODS = ['PROPFIND', 'PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK'] as const;

const ALLOW = 'OPTIONS, GET, HEAD, PUT, DELETE, MKCOL, PROPFIND, PROPPATCH, COPY, MOVE, LOCK, UNLOCK';

/** Live properties: computed from the file, never stored, refused by PROPPATCH (403). */
const LIVE = ['displayname', 'resourcetype', 'getlastmodified', 'creationdate', 'getcontentlength', 'getcontenttype', 'getetag', 'supportedlock', 'lockdiscovery'];

/** A WebDAV answer other than the API's statuses: 412, 423, 502 (RFC 4918). */
export class WebDavError extends Error {
  readonly code: 'PRECONDITION_FAILED' | 'LOCKED' | 'BAD_GATEWAY';
  readonly status: number;

  constructor(code: WebDavError['code'], message: string) {
    super(message);
    this.name = 'WebDavError';
    this.code = code;
    this.status = code === 'PRECONDITION_FAILED' ? 412 : code === 'LOCKED' ? 423 : 502;
  }
}

interface DavState {
  locks: LockTable;
  props: DeadPropStore;
}

/** One state per site: the StaticFiles object of a site lives as long as the site. */
const states = new WeakMap<StaticFiles, DavState>();

function stateOf(files: StaticFiles): DavState {
  let s = states.get(files);
  if (!s) {
    // Beside the served directory, never inside it: properties are not published.
    s = { locks: new LockTable(), props: new DeadPropStore(join(dirname(files.root), 'webdav-props.json')) };
    states.set(files, s);
  }
  return s;
}

/**
 * WebDAV class 1 and 2 (RFC 4918) over a static appliance's files:
 * OPTIONS, GET/HEAD, PUT, DELETE, MKCOL, PROPFIND, PROPPATCH (dead
 * properties in a bounded sidecar store), COPY and MOVE (Overwrite, Depth),
 * LOCK/UNLOCK (exclusive and shared write locks, timeouts, refresh, lock
 * tokens in If headers). The caller has authenticated the request already:
 * this answers every method it is given. `prefix` is the path the share is
 * mounted at (e.g. `/v1/appliances/site/dav`): hrefs are answered under it,
 * and a Destination or If resource outside it is refused.
 */
export function handleWebDav(files: StaticFiles, req: IncomingMessage, res: ServerResponse, prefix: string): void {
  new DavRequest(files, req, res, prefix.replace(/\/+$/, '')).run().catch((e: unknown) => fail(res, e));
}

function fail(res: ServerResponse, e: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (e instanceof WebDavError) return sendSimple(res, e.status, {}, `${e.message}\n`);
  // Over a size bound while storing: 507 Insufficient Storage is what WebDAV clients understand.
  if (isEphError(e) && e.code === 'STORAGE_FULL') return sendSimple(res, 507, {}, `${e.message}\n`);
  sendFailure(res, e);
}

class DavRequest {
  readonly #files: StaticFiles;
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #prefix: string;
  readonly #st: DavState;
  #ifLists: IfList[] | null = null;

  constructor(files: StaticFiles, req: IncomingMessage, res: ServerResponse, prefix: string) {
    this.#files = files;
    this.#req = req;
    this.#res = res;
    this.#prefix = prefix;
    this.#st = stateOf(files);
  }

  async run(): Promise<void> {
    const req = this.#req;
    const raw = davPath(req.url ?? '/', this.#prefix);
    if (raw === null) return sendSimple(this.#res, 400, {}, 'Bad Request\n');
    const rel = normalizePath(raw);
    const ifHeader = header(req, 'if');
    if (ifHeader !== undefined) {
      this.#ifLists = parseIf(ifHeader);
      // LOCK evaluates it itself (a refresh names its lock there).
      if (req.method !== 'LOCK' && !(await this.#ifHolds(rel))) throw new WebDavError('PRECONDITION_FAILED', 'the If header does not hold');
    }
    switch (req.method) {
      case 'OPTIONS':
        return sendSimple(this.#res, 200, { dav: '1, 2', allow: ALLOW, 'ms-author-via': 'DAV' }, '');
      case 'GET':
      case 'HEAD':
        return this.#get(rel);
      case 'PUT':
        return this.#put(rel);
      case 'DELETE':
        return this.#delete(rel);
      case 'MKCOL':
        return this.#mkcol(rel);
      case 'PROPFIND':
        return this.#propfind(rel);
      case 'PROPPATCH':
        return this.#proppatch(rel);
      case 'COPY':
      case 'MOVE':
        return this.#copyMove(rel, req.method === 'MOVE');
      case 'LOCK':
        return this.#lock(rel);
      case 'UNLOCK':
        return this.#unlock(rel);
      default:
        return sendSimple(this.#res, 405, { allow: ALLOW }, 'Method Not Allowed\n');
    }
  }

  async #get(rel: string): Promise<void> {
    const e = await this.#files.entry(rel);
    if (!e) return sendSimple(this.#res, 404, {}, 'Not Found\n');
    if (e.stats.isFile()) return serveFile(this.#req, this.#res, e);
    return sendSimple(this.#res, 200, { 'content-type': 'text/html; charset=utf-8' }, this.#listing(await this.#files.children(e), e));
  }

  async #put(rel: string): Promise<void> {
    const existing = await this.#files.entry(rel);
    if (existing?.stats.isDirectory()) return sendSimple(this.#res, 405, { allow: ALLOW }, 'PUT on a collection\n');
    this.#mayWrite(rel, !existing, false);
    const { created, info } = await this.#files.put(rel, this.#req, false);
    return sendSimple(this.#res, created ? 201 : 204, { etag: info.etag });
  }

  async #delete(rel: string): Promise<void> {
    if (!(await this.#files.entry(rel))) return sendSimple(this.#res, 404, {}, 'Not Found\n');
    this.#mayWrite(rel, true, true);
    await this.#files.delete(rel);
    await this.#st.props.delete(rel);
    this.#st.locks.removeWithin(rel);
    return sendSimple(this.#res, 204, {});
  }

  async #mkcol(rel: string): Promise<void> {
    if ((await readBody(this.#req)).length > 0) return sendSimple(this.#res, 415, {}, 'MKCOL with a body is not supported\n');
    if (await this.#files.entry(rel)) return sendSimple(this.#res, 405, { allow: ALLOW }, 'Already exists\n');
    this.#mayWrite(rel, true, false);
    await this.#files.mkcol(rel);
    return sendSimple(this.#res, 201, {});
  }

  async #propfind(rel: string): Promise<void> {
    const body = await readBody(this.#req);
    let mode: 'allprop' | 'propname' | XmlElement[] = 'allprop';
    if (body.trim() !== '') {
      const root = parseXml(body);
      if (!isDav(root, 'propfind')) throw new EphError('BAD_REQUEST', 'PROPFIND: expected a DAV:propfind element');
      const prop = davChild(root, 'prop');
      if (prop) mode = elements(prop);
      else if (davChild(root, 'propname')) mode = 'propname';
      else if (!davChild(root, 'allprop')) throw new EphError('BAD_REQUEST', 'PROPFIND: expected prop, propname or allprop');
    }
    const e = await this.#files.entry(rel);
    if (!e) return sendSimple(this.#res, 404, {}, 'Not Found\n');
    const depth = header(this.#req, 'depth') ?? 'infinity';
    if (!['0', '1', 'infinity'].includes(depth.toLowerCase())) throw new EphError('BAD_REQUEST', `Depth: expected 0, 1 or infinity, got '${depth}'`);
    const entries = [e];
    // Depth infinity is answered as 1: a whole-site walk per request is not offered (RFC 4918 §9.1 lets a server limit it).
    if (e.stats.isDirectory() && depth !== '0') entries.push(...(await this.#files.children(e)));
    const parts: string[] = [];
    for (const entry of entries) parts.push(await this.#propResponse(entry, mode));
    return this.#multistatus(parts);
  }

  async #propResponse(e: StaticEntry, mode: 'allprop' | 'propname' | XmlElement[]): Promise<string> {
    const live = this.#liveProps(e);
    const dead = await this.#st.props.get(e.path);
    const found: string[] = [];
    const missing: string[] = [];
    if (mode === 'allprop') {
      found.push(...Object.entries(live).map(([k, v]) => `<D:${k}>${v}</D:${k}>`));
      found.push(...dead.map((p) => propElement(p.ns, p.local, p.value)));
    } else if (mode === 'propname') {
      found.push(...Object.keys(live).map((k) => `<D:${k}/>`));
      found.push(...dead.map((p) => propElement(p.ns, p.local, null)));
    } else {
      for (const want of mode) {
        const liveValue = want.ns === DAV_NS ? live[want.local] : undefined;
        const deadProp = dead.find((p) => p.ns === want.ns && p.local === want.local);
        if (liveValue !== undefined) found.push(`<D:${want.local}>${liveValue}</D:${want.local}>`);
        else if (deadProp) found.push(propElement(deadProp.ns, deadProp.local, deadProp.value));
        else missing.push(propElement(want.ns, want.local, null));
      }
    }
    const stats = [];
    if (found.length || missing.length === 0) stats.push(propstat(found, '200 OK'));
    if (missing.length) stats.push(propstat(missing, '404 Not Found'));
    return `<D:response><D:href>${xml(this.#href(e.path, e.stats.isDirectory()))}</D:href>${stats.join('')}</D:response>`;
  }

  #liveProps(e: StaticEntry): Record<string, string> {
    const dir = e.stats.isDirectory();
    const name = e.path === '' ? '/' : (e.path.split('/').pop() ?? '');
    const live: Record<string, string> = {
      displayname: xml(name),
      resourcetype: dir ? '<D:collection/>' : '',
      getlastmodified: new Date(e.stats.mtimeMs).toUTCString(),
      creationdate: new Date(e.stats.birthtimeMs || e.stats.ctimeMs).toISOString(),
    };
    if (!dir) {
      live.getcontentlength = String(e.stats.size);
      live.getcontenttype = xml(contentTypeOf(e.path));
      live.getetag = xml(etagOf(e.stats));
    }
    live.supportedlock =
      '<D:lockentry><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>' +
      '<D:lockentry><D:lockscope><D:shared/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockentry>';
    live.lockdiscovery = this.#st.locks.covering(e.path).map((l) => this.#activeLock(l)).join('');
    return live;
  }

  async #proppatch(rel: string): Promise<void> {
    const body = await readBody(this.#req);
    const root = parseXml(body);
    if (!isDav(root, 'propertyupdate')) throw new EphError('BAD_REQUEST', 'PROPPATCH: expected a DAV:propertyupdate element');
    const e = await this.#files.entry(rel);
    if (!e) return sendSimple(this.#res, 404, {}, 'Not Found\n');
    this.#mayWrite(rel, false, false);
    const changes: PropChange[] = [];
    for (const op of elements(root)) {
      if (op.ns !== DAV_NS || (op.local !== 'set' && op.local !== 'remove')) continue;
      const prop = davChild(op, 'prop');
      if (!prop) throw new EphError('BAD_REQUEST', `PROPPATCH: DAV:${op.local} without DAV:prop`);
      for (const p of elements(prop)) {
        changes.push(op.local === 'set' ? { op: 'set', prop: { ns: p.ns, local: p.local, value: innerXml(p) } } : { op: 'remove', ns: p.ns, local: p.local });
      }
    }
    const name = (c: PropChange): { ns: string; local: string } => (c.op === 'set' ? c.prop : c);
    const isLive = (c: PropChange): boolean => name(c).ns === DAV_NS && LIVE.includes(name(c).local);
    // All or nothing (RFC 4918 §9.2): one refused change fails the others with 424.
    let refused: string | null = changes.some(isLive) ? '403 Forbidden' : null;
    if (refused === null) {
      try {
        await this.#st.props.patch(rel, changes);
      } catch (err) {
        if (!(isEphError(err) && err.code === 'STORAGE_FULL')) throw err;
        refused = '507 Insufficient Storage';
      }
    }
    const byStatus = new Map<string, string[]>();
    for (const c of changes) {
      const status = refused === null ? '200 OK' : isLive(c) || refused.startsWith('507') ? refused : '424 Failed Dependency';
      const list = byStatus.get(status) ?? [];
      list.push(propElement(name(c).ns, name(c).local, null));
      byStatus.set(status, list);
    }
    const stats = [...byStatus].map(([status, props]) => propstat(props, status)).join('');
    return this.#multistatus([`<D:response><D:href>${xml(this.#href(e.path, e.stats.isDirectory()))}</D:href>${stats}</D:response>`]);
  }

  async #copyMove(rel: string, move: boolean): Promise<void> {
    await readBody(this.#req);
    const dest = this.#destination();
    const src = await this.#files.entry(rel);
    if (!src) return sendSimple(this.#res, 404, {}, 'Not Found\n');
    if (dest === rel || isInside(dest, rel) || src.path === '') return sendSimple(this.#res, 403, {}, 'Cannot copy or move a resource onto or into itself\n');
    const depth = (header(this.#req, 'depth') ?? 'infinity').toLowerCase();
    if (src.stats.isDirectory() && depth !== 'infinity' && (move || depth !== '0')) {
      throw new EphError('BAD_REQUEST', `Depth: ${move ? 'MOVE takes infinity' : 'COPY takes 0 or infinity'}, got '${depth}'`);
    }
    const overwrite = (header(this.#req, 'overwrite') ?? 'T').toUpperCase() !== 'F';
    const parent = await this.#files.entry(parentOf(dest));
    if (!parent?.stats.isDirectory()) return sendSimple(this.#res, 409, {}, 'The destination directory does not exist\n');
    const existing = await this.#files.entry(dest);
    if (existing && !overwrite) return sendSimple(this.#res, 412, {}, 'Destination exists and Overwrite is F\n');
    if (move) this.#mayWrite(rel, true, true);
    this.#mayWrite(dest, true, true);
    if (existing) {
      await this.#files.delete(dest);
      await this.#st.props.delete(dest);
      this.#st.locks.removeWithin(dest);
    }
    if (move) {
      await this.#files.move(rel, dest, true);
      await this.#st.props.transfer(rel, dest, false);
      // Locks stay with the URL they were taken on (RFC 4918 §7.6): the moved resource is no longer locked.
      this.#st.locks.removeWithin(rel);
    } else {
      await this.#files.copy(rel, dest, depth === '0');
      await this.#st.props.transfer(rel, dest, true);
    }
    return sendSimple(this.#res, existing ? 204 : 201, {});
  }

  /** The Destination header as a path of this share: another host is 502, another share or site 403. */
  #destination(): string {
    const raw = header(this.#req, 'destination');
    if (raw === undefined) throw new EphError('BAD_REQUEST', 'Destination header missing');
    let url: URL;
    try {
      url = new URL(raw, 'http://destination.invalid');
    } catch {
      throw new EphError('BAD_REQUEST', 'Destination is not a URL');
    }
    // Behind a proxy the client's host may arrive as X-Forwarded-Host.
    const hosts = [header(this.#req, 'host'), header(this.#req, 'x-forwarded-host')].filter((h): h is string => h !== undefined).map((h) => h.toLowerCase());
    if (url.host !== 'destination.invalid' && hosts.length > 0 && !hosts.includes(url.host.toLowerCase())) {
      throw new WebDavError('BAD_GATEWAY', 'Destination is on another server');
    }
    const path = davPath(url.pathname, this.#prefix);
    if (path === null) throw new EphError('FORBIDDEN', 'Destination is outside this share');
    return normalizePath(path);
  }

  async #lock(rel: string): Promise<void> {
    const body = await readBody(this.#req);
    const locks = this.#st.locks;
    const seconds = lockSeconds(header(this.#req, 'timeout'));
    if (body.trim() === '') {
      // A refresh (RFC 4918 §9.10.2): the lock is named in the If header.
      const tokens = this.#ifLists ? submittedTokens(this.#ifLists) : new Set<string>();
      const lock = locks.covering(rel).find((l) => tokens.has(l.token));
      if (!lock) throw new WebDavError('PRECONDITION_FAILED', 'LOCK refresh: no lock of this resource is named in the If header');
      locks.refresh(lock, seconds);
      return this.#lockAnswer(lock, 200);
    }
    const root = parseXml(body);
    if (!isDav(root, 'lockinfo')) throw new EphError('BAD_REQUEST', 'LOCK: expected a DAV:lockinfo element');
    const scopeEl = davChild(root, 'lockscope');
    const scope = scopeEl && davChild(scopeEl, 'shared') ? 'shared' : scopeEl && davChild(scopeEl, 'exclusive') ? 'exclusive' : null;
    const typeEl = davChild(root, 'locktype');
    if (scope === null || !typeEl || !davChild(typeEl, 'write')) throw new EphError('BAD_REQUEST', 'LOCK: expected an exclusive or shared write lock');
    const ownerEl = davChild(root, 'owner');
    const owner = ownerEl ? innerXml(ownerEl) : '';
    if (Buffer.byteLength(owner) > MAX_LOCK_OWNER_BYTES) throw new EphError('BAD_REQUEST', `LOCK: owner is over ${MAX_LOCK_OWNER_BYTES} bytes`);
    const depthHeader = (header(this.#req, 'depth') ?? 'infinity').toLowerCase();
    if (depthHeader !== '0' && depthHeader !== 'infinity') throw new EphError('BAD_REQUEST', `Depth: LOCK takes 0 or infinity, got '${depthHeader}'`);
    if (this.#ifLists && !(await this.#ifHolds(rel))) throw new WebDavError('PRECONDITION_FAILED', 'the If header does not hold');
    const depth = depthHeader === '0' ? 0 : Infinity;
    if (locks.conflicts(rel, scope, depth).length) throw new WebDavError('LOCKED', `/${rel} is locked`);
    let created = false;
    if (!(await this.#files.entry(rel))) {
      // Locking an unmapped URL makes an empty file (RFC 4918 §7.3).
      this.#mayWrite(rel, true, false);
      await this.#files.put(rel, Readable.from([]), false);
      created = true;
    }
    const lock = locks.add(rel, scope, depth, owner, seconds);
    if (!lock) return sendSimple(this.#res, 507, {}, 'This site holds too many locks; unlock some first\n');
    return this.#lockAnswer(lock, created ? 201 : 200);
  }

  async #unlock(rel: string): Promise<void> {
    const raw = header(this.#req, 'lock-token');
    const token = raw === undefined ? '' : raw.trim().replace(/^<(.*)>$/, '$1');
    if (token === '') throw new EphError('BAD_REQUEST', 'UNLOCK: Lock-Token header missing');
    const lock = this.#st.locks.covering(rel).find((l) => l.token === token);
    if (!lock) return sendSimple(this.#res, 409, {}, 'No such lock on this resource\n');
    this.#st.locks.remove(token);
    return sendSimple(this.#res, 204, {});
  }

  #lockAnswer(lock: DavLock, status: number): void {
    const body = `<?xml version="1.0" encoding="utf-8"?>\n<D:prop xmlns:D="DAV:"><D:lockdiscovery>${this.#activeLock(lock)}</D:lockdiscovery></D:prop>\n`;
    sendSimple(this.#res, status, { 'content-type': 'application/xml; charset=utf-8', 'lock-token': `<${lock.token}>` }, body);
  }

  #activeLock(l: DavLock): string {
    return (
      `<D:activelock><D:locktype><D:write/></D:locktype><D:lockscope><D:${l.scope}/></D:lockscope>` +
      `<D:depth>${l.depth === 0 ? '0' : 'infinity'}</D:depth>${l.owner ? `<D:owner>${l.owner}</D:owner>` : ''}` +
      `<D:timeout>Second-${this.#st.locks.secondsLeft(l)}</D:timeout><D:locktoken><D:href>${xml(l.token)}</D:href></D:locktoken>` +
      `<D:lockroot><D:href>${xml(this.#href(l.root, false))}</D:href></D:lockroot></D:activelock>`
    );
  }

  /**
   * Refuses (423) a change of `rel` whose locks' tokens the request did not
   * submit in its If header. `member`: the change adds or removes `rel`
   * itself, which changes its parent collection too (a depth-0 lock there
   * counts). `deep`: everything below `rel` is changed as well.
   */
  #mayWrite(rel: string, member: boolean, deep: boolean): void {
    const locks = this.#st.locks;
    const tokens = this.#ifLists ? submittedTokens(this.#ifLists) : new Set<string>();
    const groups: DavLock[][] = [locks.covering(rel)];
    if (member && rel !== '') groups.push(locks.covering(parentOf(rel)).filter((l) => l.root === parentOf(rel)));
    if (deep) {
      const byRoot = new Map<string, DavLock[]>();
      for (const l of locks.within(rel)) if (l.root !== rel) byRoot.set(l.root, [...(byRoot.get(l.root) ?? []), l]);
      groups.push(...byRoot.values());
    }
    for (const g of groups) {
      if (g.length && !g.some((l) => tokens.has(l.token))) throw new WebDavError('LOCKED', `/${g[0]?.root ?? rel} is locked; submit its lock token in an If header`);
    }
  }

  /** RFC 4918 §10.4: true when one list holds for its resource. */
  async #ifHolds(rel: string): Promise<boolean> {
    for (const list of this.#ifLists ?? []) {
      let target: string | null = rel;
      if (list.resource !== null) {
        try {
          const p = davPath(new URL(list.resource, 'http://if.invalid').pathname, this.#prefix);
          target = p === null ? null : normalizePath(p);
        } catch {
          target = null;
        }
      }
      if (target === null) continue;
      const e = await this.#files.entry(target);
      const etag = e ? etagOf(e.stats) : null;
      const covering = this.#st.locks.covering(target);
      const holds = list.conditions.every((c) => {
        const match = c.token !== undefined ? covering.some((l) => l.token === c.token) : etag !== null && c.etag === etag;
        return c.not ? !match : match;
      });
      if (holds) return true;
    }
    return false;
  }

  #multistatus(responses: string[]): void {
    const body = `<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus xmlns:D="DAV:">\n${responses.join('\n')}\n</D:multistatus>\n`;
    sendSimple(this.#res, 207, { 'content-type': 'application/xml; charset=utf-8' }, body);
  }

  #href(rel: string, dir: boolean): string {
    const encoded = rel === '' ? '' : `/${rel.split('/').map(encodeURIComponent).join('/')}`;
    return `${this.#prefix}${encoded}${dir ? '/' : ''}`;
  }

  #listing(children: StaticEntry[], dir: StaticEntry): string {
    const items = children.map(
      (c) => `<li><a href="${xml(this.#href(c.path, c.stats.isDirectory()))}">${xml(c.path.split('/').pop() ?? '')}${c.stats.isDirectory() ? '/' : ''}</a></li>`,
    );
    return `<!doctype html><title>/${xml(dir.path)}</title><ul>${items.join('')}</ul>\n`;
  }
}

function propstat(props: string[], status: string): string {
  return `<D:propstat><D:prop>${props.join('')}</D:prop><D:status>HTTP/1.1 ${status}</D:status></D:propstat>`;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** The share-relative path of a request target (percent-decoded), or null when it is not under `prefix`. */
function davPath(url: string, prefix: string): string | null {
  const path = requestPath(url);
  if (path === null) return null;
  if (path !== prefix && !path.startsWith(`${prefix}/`)) return null;
  return path.slice(prefix.length);
}

function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

function isInside(path: string, root: string): boolean {
  return root === '' || path.startsWith(`${root}/`);
}

/** The request body as text, at most {@link MAX_XML_BODY_BYTES} (bodies of these methods are small XML). */
async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of req) {
    n += (chunk as Buffer).length;
    if (n > MAX_XML_BODY_BYTES) throw new EphError('ARCHIVE_TOO_LARGE', `request body: over ${MAX_XML_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

