/**
 * Runs shards of the exhaustive exploration in child processes at once
 * (tools/verify/exhaustive-worker.ts, as `npm run verify` does) and merges
 * them: jest runs one test file at a time, so a CPU-bound exploration in the
 * test's own process leaves the second core idle. Shard k of n takes the
 * first-fault classes with index % n === k, so shards {k, k + n} of 2n
 * together are exactly shard k of n.
 */
import { fork } from 'node:child_process';
import { join } from 'node:path';
import type { ExhaustiveReport, PairMode } from '../../tools/verify/exhaustive';
import { deserializeReport, mergeShards, type SerializedReport } from '../../tools/verify/report';

const WORKER = join(__dirname, '..', '..', 'tools', 'verify', 'exhaustive-worker.ts');

export interface ShardRun {
  readonly rounds: number;
  readonly seed: number;
  readonly pairs: PairMode;
  readonly mode?: 'classic' | 'dh';
  readonly shards: readonly { readonly index: number; readonly of: number }[];
}

function runOne(run: ShardRun, shard: { index: number; of: number }): Promise<ExhaustiveReport> {
  return new Promise((resolve, reject) => {
    const child = fork(WORKER, [String(run.rounds), String(run.seed), run.pairs, String(shard.index), String(shard.of), run.mode ?? 'classic'], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    });
    let report: ExhaustiveReport | undefined;
    child.on('message', (message) => {
      report = deserializeReport(message as SerializedReport);
    });
    child.on('error', reject);
    child.on('exit', (code) => (report !== undefined ? resolve(report) : reject(new Error(`exhaustive shard ${shard.index}/${shard.of} exited with ${code}`))));
  });
}

export async function exploreShards(run: ShardRun): Promise<ExhaustiveReport> {
  return mergeShards(await Promise.all(run.shards.map((shard) => runOne(run, shard))));
}
