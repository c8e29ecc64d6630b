/**
 * The six broken variants (docs/VERIFICATION.md §5), applied to the real,
 * unchanged cores through host injections (a lying keystore, a lying
 * database host, transport interposers, the public reloadDevice), must each
 * be caught by the simulation — by an invariant of the kind they break —
 * and, for the four safety bugs, lead to running cores that really
 * disagree after some crash.
 */
import { printRefutation, refuteVariant } from '../tools/verify/refute';
import { BROKEN_VARIANTS } from '../tools/verify/variants';

describe('broken variants are refuted by the simulation', () => {
  for (const variant of BROKEN_VARIANTS) {
    test(variant.name, () => {
      const refutation = refuteVariant(variant, { rounds: 3, seed: 1, randomSteps: 100_000 });
      const lines: string[] = [];
      printRefutation(refutation, (line) => lines.push(line));
      console.log(lines.join('\n'));
      expect(refutation.refuted).toBe(true);
    });
  }
});
