/**
 * Exhaustive mode in CI (docs/VERIFICATION.md §2): every single fault point
 * of the 3-rotation scenario — every link cut at a frame boundary and inside
 * every byte of REKEY and REKEY_ACK, every device power cut (also inside
 * every flash program byte and every erase), every hub crash point, every
 * database failure, every delay — with all safety invariants after every
 * step and the liveness bound. The fault pairs run in tests/verify-pairs
 * (boundaries, a shard) and in full in `npm run verify`.
 */
import { exploreExhaustively } from '../tools/verify/exhaustive';
import { printExhaustive } from '../tools/verify/report';

test('every single fault point: no violation', () => {
  const report = exploreExhaustively({ rounds: 3, seed: 1, pairs: 'none' });
  const lines: string[] = [];
  printExhaustive(report, (line) => lines.push(line));
  console.log(`exhaustive, single faults (CI):\n${lines.join('\n')}`);
  expect(report.failures.map((f) => `${f.violation.invariant}: ${f.violation.detail} (${f.schedule.points.map((p) => p.label).join('; ')})`)).toEqual([]);
  expect(report.singles.points).toBeGreaterThan(1_000);
  expect(report.singles.byKind['link cut inside REKEY/REKEY_ACK']).toBeGreaterThan(700);
  expect(report.singles.byKind['torn flash write']).toBeGreaterThan(300);
  expect(report.singles.byKind['hub crash']).toBeGreaterThan(10);
  expect(report.faults.get('torn flash write')).toBe(report.singles.byKind['torn flash write']);
});
