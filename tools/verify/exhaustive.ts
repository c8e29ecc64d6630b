/**
 * Exhaustive mode (docs/VERIFICATION.md §2): run the scenario without
 * faults, enumerate every fault point of that run (points.ts), run each
 * single fault; then, for each single fault, enumerate the fault points of
 * *its* run after it, and run every pair.
 *
 * Merging (sound, because the simulation is deterministic): right after a
 * schedule's last fault, the complete simulation state is digested
 * (World.stateDigest). If an earlier schedule already reached that state
 * after its own last fault, the rest of the run would repeat that one step
 * for step, so it stops there and counts as explored. For pairs, single
 * faults that merged share the pairs of the single they merged with.
 */
import { SIM_EPOCH_MS } from './constants';
import { RoundsDriver } from './driver';
import type { StepProfile } from './faults';
import { faultPoints, type EnumeratedPoint, type PointKind } from './points';
import type { Variant } from './variant';
import { World, type FaultKind, type StoreFactory, type Violation } from './world';

export type PairMode = 'all' | 'boundaries' | 'none';

export interface ExhaustiveOptions {
  readonly rounds: number;
  readonly seed: number;
  readonly pairs: PairMode;
  readonly variant?: Variant;
  readonly store?: StoreFactory;
  /** The rekey mode of the scenario (docs/PROTOCOL.md §11); default classic, or the variant's. */
  readonly mode?: 'classic' | 'dh';
  /** Hub instances sharing the database (docs/VERIFICATION.md §5a); default 1, or the variant's. */
  readonly instances?: 1 | 2;
  readonly liveViewsOnly?: boolean;
  /** Stop at the first violation (refuting a broken variant). */
  readonly stopAtFirstViolation?: boolean;
  /** Run only first-fault classes with index % of === shard (parallel workers). */
  readonly shard?: { readonly index: number; readonly of: number };
  /** Singles: every fault point (default), or only those at boundaries (no cut inside a frame or a flash program). */
  readonly singles?: 'all' | 'boundaries';
  /** Pairs: only first faults of these kinds (a bounded set of pairs; default all); the shard applies among those. */
  readonly firstKinds?: readonly PointKind[];
  readonly onProgress?: (line: string) => void;
}

export interface Schedule {
  readonly seed: number;
  readonly rounds: number;
  readonly points: readonly EnumeratedPoint[];
}

export interface Failure {
  readonly schedule: Schedule;
  readonly violation: Violation;
}

export interface ExhaustiveReport {
  baselineSteps: number;
  singles: { points: number; byKind: Partial<Record<PointKind, number>>; runs: number; merged: number; classes: number };
  pairs: { schedules: number; runs: number; ranToEnd: number; mergedAfterLastFault: number; sharedWithEquivalentFirst: number };
  steps: number;
  checks: number;
  faults: Map<FaultKind, number>;
  /** The same figures when the singles were done (shards repeat them; see report.ts). */
  stepsBeforePairs: number;
  checksBeforePairs: number;
  faultsBeforePairs: Partial<Record<FaultKind, number>>;
  failures: Failure[];
  violatedInvariants: Map<string, number>;
  worstRecoveryMs: number;
  worstConnectedMs: number;
  worstRoundMs: number;
}

const MAX_STEPS = 6_000;

export function newReport(): ExhaustiveReport {
  return {
    baselineSteps: 0,
    singles: { points: 0, byKind: {}, runs: 0, merged: 0, classes: 0 },
    pairs: { schedules: 0, runs: 0, ranToEnd: 0, mergedAfterLastFault: 0, sharedWithEquivalentFirst: 0 },
    steps: 0,
    checks: 0,
    faults: new Map(),
    stepsBeforePairs: 0,
    checksBeforePairs: 0,
    faultsBeforePairs: {},
    failures: [],
    violatedInvariants: new Map(),
    worstRecoveryMs: 0,
    worstConnectedMs: 0,
    worstRoundMs: 0,
  };
}

/** Runs one schedule; with `visited`, stops early when the state after its last fault was seen before. */
export function runSchedule(
  schedule: Schedule,
  options: { variant?: Variant; store?: StoreFactory; mode?: 'classic' | 'dh'; instances?: 1 | 2; strictDeviceLedger?: boolean; liveViewsOnly?: boolean; profile?: boolean; trace?: boolean; visited?: Set<string> },
): { world: World; merged: boolean; digest: string | undefined } {
  const byStep = new Map(schedule.points.map((p) => [p.step, p.faults]));
  const lastStep = schedule.points.reduce((max, p) => Math.max(max, p.step), 0);
  const world = new World({
    seed: schedule.seed,
    driver: new RoundsDriver(schedule.rounds),
    plan: { at: (step) => byStep.get(step) },
    ...(options.variant ? { variant: options.variant } : {}),
    ...(options.store ? { store: options.store } : {}),
    ...(options.mode ? { mode: options.mode } : {}),
    ...(options.instances ? { instances: options.instances } : {}),
    ...(options.strictDeviceLedger ? { strictDeviceLedger: true } : {}),
    profile: options.profile ?? false,
    trace: options.trace ?? false,
    liveViewsOnly: options.liveViewsOnly ?? false,
    maxSteps: MAX_STEPS,
  });
  let merged = false;
  let digest: string | undefined;
  const visited = options.visited;
  world.run(() => {
    if (visited === undefined || world.step !== lastStep || lastStep === 0) return true;
    digest = world.stateDigest();
    if (visited.has(digest)) {
      merged = true;
      return false;
    }
    visited.add(digest);
    return true;
  });
  return { world, merged, digest };
}

export function exploreExhaustively(options: ExhaustiveOptions, report = newReport()): ExhaustiveReport {
  const progress = options.onProgress ?? (() => {});
  const base = {
    ...(options.variant ? { variant: options.variant } : {}),
    ...(options.store ? { store: options.store } : {}),
    ...(options.instances ? { instances: options.instances } : {}),
    liveViewsOnly: options.liveViewsOnly ?? false,
  };
  const instances = options.instances ?? options.variant?.instances ?? 1;
  const visited = new Set<string>();
  const stop = () => options.stopAtFirstViolation === true && report.failures.length > 0;

  const baseline = runSchedule({ seed: options.seed, rounds: options.rounds, points: [] }, { ...base, profile: true });
  absorb(report, baseline.world, { seed: options.seed, rounds: options.rounds, points: [] });
  report.baselineSteps = baseline.world.step;
  if (stop()) return report;

  const singles = faultPoints(baseline.world.profiles, 0, instances).filter((p) => options.singles !== 'boundaries' || !p.interior);
  report.singles.points = singles.length;
  for (const point of singles) report.singles.byKind[point.kind] = (report.singles.byKind[point.kind] ?? 0) + 1;
  progress(`baseline: ${baseline.world.step} steps, ${singles.length} single fault points`);

  // Singles. Each class representative keeps its profile for the pairs.
  const representatives: { point: EnumeratedPoint; profiles: StepProfile[]; members: EnumeratedPoint[] }[] = [];
  const classOfDigest = new Map<string, number>();
  for (const point of singles) {
    const schedule: Schedule = { seed: options.seed, rounds: options.rounds, points: [point] };
    const { world, merged, digest } = runSchedule(schedule, { ...base, profile: options.pairs !== 'none', visited });
    report.singles.runs++;
    absorb(report, world, schedule);
    if (stop()) return report;
    const cls = digest === undefined ? undefined : classOfDigest.get(digest);
    if (merged && cls !== undefined) {
      report.singles.merged++;
      representatives[cls]!.members.push(point);
      continue;
    }
    if (digest !== undefined) classOfDigest.set(digest, representatives.length);
    representatives.push({ point, profiles: options.pairs === 'none' ? [] : world.profiles, members: [point] });
  }
  report.singles.classes = representatives.length;
  report.stepsBeforePairs = report.steps;
  report.checksBeforePairs = report.checks;
  report.faultsBeforePairs = Object.fromEntries(report.faults);
  progress(`singles: ${singles.length} schedules, ${representatives.length} distinct states after the fault`);
  if (options.pairs === 'none') return report;

  // Pairs: every fault point of the single run after its fault.
  const kinds = options.firstKinds;
  // The class runs with its representative's fault: with firstKinds, only classes whose representative is of those kinds.
  const eligible = kinds === undefined ? representatives : representatives.filter((rep) => kinds.includes(rep.point.kind));
  eligible.forEach((rep, index) => {
    if (stop()) return;
    if (options.shard !== undefined && index % options.shard.of !== options.shard.index) return;
    let firsts = options.pairs === 'boundaries' ? rep.members.filter((m) => !m.interior) : rep.members;
    if (kinds !== undefined) firsts = firsts.filter((m) => kinds.includes(m.kind));
    if (firsts.length === 0) return;
    let seconds = faultPoints(rep.profiles, rep.point.step, instances);
    if (options.pairs === 'boundaries') seconds = seconds.filter((p) => !p.interior);
    report.pairs.schedules += firsts.length * seconds.length;
    report.pairs.sharedWithEquivalentFirst += (firsts.length - 1) * seconds.length;
    for (const second of seconds) {
      const schedule: Schedule = { seed: options.seed, rounds: options.rounds, points: [rep.point, second] };
      const { world, merged } = runSchedule(schedule, { ...base, visited });
      report.pairs.runs++;
      if (merged) report.pairs.mergedAfterLastFault++;
      else report.pairs.ranToEnd++;
      absorb(report, world, schedule);
      if (stop()) return;
    }
    if (index % 50 === 0) progress(`pairs: ${index + 1}/${eligible.length} first-fault classes, ${report.pairs.runs} runs`);
  });
  return report;
}

function absorb(report: ExhaustiveReport, world: World, schedule: Schedule): void {
  report.steps += world.step;
  report.checks += world.checks;
  for (const [kind, count] of world.faults) report.faults.set(kind, (report.faults.get(kind) ?? 0) + count);
  report.worstRecoveryMs = Math.max(report.worstRecoveryMs, world.liveness.worstRecoveryMs);
  report.worstConnectedMs = Math.max(report.worstConnectedMs, world.liveness.worstConnectedMs);
  report.worstRoundMs = Math.max(report.worstRoundMs, world.liveness.worstRoundMs);
  const violation = world.violations[0];
  if (violation !== undefined) {
    report.failures.push({ schedule, violation });
    for (const v of world.violations) report.violatedInvariants.set(v.invariant, (report.violatedInvariants.get(v.invariant) ?? 0) + 1);
  }
}

/** Re-runs a failing schedule with the trace on: the readable account, and proof that it reproduces. */
export function explainFailure(failure: Failure, options: { variant?: Variant; store?: StoreFactory; mode?: 'classic' | 'dh'; instances?: 1 | 2; liveViewsOnly?: boolean } = {}): string {
  const { world } = runSchedule(failure.schedule, { ...options, trace: true });
  const again = world.violations[0];
  const reproduced = again !== undefined && again.invariant === failure.violation.invariant && again.step === failure.violation.step;
  const faults = failure.schedule.points.map((p) => `    - ${p.label}`).join('\n') || '    (none)';
  return [
    `VIOLATION ${failure.violation.invariant} at step ${failure.violation.step} (t+${failure.violation.atMs} ms): ${failure.violation.detail}`,
    `  seed ${failure.schedule.seed}, ${failure.schedule.rounds} rounds, faults:`,
    faults,
    `  rerun: ${reproduced ? 'reproduced' : 'NOT reproduced'}; trace (t relative to ${SIM_EPOCH_MS}):`,
    world.trace.text(120),
  ].join('\n');
}
