import { randomUUID } from 'node:crypto';

/** A WebDAV write lock (RFC 4918 §6, §9.10). */
export interface DavLock {
  /** `urn:uuid:…`, as sent in Lock-Token and If headers. */
  token: string;
  /** The locked resource's path ('' is the root). */
  root: string;
  /** 0, or Infinity for the whole subtree. */
  depth: 0 | typeof Infinity;
  scope: 'exclusive' | 'shared';
  /** The client's `owner` element content, kept as standalone XML. */
  owner: string;
  /** Seconds granted at the last LOCK or refresh. */
  timeout: number;
  expiresAt: number;
}

/** Locks one site may hold at once: a client cannot fill memory with them. */
export const MAX_LOCKS_PER_SITE = 256;
/** Largest `owner` a lock keeps (bytes of XML). */
export const MAX_LOCK_OWNER_BYTES = 4096;
/** Longest lock granted; `Infinite` gets this. */
export const MAX_LOCK_SECONDS = 24 * 3600;
/** Granted when the client asks for no timeout. */
export const DEFAULT_LOCK_SECONDS = 3600;

/**
 * The locks of one site, in memory: a restart of the cloud drops them, as
 * RFC 4918 §6.6 allows (clients see their token refused and lock again).
 * Expired locks are forgotten whenever the table is read.
 */
export class LockTable {
  readonly #locks = new Map<string, DavLock>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Every live lock whose scope includes `path` (held on it, or depth infinity on an ancestor). */
  covering(path: string): DavLock[] {
    return this.#live().filter((l) => l.root === path || (l.depth === Infinity && isUnder(path, l.root)));
  }

  /** Live locks held on `path` or anything below it (what a DELETE or MOVE of `path` touches). */
  within(path: string): DavLock[] {
    return this.#live().filter((l) => isUnder(l.root, path) || l.root === path);
  }

  byToken(token: string): DavLock | undefined {
    this.#live();
    return this.#locks.get(token);
  }

  /**
   * Whether a new lock of `scope`/`depth` on `path` would conflict: an
   * exclusive lock conflicts with any lock over the same resources, a
   * shared one with exclusive locks only.
   */
  conflicts(path: string, scope: DavLock['scope'], depth: DavLock['depth']): DavLock[] {
    const over = this.covering(path);
    const below = depth === Infinity ? this.#live().filter((l) => isUnder(l.root, path)) : [];
    return [...over, ...below].filter((l) => scope === 'exclusive' || l.scope === 'exclusive');
  }

  /** Adds a lock; null when the site holds {@link MAX_LOCKS_PER_SITE} already. */
  add(root: string, scope: DavLock['scope'], depth: DavLock['depth'], owner: string, seconds: number): DavLock | null {
    if (this.#live().length >= MAX_LOCKS_PER_SITE) return null;
    const lock: DavLock = { token: `urn:uuid:${randomUUID()}`, root, depth, scope, owner, timeout: seconds, expiresAt: this.#now() + seconds * 1000 };
    this.#locks.set(lock.token, lock);
    return lock;
  }

  refresh(lock: DavLock, seconds: number): void {
    lock.timeout = seconds;
    lock.expiresAt = this.#now() + seconds * 1000;
  }

  remove(token: string): boolean {
    return this.#locks.delete(token);
  }

  /** Drops the locks on `path` and below (the resource was deleted or moved away). */
  removeWithin(path: string): void {
    for (const l of this.within(path)) this.#locks.delete(l.token);
  }

  /** Seconds left on a lock, at least 0. */
  secondsLeft(lock: DavLock): number {
    return Math.max(0, Math.ceil((lock.expiresAt - this.#now()) / 1000));
  }

  #live(): DavLock[] {
    const now = this.#now();
    for (const [t, l] of this.#locks) if (l.expiresAt <= now) this.#locks.delete(t);
    return [...this.#locks.values()];
  }
}

/** Whether `path` is strictly below `root` ('' is the site root). */
export function isUnder(path: string, root: string): boolean {
  return root === '' ? path !== '' : path.startsWith(`${root}/`);
}

/** Seconds asked by a Timeout header (`Second-N` or `Infinite`, first acceptable one), bounded. */
export function lockSeconds(header: string | undefined): number {
  if (!header) return DEFAULT_LOCK_SECONDS;
  for (const part of header.split(',')) {
    const t = part.trim();
    if (/^infinite$/i.test(t)) return MAX_LOCK_SECONDS;
    const m = /^second-(\d{1,12})$/i.exec(t);
    if (m) return Math.min(MAX_LOCK_SECONDS, Math.max(1, Number(m[1])));
  }
  return DEFAULT_LOCK_SECONDS;
}
