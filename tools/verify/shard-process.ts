/**
 * One shard of the exhaustive mode in a child process (exhaustive-worker.ts),
 * its report sent back over IPC: `npm run verify` forks one per worker, and
 * the CI tests fork two so that jest's one test file at a time uses both
 * cores.
 */
import { fork } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExhaustiveReport } from './exhaustive';
import { deserializeReport, type SerializedReport } from './report';

const WORKER = join(dirname(fileURLToPath(import.meta.url)), 'exhaustive-worker.ts');

/** `args` as exhaustive-worker.ts takes them; `inheritOutput` shows the worker's progress lines. */
export function runShardProcess(args: readonly string[], inheritOutput: boolean): Promise<ExhaustiveReport> {
  return new Promise((resolve, reject) => {
    const output = inheritOutput ? 'inherit' : 'ignore';
    const child = fork(WORKER, [...args], { execArgv: ['--import', 'tsx'], stdio: ['ignore', output, output, 'ipc'] });
    let report: ExhaustiveReport | undefined;
    child.on('message', (message) => {
      report = deserializeReport(message as SerializedReport);
    });
    child.on('error', reject);
    child.on('exit', (code) => (report !== undefined ? resolve(report) : reject(new Error(`exhaustive shard ${args[3]}/${args[4]} exited with ${code}`))));
  });
}
