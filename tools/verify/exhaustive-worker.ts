/**
 * One shard of the exhaustive mode in a child process (index.ts forks one
 * per worker): `tsx exhaustive-worker.ts <rounds> <seed> <pairs> <shard> <of> [classic|dh] [instances] [first kinds, comma-separated]`.
 * Sends its report to the parent as JSON.
 */
import { exploreExhaustively, type PairMode } from './exhaustive';
import type { PointKind } from './points';
import { serializeReport } from './report';

const [rounds, seed, pairs, shard, of, mode, instances, firstKinds] = process.argv.slice(2);
const report = exploreExhaustively({
  mode: mode === 'dh' ? 'dh' : 'classic',
  ...(instances === '2' ? { instances: 2 as const } : {}),
  ...(firstKinds === undefined || firstKinds === '' ? {} : { firstKinds: firstKinds.split(',') as PointKind[] }),
  rounds: Number(rounds),
  seed: Number(seed),
  pairs: pairs as PairMode,
  shard: { index: Number(shard), of: Number(of) },
  onProgress: (line) => process.stderr.write(`  [worker ${shard}] ${line}\n`),
});
process.send?.(serializeReport(report), () => process.exit(0));
