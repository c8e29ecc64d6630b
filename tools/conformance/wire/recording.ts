/**
 * A bounded recording of every frame a kit peer sent or received, with its
 * time, for the evidence of a failure (tools/conformance/report.ts). Frames
 * are kept with their length prefix, as they crossed the wire; past the
 * bound the oldest are dropped (a hostile peer cannot grow it).
 */
import { toHex } from '../../../modules/bytes';
import type { FrameEvidence } from '../report';

export type FrameDirection = 'sent' | 'received';

export interface RecordedFrame {
  readonly direction: FrameDirection;
  /** Milliseconds since the recording started. */
  readonly atMs: number;
  /** The wire bytes, length prefix included (a raw write that was not a whole frame is recorded as written). */
  readonly bytes: Uint8Array;
  /** Why a received frame was not a well-formed one (an out-of-range length prefix), when it was not. */
  readonly note?: string;
}

/** Frames kept per recording: several rotations' worth; the oldest are dropped past it. */
export const DEFAULT_RECORDING_FRAMES = 512;
/** Bytes of a frame printed as evidence (a maximum-size DATA is 1282 bytes: kept whole). */
const EVIDENCE_HEX_BYTES = 1400;

export class FrameRecording {
  readonly #frames: RecordedFrame[] = [];
  readonly #startedAt: number;
  readonly #maxFrames: number;
  #dropped = 0;

  constructor(maxFrames = DEFAULT_RECORDING_FRAMES, startedAt = performance.now()) {
    this.#maxFrames = maxFrames;
    this.#startedAt = startedAt;
  }

  record(direction: FrameDirection, bytes: Uint8Array, note?: string): RecordedFrame {
    const frame: RecordedFrame = { direction, atMs: Math.round(performance.now() - this.#startedAt), bytes: bytes.slice(), ...(note === undefined ? {} : { note }) };
    this.#frames.push(frame);
    if (this.#frames.length > this.#maxFrames) {
      this.#frames.shift();
      this.#dropped++;
    }
    return frame;
  }

  get frames(): readonly RecordedFrame[] {
    return this.#frames;
  }

  /** Frames dropped because the recording was full. */
  get dropped(): number {
    return this.#dropped;
  }

  /** The last `count` frames as report evidence (hex). */
  evidence(count = 12): FrameEvidence[] {
    return this.#frames.slice(-count).map(frameEvidence);
  }
}

export function frameEvidence(frame: RecordedFrame): FrameEvidence {
  const shown = frame.bytes.length > EVIDENCE_HEX_BYTES ? `${toHex(frame.bytes.subarray(0, EVIDENCE_HEX_BYTES))}…(${frame.bytes.length} bytes)` : toHex(frame.bytes);
  return { direction: frame.direction, hex: frame.note === undefined ? shown : `${shown} (${frame.note})`, atMs: frame.atMs };
}
