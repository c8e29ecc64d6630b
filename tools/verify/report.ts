/**
 * Figures: merging shard reports, (de)serializing them between processes,
 * and printing them (`npm run verify`).
 */
import { CALM_ROUND_TRIP_MS, CONNECTED_BOUND_MS, CONVERGENCE_ROUND_TRIPS, LIVENESS_BOUND_MS, RECOVERY_LIVENESS_BOUND_MS, ROUND_BOUND_MS } from './constants';
import type { ExhaustiveReport } from './exhaustive';
import type { RandomReport } from './random-mode';

export interface SerializedReport {
  readonly json: string;
}

export function serializeReport(report: ExhaustiveReport): SerializedReport {
  return {
    json: JSON.stringify({ ...report, faults: [...report.faults], violatedInvariants: [...report.violatedInvariants] }),
  };
}

export function deserializeReport(serialized: SerializedReport): ExhaustiveReport {
  const raw = JSON.parse(serialized.json) as ExhaustiveReport & { faults: [string, number][]; violatedInvariants: [string, number][] };
  return { ...raw, faults: new Map(raw.faults) as ExhaustiveReport['faults'], violatedInvariants: new Map(raw.violatedInvariants) };
}

/** Merges shard reports: singles come from the first shard (every shard runs them), pairs add up. */
export function mergeShards(shards: readonly ExhaustiveReport[]): ExhaustiveReport {
  const first = shards[0];
  if (first === undefined) throw new Error('no shards');
  const merged: ExhaustiveReport = {
    ...first,
    pairs: { schedules: 0, runs: 0, ranToEnd: 0, mergedAfterLastFault: 0, sharedWithEquivalentFirst: 0 },
    faults: new Map(first.faults),
    violatedInvariants: new Map(first.violatedInvariants),
    failures: [...first.failures],
  };
  for (const shard of shards) {
    merged.pairs.schedules += shard.pairs.schedules;
    merged.pairs.runs += shard.pairs.runs;
    merged.pairs.ranToEnd += shard.pairs.ranToEnd;
    merged.pairs.mergedAfterLastFault += shard.pairs.mergedAfterLastFault;
    merged.pairs.sharedWithEquivalentFirst += shard.pairs.sharedWithEquivalentFirst;
    merged.worstRecoveryMs = Math.max(merged.worstRecoveryMs, shard.worstRecoveryMs);
    merged.worstConnectedMs = Math.max(merged.worstConnectedMs, shard.worstConnectedMs);
    merged.worstRoundMs = Math.max(merged.worstRoundMs, shard.worstRoundMs);
    merged.worstRollbackRecoveryMs = Math.max(merged.worstRollbackRecoveryMs ?? 0, shard.worstRollbackRecoveryMs ?? 0);
    if (shard === first) continue;
    merged.rollbackRuns += shard.rollbackRuns - first.rollbackRunsBeforePairs;
    merged.doubleRollbackRuns += shard.doubleRollbackRuns - first.doubleRollbackRunsBeforePairs;
    // Other shards repeat the baseline and the singles: count only their pair runs.
    merged.steps += shard.steps - first.stepsBeforePairs;
    merged.checks += shard.checks - first.checksBeforePairs;
    for (const [kind, count] of shard.faults) merged.faults.set(kind, (merged.faults.get(kind) ?? 0) + count - (first.faultsBeforePairs[kind] ?? 0));
    for (const [invariant, count] of shard.violatedInvariants) merged.violatedInvariants.set(invariant, (merged.violatedInvariants.get(invariant) ?? 0) + count);
    merged.failures.push(...shard.failures.filter((f) => f.schedule.points.length === 2));
  }
  return merged;
}

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

export function printExhaustive(report: ExhaustiveReport, print: (line: string) => void): void {
  print(`  baseline run: ${report.baselineSteps} steps, ${formatCount(report.singles.points)} single fault points:`);
  for (const [kind, count] of Object.entries(report.singles.byKind)) print(`      ${kind}: ${formatCount(count ?? 0)}`);
  print(`  single-fault schedules explored: ${formatCount(report.singles.runs)} (${formatCount(report.singles.classes)} distinct states right after the fault; ${formatCount(report.singles.merged)} merged into one of those)`);
  print(
    `  fault-pair schedules explored: ${formatCount(report.pairs.schedules)} (runs ${formatCount(report.pairs.runs)}: ${formatCount(report.pairs.ranToEnd)} to the end, ${formatCount(report.pairs.mergedAfterLastFault)} merged into an explored state after their last fault; ${formatCount(report.pairs.sharedWithEquivalentFirst)} share the run of an equivalent first fault)`,
  );
  print(`  steps simulated: ${formatCount(report.steps)}; invariant checks: ${formatCount(report.checks)}; violations: ${report.failures.length}`);
  print(`  faults injected, by kind: ${describeFaults(report.faults)}`);
  printBounds(report.worstRecoveryMs, report.worstConnectedMs, report.worstRoundMs, print);
  if (report.rollbackRuns > 0) {
    print(
      `  rollbacks: ${formatCount(report.rollbackRuns)} schedules with a rollback (${formatCount(report.doubleRollbackRuns)} of them double rollbacks); worst convergence after a rollback ${(report.worstRollbackRecoveryMs / 1000).toFixed(1)} s (bound ${(RECOVERY_LIVENESS_BOUND_MS / 1000).toFixed(1)} s)`,
    );
  }
}

export function printRandom(report: RandomReport, seed: number, print: (line: string) => void): void {
  print(`  steps: ${formatCount(report.steps)} (seed ${seed}, ${report.episodes} episodes, ${formatCount(report.calmPhases)} calm phases)`);
  print(`  rotations confirmed: ${formatCount(report.rotationsConfirmed)}; app messages delivered: ${formatCount(report.appDelivered)}; frames rejected: ${formatCount(report.framesRejected)}`);
  print(`  invariant checks: ${formatCount(report.checks)}; violations: ${report.failures.length}`);
  print(`  faults injected, by kind: ${describeFaults(report.faults)}`);
  printBounds(report.worstRecoveryMs, report.worstConnectedMs, report.worstRoundMs, print);
}

function printBounds(recoveryMs: number, connectedMs: number, roundMs: number, print: (line: string) => void): void {
  const trips = (ms: number) => (ms / CALM_ROUND_TRIP_MS).toFixed(2);
  print(
    `  liveness: worst convergence after the last fault ${(recoveryMs / 1000).toFixed(1)} s (bound ${(LIVENESS_BOUND_MS / 1000).toFixed(1)} s), of it at most ${connectedMs} ms = ${trips(connectedMs)} round trips after connecting (bound ${CONNECTED_BOUND_MS} ms = ${CONVERGENCE_ROUND_TRIPS} round trips + 2 commits); worst fault-free round ${roundMs} ms = ${trips(roundMs)} round trips (bound ${ROUND_BOUND_MS} ms)`,
  );
}

function describeFaults(faults: ReadonlyMap<string, number>): string {
  return [...faults.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([kind, count]) => `${kind} ${formatCount(count)}`)
    .join(', ');
}
