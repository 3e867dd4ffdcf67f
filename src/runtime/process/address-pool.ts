import { EphError } from '../../core/errors.ts';

/** One /30 block: the host keeps `.1`, the namespace gets `.2`. */
export interface AddressBlock {
  index: number;
  hostIp: string;
  nsIp: string;
  prefixLength: 30;
}

/**
 * Hands out /30 blocks of a private IPv4 range, lowest free first, so that
 * freed blocks are reused and the range stays compact.
 *
 * @example
 * const pool = new AddressPool('10.213.0.0/16');
 * const b = pool.allocate(new Set()); // { hostIp: '10.213.0.1', nsIp: '10.213.0.2', ... }
 * pool.release(b);
 */
export class AddressPool {
  readonly #base: number;
  readonly #blocks: number;
  readonly #used = new Set<number>();

  constructor(cidr: string) {
    const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr.trim());
    const octets = m ? m.slice(1, 5).map(Number) : [];
    const prefix = m ? Number(m[5]) : NaN;
    if (!m || octets.some((o) => o > 255) || !(prefix >= 8 && prefix <= 30)) {
      throw new EphError('INVALID_CONFIG', `subnet: expected an IPv4 range like 10.213.0.0/16 (prefix 8..30), got '${cidr}'`);
    }
    const addr = octets.reduce((a, o) => a * 256 + o, 0);
    const size = 2 ** (32 - prefix);
    if (addr % size !== 0) {
      throw new EphError('INVALID_CONFIG', `subnet: '${cidr}' has host bits set; did you mean ${toIp(addr - (addr % size))}/${prefix}?`);
    }
    this.#base = addr;
    this.#blocks = size / 4;
  }

  /** Number of blocks currently handed out. */
  get size(): number {
    return this.#used.size;
  }

  /**
   * Takes the lowest free block whose addresses are not in `taken` (addresses
   * already configured on this host, e.g. by another process using the same range).
   */
  allocate(taken: ReadonlySet<string>): AddressBlock {
    for (let i = 0; i < this.#blocks; i++) {
      if (this.#used.has(i)) continue;
      const block = this.#block(i);
      if (taken.has(block.hostIp) || taken.has(block.nsIp)) continue;
      this.#used.add(i);
      return block;
    }
    throw new EphError('UNAVAILABLE', `no free /30 address block left in the instance subnet (${this.#blocks} blocks)`);
  }

  release(block: AddressBlock): void {
    this.#used.delete(block.index);
  }

  #block(index: number): AddressBlock {
    const net = this.#base + index * 4;
    return { index, hostIp: toIp(net + 1), nsIp: toIp(net + 2), prefixLength: 30 };
  }
}

function toIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}
