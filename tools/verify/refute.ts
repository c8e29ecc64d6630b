/**
 * Refuting the broken variants with the simulation (docs/VERIFICATION.md
 * §5): each variant runs through the exhaustive mode and the random mode
 * until a violation; it counts as refuted when an invariant of the kind it
 * breaks fires (safety for the four durability/identity bugs, liveness for
 * the two confirmation bugs). For the safety variants a third run checks
 * only the running cores (no durable views, no liveness): it shows the
 * crash after which device and hub really disagree.
 */
import { exploreExhaustively, type Failure } from './exhaustive';
import { runRandom } from './random-mode';
import type { Variant } from './variant';
import type { StoreFactory } from './world';

export interface Refutation {
  readonly variant: Variant;
  readonly exhaustive: { readonly failure: Failure | undefined; readonly schedulesRun: number };
  readonly random: { readonly invariant: string | undefined; readonly steps: number; readonly seed: number | undefined };
  readonly divergence: { readonly failure: Failure | undefined; readonly schedulesRun: number } | undefined;
  readonly refuted: boolean;
}

export function kindOf(invariant: string): 'safety' | 'liveness' {
  return invariant.startsWith('L') ? 'liveness' : 'safety';
}

/**
 * `divergence: false` skips the third run: a variant of the hub tier
 * (INSTANCE_VARIANTS) corrupts the shared database's row, after which the
 * lease gate refuses the device (it no longer authenticates under the
 * database's keys) rather than letting a running core disagree with it.
 */
export function refuteVariant(variant: Variant, options: { rounds: number; seed: number; randomSteps: number; store?: StoreFactory; divergence?: boolean }): Refutation {
  const base = { rounds: options.rounds, seed: options.seed, variant, stopAtFirstViolation: true, ...(options.store ? { store: options.store } : {}) };
  const exhaustive = exploreExhaustively({ ...base, pairs: 'boundaries' });
  const random = runRandom({
    steps: options.randomSteps,
    seed: options.seed,
    variant,
    stopAtFirstViolation: true,
    adversaryMoves: ['replay', 'forge', 'flip', 'garbage'],
    ...(options.store ? { store: options.store } : {}),
  });
  const divergence = variant.expect === 'safety' && options.divergence !== false ? exploreExhaustively({ ...base, pairs: 'boundaries', liveViewsOnly: true }) : undefined;
  const failure = exhaustive.failures[0];
  const randomFailure = random.failures[0];
  const expectedKind = (invariant: string | undefined) => invariant !== undefined && kindOf(invariant) === variant.expect;
  return {
    variant,
    exhaustive: { failure, schedulesRun: 1 + exhaustive.singles.runs + exhaustive.pairs.runs },
    random: { invariant: randomFailure?.violation.invariant, steps: random.steps, seed: randomFailure?.seed },
    divergence: divergence === undefined ? undefined : { failure: divergence.failures[0], schedulesRun: 1 + divergence.singles.runs + divergence.pairs.runs },
    refuted: expectedKind(failure?.violation.invariant) && expectedKind(randomFailure?.violation.invariant) && (divergence === undefined || divergence.failures.length > 0),
  };
}

export function printRefutation(r: Refutation, print: (line: string) => void): void {
  const schedule = (f: Failure | undefined) => (f === undefined ? '' : f.schedule.points.length === 0 ? 'without any fault' : `after: ${f.schedule.points.map((p) => p.label).join('; ')}`);
  print(`  ${r.variant.name} — ${r.variant.description}: ${r.refuted ? 'REFUTED' : 'NOT REFUTED'}`);
  const f = r.exhaustive.failure;
  print(`      exhaustive: ${f ? `${f.violation.invariant} at schedule ${r.exhaustive.schedulesRun} (${schedule(f)}): ${f.violation.detail}` : `no violation in ${r.exhaustive.schedulesRun} schedules`}`);
  print(`      random:     ${r.random.invariant ? `${r.random.invariant} after ${r.random.steps} steps (episode seed ${r.random.seed})` : `no violation in ${r.random.steps} steps`}`);
  if (r.divergence !== undefined) {
    const d = r.divergence.failure;
    print(`      running cores disagree: ${d ? `${d.violation.invariant} at schedule ${r.divergence.schedulesRun} (${schedule(d)}): ${d.violation.detail}` : 'never'}`);
  }
}
