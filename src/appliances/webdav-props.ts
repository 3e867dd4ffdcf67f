import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { EphError } from '../core/errors.ts';

/** One dead property: a name in a namespace and its value as standalone XML. */
export interface DeadProp {
  ns: string;
  local: string;
  /** The value's content as XML (text escaped), see webdav-xml innerXml. */
  value: string;
}

/** Bytes (names, values and paths) all dead properties of one site may take. */
export const MAX_DEAD_PROP_BYTES = 1024 * 1024;
/** Dead properties one file or directory may have. */
export const MAX_DEAD_PROPS_PER_RESOURCE = 256;

/** One change of a PROPPATCH, in document order. */
export type PropChange = { op: 'set'; prop: DeadProp } | { op: 'remove'; ns: string; local: string };

/**
 * The dead properties (RFC 4918 §4) of one site's files, kept in a JSON
 * sidecar file outside the served directory, so that they are never
 * published. Bounded in total ({@link MAX_DEAD_PROP_BYTES}) and per
 * resource, so that PROPPATCH cannot fill memory or disk. Changes are
 * serialised and written through a temporary file renamed into place.
 */
export class DeadPropStore {
  readonly #file: string;
  #props: Map<string, DeadProp[]> | null = null;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(file: string) {
    this.#file = file;
  }

  async get(path: string): Promise<DeadProp[]> {
    return (await this.#load()).get(path) ?? [];
  }

  /**
   * Applies every change or none. Throws INSUFFICIENT_STORAGE past the bounds
   * (nothing changed).
   */
  patch(path: string, changes: PropChange[]): Promise<void> {
    return this.#serial(async (all) => {
      const list = [...(all.get(path) ?? [])];
      for (const c of changes) {
        const ns = c.op === 'set' ? c.prop.ns : c.ns;
        const local = c.op === 'set' ? c.prop.local : c.local;
        const i = list.findIndex((p) => p.ns === ns && p.local === local);
        if (c.op === 'remove') {
          if (i >= 0) list.splice(i, 1);
        } else if (i >= 0) list[i] = c.prop;
        else list.push(c.prop);
      }
      if (list.length > MAX_DEAD_PROPS_PER_RESOURCE) {
        throw new EphError('STORAGE_FULL', `a resource may have at most ${MAX_DEAD_PROPS_PER_RESOURCE} dead properties`);
      }
      const next = new Map(all);
      if (list.length) next.set(path, list);
      else next.delete(path);
      if (sizeOf(next) > MAX_DEAD_PROP_BYTES) {
        throw new EphError('STORAGE_FULL', `the dead properties of a site may take at most ${MAX_DEAD_PROP_BYTES} bytes`);
      }
      return next;
    });
  }

  /** Forgets the properties of `path` and everything under it. */
  delete(path: string): Promise<void> {
    return this.#serial(async (all) => {
      const next = new Map(all);
      for (const k of all.keys()) if (under(k, path)) next.delete(k);
      return next.size === all.size ? null : next;
    });
  }

  /** Moves (or copies) the properties of `from` and everything under it to `to`, replacing what `to` had. */
  transfer(from: string, to: string, keepSource: boolean): Promise<void> {
    return this.#serial(async (all) => {
      const next = new Map(all);
      for (const k of all.keys()) if (under(k, to)) next.delete(k);
      for (const [k, v] of all) {
        if (!under(k, from)) continue;
        if (!keepSource) next.delete(k);
        next.set(to + k.slice(from.length), v);
      }
      // A copy may pass the bound; a move never grows the store.
      if (keepSource && sizeOf(next) > MAX_DEAD_PROP_BYTES) return null;
      return next;
    });
  }

  /** Runs `change` after the previous one; a non-null result is written and kept. */
  #serial(change: (all: Map<string, DeadProp[]>) => Promise<Map<string, DeadProp[]> | null>): Promise<void> {
    const run = this.#queue.then(async () => {
      const next = await change(await this.#load());
      if (next === null) return;
      await this.#save(next);
      this.#props = next;
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #load(): Promise<Map<string, DeadProp[]>> {
    if (this.#props) return this.#props;
    let parsed: unknown = {};
    try {
      parsed = JSON.parse(await readFile(this.#file, 'utf8'));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') parsed = {};
    }
    const map = new Map<string, DeadProp[]>();
    if (typeof parsed === 'object' && parsed !== null) {
      for (const [k, v] of Object.entries(parsed)) if (Array.isArray(v)) map.set(k, v as DeadProp[]);
    }
    this.#props = map;
    return map;
  }

  async #save(map: Map<string, DeadProp[]>): Promise<void> {
    const temp = `${this.#file}.${randomBytes(4).toString('hex')}`;
    try {
      await writeFile(temp, JSON.stringify(Object.fromEntries(map)), { mode: 0o600 });
      await rename(temp, this.#file);
    } catch (e) {
      await rm(temp, { force: true });
      throw e;
    }
  }
}

function under(key: string, path: string): boolean {
  return path === '' || key === path || key.startsWith(`${path}/`);
}

function sizeOf(map: Map<string, DeadProp[]>): number {
  let n = 0;
  for (const [k, list] of map) {
    n += k.length;
    for (const p of list) n += p.ns.length + p.local.length + p.value.length;
  }
  return n;
}
