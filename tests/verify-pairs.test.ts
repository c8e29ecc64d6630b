/**
 * Fault pairs in CI: every pair of boundary fault points (frame-boundary
 * cuts, silent cuts, delays, power cuts and crashes before a step and
 * between actions, flash operations cut before their first bit or right
 * after their last, database failures) for one shard of the first faults
 * (a tenth; the shard is fixed so CI is deterministic). `npm run verify`
 * runs every pair of every fault point, bytes included. The tenth runs as two
 * twentieths in two processes at once (tests/support/exhaustive-shards.ts).
 */
import { printExhaustive } from '../tools/verify/report';
import { exploreShards } from './support/exhaustive-shards';

test('pairs of boundary fault points (shard 1 of 10): no violation', async () => {
  const report = await exploreShards({ rounds: 3, seed: 1, pairs: 'boundaries', shards: [{ index: 0, of: 20 }, { index: 10, of: 20 }] });
  const lines: string[] = [];
  printExhaustive(report, (line) => lines.push(line));
  console.log(`exhaustive, fault pairs at boundaries, shard 1/10 (CI):\n${lines.join('\n')}`);
  expect(report.failures.map((f) => `${f.violation.invariant}: ${f.violation.detail} (${f.schedule.points.map((p) => p.label).join('; ')})`)).toEqual([]);
  expect(report.pairs.schedules).toBeGreaterThan(2_000);
}, 600_000);
