/**
 * The chunked transfer coding's framing (RFC 9112 §7.1), for request bodies
 * from visitors and response bodies from apps. Split out of http-parse.ts:
 * heads are parsed there, bodies are only scanned here.
 */

// Chunked-body scanner states.
const C_SIZE = 0;
const C_EXT = 1;
const C_SIZE_LF = 2;
const C_DATA = 3;
const C_DATA_CR = 4;
const C_DATA_LF = 5;
const C_TRAILER_START = 6;
const C_TRAILER = 7;
const C_TRAILER_LF = 8;
const C_FINAL_LF = 9;

/** Chunk scanner result: the body is not finished within the given bytes. */
export const CHUNK_MORE = -1;
/** Chunk scanner result: malformed chunked framing. */
export const CHUNK_BAD = -2;

/**
 * Finds where a chunked body ends without copying it (RFC 9112 §7.1), so the
 * gate can forward the bytes as they are and still know where the next
 * message starts. Chunk sizes must be plain hex; extensions are skipped.
 */
export class ChunkScanner {
  #state = C_SIZE;
  #digits = 0;
  #size = 0;
  #remaining = 0;

  reset(): void {
    this.#state = C_SIZE;
    this.#digits = 0;
    this.#size = 0;
    this.#remaining = 0;
  }

  /** Returns the index just past the body's end, CHUNK_MORE, or CHUNK_BAD. */
  scan(b: Uint8Array, start: number, end: number): number {
    let i = start;
    let state = this.#state;
    while (i < end) {
      const c = b[i]!;
      switch (state) {
        case C_SIZE: {
          const d = c >= 48 && c <= 57 ? c - 48 : (c | 0x20) >= 97 && (c | 0x20) <= 102 ? (c | 0x20) - 87 : -1;
          if (d >= 0) {
            if (++this.#digits > 13) return this.#bad();
            this.#size = this.#size * 16 + d;
          } else if (this.#digits === 0) return this.#bad();
          else if (c === 13) state = C_SIZE_LF;
          else if (c === 59 /* ; */) state = C_EXT;
          else return this.#bad();
          i++;
          break;
        }
        case C_EXT:
          if (c === 13) state = C_SIZE_LF;
          else if (c === 10 || (c < 32 && c !== 9) || c === 127) return this.#bad();
          i++;
          break;
        case C_SIZE_LF:
          if (c !== 10) return this.#bad();
          i++;
          if (this.#size === 0) state = C_TRAILER_START;
          else {
            this.#remaining = this.#size;
            state = C_DATA;
          }
          this.#size = 0;
          this.#digits = 0;
          break;
        case C_DATA: {
          const take = Math.min(this.#remaining, end - i);
          this.#remaining -= take;
          i += take;
          if (this.#remaining === 0) state = C_DATA_CR;
          break;
        }
        case C_DATA_CR:
          if (c !== 13) return this.#bad();
          state = C_DATA_LF;
          i++;
          break;
        case C_DATA_LF:
          if (c !== 10) return this.#bad();
          state = C_SIZE;
          i++;
          break;
        case C_TRAILER_START:
          if (c === 13) state = C_FINAL_LF;
          else if (c === 10) return this.#bad();
          else state = C_TRAILER;
          i++;
          break;
        case C_TRAILER:
          if (c === 13) state = C_TRAILER_LF;
          else if (c === 10) return this.#bad();
          i++;
          break;
        case C_TRAILER_LF:
          if (c !== 10) return this.#bad();
          state = C_TRAILER_START;
          i++;
          break;
        case C_FINAL_LF:
          if (c !== 10) return this.#bad();
          this.reset();
          return i + 1;
      }
    }
    this.#state = state;
    return CHUNK_MORE;
  }

  #bad(): number {
    this.reset();
    return CHUNK_BAD;
  }
}
