/**
 * Stream framing (docs/PROTOCOL.md §2): every frame is preceded by its
 * length as a u16 big-endian. The reader validates the length *before*
 * allocating the frame buffer, so a peer can never make us allocate more
 * than MAX_FRAME_BYTES, and it consumes at most one frame per call, so the
 * caller decides when to take the next one (the state machines stop while
 * a persist is outstanding).
 */
import { LockstepError } from '../errors';
import { HEADER_BYTES, LENGTH_PREFIX_BYTES, MAX_FRAME_BYTES } from './constants';

export interface FeedResult {
  /** Bytes of the input taken. */
  readonly consumed: number;
  /** A complete frame (without its length prefix), when one was finished. */
  readonly frame?: Uint8Array;
  /**
   * A frame whose length prefix is out of bounds: its bytes are skipped
   * without being stored, so the stream stays parseable.
   */
  readonly error?: LockstepError;
}

export class FrameReader {
  #prefix = new Uint8Array(LENGTH_PREFIX_BYTES);
  #prefixFilled = 0;
  #frame: Uint8Array | undefined;
  #frameFilled = 0;
  /** Bytes of a rejected (out-of-bounds) frame still to skip. */
  #skip = 0;

  /** True when no partial frame is held. */
  get idle(): boolean {
    return this.#prefixFilled === 0 && this.#frame === undefined && this.#skip === 0;
  }

  /**
   * Takes bytes from `input` starting at `offset` up to the end of the
   * current frame. A length prefix above MAX_FRAME_BYTES or below
   * HEADER_BYTES yields FRAME_TOO_LONG / FRAME_TOO_SHORT, and that frame's
   * bytes are then skipped.
   */
  feed(input: Uint8Array, offset: number): FeedResult {
    let at = offset;
    if (this.#skip > 0) {
      const take = Math.min(this.#skip, input.length - at);
      this.#skip -= take;
      return { consumed: take };
    }
    while (this.#frame === undefined && this.#prefixFilled < LENGTH_PREFIX_BYTES && at < input.length) {
      this.#prefix[this.#prefixFilled++] = input[at++] as number;
      if (this.#prefixFilled === LENGTH_PREFIX_BYTES) {
        const length = ((this.#prefix[0] as number) << 8) | (this.#prefix[1] as number);
        if (length > MAX_FRAME_BYTES || length < HEADER_BYTES) {
          this.#prefixFilled = 0;
          this.#skip = length;
          const error =
            length > MAX_FRAME_BYTES
              ? new LockstepError('FRAME_TOO_LONG', `${length} > ${MAX_FRAME_BYTES}`)
              : new LockstepError('FRAME_TOO_SHORT', `${length} < ${HEADER_BYTES}`);
          return { consumed: at - offset, error };
        }
        this.#frame = new Uint8Array(length);
        this.#frameFilled = 0;
      }
    }
    const frame = this.#frame;
    if (frame === undefined) return { consumed: at - offset };
    const take = Math.min(frame.length - this.#frameFilled, input.length - at);
    frame.set(input.subarray(at, at + take), this.#frameFilled);
    this.#frameFilled += take;
    at += take;
    if (this.#frameFilled < frame.length) return { consumed: at - offset };
    this.#frame = undefined;
    this.#prefixFilled = 0;
    this.#frameFilled = 0;
    return { consumed: at - offset, frame };
  }

  reset(): void {
    this.#skip = 0;
    this.#frame = undefined;
    this.#prefixFilled = 0;
    this.#frameFilled = 0;
  }
}

/** Prepends the u16 length prefix. */
export function withLengthPrefix(frame: Uint8Array): Uint8Array {
  if (frame.length > MAX_FRAME_BYTES) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'frame exceeds MAX_FRAME_BYTES');
  const out = new Uint8Array(LENGTH_PREFIX_BYTES + frame.length);
  out[0] = frame.length >> 8;
  out[1] = frame.length & 0xff;
  out.set(frame, LENGTH_PREFIX_BYTES);
  return out;
}
