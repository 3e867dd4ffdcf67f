import { rm, stat, statfs, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Size of the reserve: room for the database writes of a few deletes. */
export const RESERVE_BYTES = 8 << 20;

/**
 * A file of `bytes` kept on the data directory's file system so that space
 * can still be freed through the API when the disk is full: deleting an
 * instance needs a few database pages before it removes any file. Released
 * when a delete arrives while less than `bytes` are free; made again once
 * twice that much is free.
 *
 * @example
 * const reserve = new SpaceReserve(join(dataDir, 'space-reserve'));
 * await reserve.ensure();
 * // on DELETE: await reserve.releaseIfLow(); afterwards: void reserve.ensure();
 */
export class SpaceReserve {
  readonly path: string;
  readonly bytes: number;

  constructor(path: string, bytes = RESERVE_BYTES) {
    this.path = path;
    this.bytes = bytes;
  }

  /** Makes the reserve unless it exists or the disk is too full for it; never throws. */
  async ensure(): Promise<boolean> {
    try {
      if ((await stat(this.path).then((s) => s.size, () => -1)) >= this.bytes) return true;
      if ((await this.#free()) < 2 * this.bytes) return false;
      // Written, not truncated to size: a sparse file would hold no blocks to give back.
      await writeFile(this.path, Buffer.alloc(this.bytes), { mode: 0o600 });
      return true;
    } catch {
      await rm(this.path, { force: true }).catch(() => undefined);
      return false;
    }
  }

  /** Removes the reserve when less than its size is free; true when it did. Never throws. */
  async releaseIfLow(): Promise<boolean> {
    try {
      if ((await this.#free()) >= this.bytes) return false;
      await rm(this.path);
      return true;
    } catch {
      return false;
    }
  }

  async #free(): Promise<number> {
    const s = await statfs(dirname(this.path));
    return s.bavail * s.bsize;
  }
}
