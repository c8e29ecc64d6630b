/**
 * Exponential backoff with "equal jitter" (docs/PROTOCOL.md §8.4): attempt
 * n waits d/2 plus a uniformly random part of d/2, i.e. a time in [d/2, d]
 * with d = min(max, base·2^n). Half the delay is fixed, so retries never
 * bunch at zero; the other half spreads a fleet that lost its hub at once.
 * Randomness for jitter is not secret but still comes from the injected
 * source, so tests can pin it.
 */
import type { RandomSource } from '../crypto/primitives';

export function backoffDelayMs(attempt: number, baseMs: number, maxMs: number, random: RandomSource): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  const sample = new Uint8Array(2);
  random.fill(sample);
  const fraction = (((sample[0] as number) << 8) | (sample[1] as number)) / 0xffff;
  return Math.round(ceiling / 2 + (ceiling / 2) * fraction);
}
