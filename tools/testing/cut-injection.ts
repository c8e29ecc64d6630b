/**
 * Enumerating power cuts for a traced sequence of flash operations, and the
 * seeded generator the fault tests use (docs/KEYSTORE.md §6).
 *
 * For a program of n bytes, the cut points are: for each byte offset j, the
 * first j bytes programmed and byte j left with each subset of the bits it
 * was going to clear ('all': every subset, 2^k for k such bits; a number s:
 * the empty and the full subset plus up to s-2 random others); plus the
 * program completed. For an erase: the torn-erase patterns below, plus
 * the erase completed. Every cut point is tried once, with the power
 * failing during that operation, so nothing after it happens.
 *
 * Verification code: portable so the same exploration can run on XS; not
 * imported by the firmware.
 */
import type { CutPlan, FlashOperation, TornErase } from '../../modules/flash/nor-flash';

/** Deterministic PRNG (sfc32). For tests only: never for secrets. */
export class SeededRandom {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 15; i++) this.nextU32();
  }

  nextU32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform integer in [0, bound). */
  below(bound: number): number {
    return Math.floor((this.nextU32() / 0x100000000) * bound);
  }

  chance(probability: number): boolean {
    return this.nextU32() / 0x100000000 < probability;
  }

  bytes(length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) out[i] = this.nextU32() & 0xff;
    return out;
  }
}

export interface NamedErase {
  readonly name: string;
  readonly tornErase: TornErase;
}

/**
 * Ways an erase can be torn. A real NOR erase first programs the sector to
 * zeros and then raises cells back to one, so a cut can leave old content,
 * zeros, partly erased bytes or bits, or (the model's worst case) anything.
 */
export function tornErasePatterns(seed: number): readonly NamedErase[] {
  const rng = new SeededRandom(seed);
  const mixSeed = rng.nextU32();
  const randomSeed = rng.nextU32();
  const bitsSeed = rng.nextU32();
  const zeroSeed = rng.nextU32();
  return [
    { name: 'untouched', tornErase: (p) => p },
    { name: 'zeros', tornErase: (p) => new Uint8Array(p.length) },
    { name: 'first half erased', tornErase: (p) => p.fill(0xff, 0, p.length >> 1) },
    { name: 'second half erased', tornErase: (p) => p.fill(0xff, p.length >> 1) },
    { name: 'first half zeroed', tornErase: (p) => p.fill(0, 0, p.length >> 1) },
    {
      name: 'bytes erased at random',
      tornErase: (p) => {
        const r = new SeededRandom(mixSeed);
        for (let i = 0; i < p.length; i++) if (r.chance(0.5)) p[i] = 0xff;
        return p;
      },
    },
    {
      name: 'bits erased at random',
      tornErase: (p) => {
        const r = new SeededRandom(bitsSeed);
        for (let i = 0; i < p.length; i++) p[i] = (p[i] as number) | (r.nextU32() & 0xff);
        return p;
      },
    },
    {
      name: 'bytes zeroed at random',
      tornErase: (p) => {
        const r = new SeededRandom(zeroSeed);
        for (let i = 0; i < p.length; i++) if (r.chance(0.5)) p[i] = 0;
        return p;
      },
    },
    // The pre-program phase reached only one word: the keystore keeps its
    // sector commit word at bytes 28..31, so this is the most dangerous spot.
    { name: 'bytes 28..31 zeroed', tornErase: (p) => p.fill(0, 28, 32) },
    { name: 'random bytes', tornErase: (p) => new SeededRandom(randomSeed).bytes(p.length) },
  ];
}

export interface CutPoint {
  /** Index of the torn operation in the trace. */
  readonly operation: number;
  readonly plan: CutPlan;
  readonly label: string;
}

export interface CutEnumeration {
  /** 'all' subsets of the in-flight byte's bits, or at most this many per byte offset. */
  readonly bitPatterns: 'all' | number;
  /** Torn-erase patterns to apply to every erase. */
  readonly erasePatterns: readonly NamedErase[];
  /** Source for sampled bit patterns. */
  readonly random: SeededRandom;
}

/** Every cut point of a traced operation sequence, lazily. */
export function* enumerateCuts(trace: readonly FlashOperation[], options: CutEnumeration): Generator<CutPoint> {
  for (let operation = 0; operation < trace.length; operation++) {
    const op = trace[operation] as FlashOperation;
    if (op.kind === 'erase') {
      for (const pattern of options.erasePatterns) {
        yield { operation, plan: { atOperation: operation, tornErase: pattern.tornErase }, label: `erase ${op.sector}: ${pattern.name}` };
      }
      yield { operation, plan: { atOperation: operation, tornErase: (p) => p.fill(0xff) }, label: `erase ${op.sector}: completed` };
      continue;
    }
    for (let byte = 0; byte < op.data.length; byte++) {
      const toClear = (op.previous[byte] as number) & ~(op.data[byte] as number) & 0xff;
      for (const bits of inFlightSubsets(toClear, options)) {
        yield {
          operation,
          plan: { atOperation: operation, programmedBytes: byte, inFlightBits: bits },
          label: `program @${op.offset}+${op.data.length}: ${byte} bytes, in-flight bits ${bits.toString(16)}/${toClear.toString(16)}`,
        };
      }
    }
    yield {
      operation,
      plan: { atOperation: operation, programmedBytes: op.data.length },
      label: `program @${op.offset}+${op.data.length}: completed`,
    };
  }
}

/** Subsets of `mask` (always the empty and the full one). */
function* inFlightSubsets(mask: number, options: CutEnumeration): Generator<number> {
  yield 0;
  if (mask === 0) return;
  yield mask;
  const bits: number[] = [];
  for (let bit = 1; bit < 0x100; bit <<= 1) if (mask & bit) bits.push(bit);
  const total = 1 << bits.length; // subsets, including the two already given
  if (options.bitPatterns === 'all' || total <= options.bitPatterns) {
    for (let pick = 1; pick < total - 1; pick++) yield subset(bits, pick);
    return;
  }
  for (let i = 2; i < options.bitPatterns; i++) yield subset(bits, 1 + options.random.below(total - 2));
}

function subset(bits: readonly number[], pick: number): number {
  let out = 0;
  for (let i = 0; i < bits.length; i++) if (pick & (1 << i)) out |= bits[i] as number;
  return out;
}
