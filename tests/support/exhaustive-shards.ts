/**
 * Runs shards of the exhaustive exploration in child processes at once
 * (tools/verify/shard-process.ts, as `npm run verify` does) and merges them:
 * jest runs one test file at a time, so a CPU-bound exploration in the
 * test's own process leaves the second core idle. Shard k of n takes the
 * first-fault classes with index % n === k, so shards {k, k + n} of 2n
 * together are exactly shard k of n.
 */
import type { ExhaustiveReport, PairMode } from '../../tools/verify/exhaustive';
import { mergeShards } from '../../tools/verify/report';
import { runShardProcess } from '../../tools/verify/shard-process';

export interface ShardRun {
  readonly rounds: number;
  readonly seed: number;
  readonly pairs: PairMode;
  readonly mode?: 'classic' | 'dh';
  readonly shards: readonly { readonly index: number; readonly of: number }[];
}

export async function exploreShards(run: ShardRun): Promise<ExhaustiveReport> {
  const args = (shard: { index: number; of: number }) => [String(run.rounds), String(run.seed), run.pairs, String(shard.index), String(shard.of), run.mode ?? 'classic'];
  return mergeShards(await Promise.all(run.shards.map((shard) => runShardProcess(args(shard), false))));
}
