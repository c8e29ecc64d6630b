// The wear goal (issue 3): >= 20 years at one rotation per minute on the
// 16 KiB partition with 100,000-cycle sectors. Deterministic counts of the
// NOR model (no timing); `npm run bench` prints the full table.
import { measureJournal, measureNaive } from '../tools/bench/wear';

test('16 KiB journal lasts at least 20 years at 1 rotation/min; the naive design far less', () => {
  const journal = measureJournal(4, 3000);
  // 3 programs (record body, commit word, promote word) + 1 that zeroes the
  // retired key; once per sector (every 47th rotation) the snapshot's retired
  // marker and the old sector's last key: 4 + 2/47.
  expect(journal.programsPerRotation).toBeCloseTo(4 + 2 / 47, 2);
  expect(journal.erasesPerRotation).toBeLessThan(0.025);
  expect(journal.years).toBeGreaterThanOrEqual(20);
  expect(measureNaive(100).years).toBeLessThan(1);
});
