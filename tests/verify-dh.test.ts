/**
 * The dh rekey mode (docs/PROTOCOL.md §11) under the exhaustive fault
 * exploration (docs/VERIFICATION.md §2): every single fault point of the
 * 3-rotation scenario with both sides in the dh mode, on the real keystore
 * (format v2, the shares in flash) and the simulated database, all safety
 * invariants after every step (a dh pending slot compared by the key its
 * exchange leads to) and the liveness bound; then the pairs of boundary fault
 * points for one shard (of 20) of the first faults, as tests/verify-pairs does for the
 * classic mode. Every pair of every fault point in the dh mode runs in
 * `npm run verify`. The dh broken variants are in
 * tests/verify-variants.test.ts with the others.
 */
import { printExhaustive } from '../tools/verify/report';
import { exploreShards } from './support/exhaustive-shards';

// Every shard of a pairs run first runs every single fault point (tools/verify/report.ts mergeShards),
// so one run checks both. One shard in 20 of the pairs in CI since the dh runs really run dh (finding F7),
// as two fortieths in two processes at once: `npm run verify` runs every pair.
test('dh mode: every single fault point, and pairs of boundary fault points (shard 1 of 20), no violation', async () => {
  const report = await exploreShards({ rounds: 3, seed: 1, pairs: 'boundaries', mode: 'dh', shards: [{ index: 0, of: 40 }, { index: 20, of: 40 }] });
  const lines: string[] = [];
  printExhaustive(report, (line) => lines.push(line));
  console.log(`exhaustive, single faults and fault pairs at boundaries (shard 1/20), dh mode (CI):\n${lines.join('\n')}`);
  expect(report.failures.map((f) => `${f.violation.invariant}: ${f.violation.detail} (${f.schedule.points.map((p) => p.label).join('; ')})`)).toEqual([]);
  expect(report.singles.points).toBeGreaterThan(1_000);
  expect(report.singles.byKind['link cut inside REKEY/REKEY_ACK']).toBeGreaterThan(700);
  expect(report.singles.byKind['torn flash write']).toBeGreaterThan(300);
  expect(report.singles.byKind['hub crash']).toBeGreaterThan(10);
  expect(report.pairs.schedules).toBeGreaterThan(500);
}, 600_000);
