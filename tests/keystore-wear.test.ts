// The wear goal (issue 3): >= 20 years at one rotation per minute on the
// 16 KiB partition with 100,000-cycle sectors, in format v2 with dh
// rotations (every future with its two shares: 144-byte records, 27 futures
// per 4 KiB sector). Deterministic counts of the NOR model (no timing);
// `npm run bench` prints the full table, format v1 alongside.
import { measureJournal, measureNaive } from '../tools/bench/wear';

test('16 KiB journal lasts at least 20 years at 1 rotation/min; the naive design far less', () => {
  const journal = measureJournal(4, 3000);
  // 2 programs to store (body, commit CRC), 1 to promote, 1 that zeroes the
  // retired key; once per sector (every 27th rotation) the snapshot's
  // retired marker and the old sector's last key: 4 + 2/27.
  expect(journal.programsPerRotation).toBeCloseTo(4 + 2 / 27, 2);
  expect(journal.erasesPerRotation).toBeLessThan(0.04);
  expect(journal.years).toBeGreaterThanOrEqual(20);
  expect(measureNaive(100).years).toBeLessThan(1);
});

test('format v1 on the same partition, for the record: 47 futures per sector, about 1.7 times the lifetime', () => {
  const v1 = measureJournal(4, 3000, 1);
  expect(v1.programsPerRotation).toBeCloseTo(4 + 2 / 47, 2);
  expect(v1.years / measureJournal(4, 3000).years).toBeGreaterThan(1.6);
});
