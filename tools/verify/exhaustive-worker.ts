/**
 * One shard of the exhaustive mode in a child process (index.ts forks one
 * per worker): `tsx exhaustive-worker.ts <rounds> <seed> <pairs> <shard> <of>`.
 * Sends its report to the parent as JSON.
 */
import { exploreExhaustively, type PairMode } from './exhaustive';
import { serializeReport } from './report';

const [rounds, seed, pairs, shard, of] = process.argv.slice(2);
const report = exploreExhaustively({
  rounds: Number(rounds),
  seed: Number(seed),
  pairs: pairs as PairMode,
  shard: { index: Number(shard), of: Number(of) },
  onProgress: (line) => process.stderr.write(`  [worker ${shard}] ${line}\n`),
});
process.send?.(serializeReport(report), () => process.exit(0));
