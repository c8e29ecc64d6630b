/** A seeded, reproducible RandomSource for tests (xorshift128+; never for real keys). */
import type { RandomSource } from '../../modules/crypto/primitives';

export function seededRandom(seed: number): RandomSource & { nextUint32(): number } {
  let s0 = (seed ^ 0x9e3779b9) >>> 0 || 1;
  let s1 = (seed * 0x85ebca6b) >>> 0 || 2;
  const nextUint32 = (): number => {
    let x = s0;
    const y = s1;
    s0 = y;
    x ^= x << 23;
    x ^= x >>> 17;
    x ^= y ^ (y >>> 26);
    s1 = x >>> 0;
    return (s0 + s1) >>> 0;
  };
  return {
    nextUint32,
    fill(bytes: Uint8Array) {
      for (let i = 0; i < bytes.length; i++) bytes[i] = nextUint32() & 0xff;
    },
  };
}
