import { EphError } from '../core/errors.ts';

/** Bounds applied to every upload: the archive itself, then what it unpacks to. */
export interface IntakeLimits {
  /** Bytes of the uploaded archive. */
  maxArchiveBytes: number;
  /** Bytes actually written while unpacking (all files together). */
  maxUnpackedBytes: number;
  /** Entries of any kind (files, directories, links). */
  maxEntries: number;
}

/**
 * Counts what an unpack really writes. Declared sizes in headers are only a
 * hint (zip bombs lie about them), so every byte goes through {@link bytes}.
 */
export class UnpackBudget {
  readonly limits: IntakeLimits;
  #entries = 0;
  #bytes = 0;

  constructor(limits: IntakeLimits) {
    this.limits = limits;
  }

  get entries(): number {
    return this.#entries;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Accounts one more entry; throws ARCHIVE_TOO_LARGE past maxEntries. */
  entry(name: string): void {
    if (++this.#entries > this.limits.maxEntries) {
      throw new EphError('ARCHIVE_TOO_LARGE', `archive has more than ${this.limits.maxEntries} entries (limit reached at '${name}')`);
    }
  }

  /**
   * Refuses (ARCHIVE_TOO_LARGE) an entry whose declared size would take the
   * unpack past maxUnpackedBytes, before any of it is written. For formats
   * whose sizes cannot lie (tar: the size frames the stream).
   */
  expect(n: number, name: string): void {
    if (this.#bytes + n > this.limits.maxUnpackedBytes) {
      throw new EphError('ARCHIVE_TOO_LARGE', `archive unpacks to more than ${this.limits.maxUnpackedBytes} bytes (entry '${name}' alone declares ${n} bytes); refused before writing it`);
    }
  }

  /** Accounts n more unpacked bytes of entry `name`; throws ARCHIVE_TOO_LARGE past maxUnpackedBytes. */
  add(n: number, name: string): void {
    this.#bytes += n;
    if (this.#bytes > this.limits.maxUnpackedBytes) {
      throw new EphError('ARCHIVE_TOO_LARGE', `archive unpacks to more than ${this.limits.maxUnpackedBytes} bytes (limit passed while writing '${name}')`);
    }
  }
}
