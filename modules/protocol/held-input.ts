/**
 * Received bytes a core keeps unparsed while a persist is outstanding
 * (docs/PROTOCOL.md §2: the core owns its receive buffer). Bounded by
 * `limit`; the buffer grows by doubling, so keeping n bytes in many small
 * pieces costs O(n) copying, and it is released once taken.
 */
export class HeldInput {
  readonly #limit: number;
  #buffer: Uint8Array | undefined;
  #length = 0;

  constructor(limit: number) {
    this.#limit = limit;
  }

  get length(): number {
    return this.#length;
  }

  /** Keeps a copy of `bytes` after what is kept; false (and nothing kept) when that would exceed the limit. */
  append(bytes: Uint8Array): boolean {
    const needed = this.#length + bytes.length;
    if (needed > this.#limit) return false;
    if (this.#buffer === undefined || needed > this.#buffer.length) {
      const grown = new Uint8Array(Math.min(this.#limit, Math.max(needed, 2 * (this.#buffer?.length ?? 0), 256)));
      if (this.#buffer !== undefined) grown.set(this.#buffer.subarray(0, this.#length));
      this.#buffer = grown;
    }
    this.#buffer.set(bytes, this.#length);
    this.#length = needed;
    return true;
  }

  /** Everything kept, in order; the holder is empty afterwards (the bytes stay valid for the caller). */
  take(): Uint8Array | undefined {
    const buffer = this.#buffer;
    const length = this.#length;
    this.#buffer = undefined;
    this.#length = 0;
    return buffer === undefined || length === 0 ? undefined : buffer.subarray(0, length);
  }

  clear(): void {
    this.#buffer = undefined;
    this.#length = 0;
  }
}
