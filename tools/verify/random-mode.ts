/**
 * Random mode (docs/VERIFICATION.md §2): long seeded runs that alternate
 * chaos and calm.
 * - Chaos: random latency, TCP-like chunking (frames split and joined at
 *   random), random commands (rotations, app data both ways), and faults
 *   drawn from the seed at every step: link resets, silent cuts, cuts inside
 *   a frame, delays, device power cuts (also between actions and inside
 *   flash programs and erases), hub crashes (process and machine, also
 *   between actions), database write failures, and the adversary's
 *   replays, reflections, forgeries, bit flips and garbage.
 * - Calm: faults stop; device and hub must converge within the liveness
 *   bound (L1), then a few fault-free rounds must each finish within the
 *   round bound (L2). Then chaos again.
 * Every safety invariant is checked after every step, chaos or calm.
 * With two hub instances (docs/VERIFICATION.md §5a) the chaos also sends
 * connections to a random instance, pauses (SIGSTOP) an instance for up to
 * 70 s and crashes either one.
 */
import { ADVERSARY_MOVES, type AdversaryMove } from './adversary';
import { CHAOS_ONE_WAY_MAX_MS } from './constants';
import type { BeforeFault, FaultPlan, SimEvent, StepFaults } from './faults';
import { Rng } from './rng';
import type { Variant } from './variant';
import { World, type Driver, type FaultKind, type StoreFactory, type Violation } from './world';

export interface RandomOptions {
  /** Total steps to run, over as many episodes as it takes. */
  readonly steps: number;
  readonly seed: number;
  readonly variant?: Variant;
  readonly store?: StoreFactory;
  readonly mode?: 'classic' | 'dh';
  /** Hub instances sharing the database; default 1, or the variant's. */
  readonly instances?: 1 | 2;
  /** Steps per episode (one World) before starting a fresh one. */
  readonly episodeSteps?: number;
  readonly stopAtFirstViolation?: boolean;
  /** The adversary's repertoire (default: all moves). */
  readonly adversaryMoves?: readonly AdversaryMove[];
  readonly onProgress?: (line: string) => void;
}

export interface RandomFailure {
  readonly seed: number;
  readonly episodeSteps: number;
  readonly adversaryMoves: readonly AdversaryMove[];
  readonly violation: Violation;
}

export interface RandomReport {
  steps: number;
  episodes: number;
  checks: number;
  faults: Map<FaultKind, number>;
  calmPhases: number;
  failures: RandomFailure[];
  violatedInvariants: Map<string, number>;
  worstRecoveryMs: number;
  worstConnectedMs: number;
  worstRoundMs: number;
  rotationsConfirmed: number;
  appDelivered: number;
  framesRejected: number;
}

const CHAOS_STEPS = [40, 600] as const;
const CALM_ROUNDS = 2;
/** Per chaos step: probability of one fault. */
const FAULT_PROBABILITY = 0.06;
const DEFAULT_EPISODE_STEPS = 6_000;

type Phase = 'chaos' | 'calm';

/** Commands at random moments during chaos; rounds in sync during calm. */
class ChaosDriver implements Driver {
  readonly #rng: Rng;
  phase: Phase = 'chaos';
  #phaseSteps: number;
  #nextCommandAt: number;
  #calmRounds = 0;
  #roundInFlight = false;
  calmPhases = 0;

  constructor(rng: Rng, now: number) {
    this.#rng = rng;
    this.#phaseSteps = rng.between(CHAOS_STEPS[0], CHAOS_STEPS[1]);
    this.#nextCommandAt = now + rng.between(50, 3_000);
  }

  stateText(): string {
    return `${this.phase}/${this.#phaseSteps}/${this.#nextCommandAt}/${this.#calmRounds}`;
  }

  /** Called once per step (by the plan): moves between phases. */
  tick(world: World): void {
    if (this.phase === 'chaos') {
      if (--this.#phaseSteps > 0) return;
      this.phase = 'calm';
      this.calmPhases++;
      this.#calmRounds = 0;
      this.#roundInFlight = false;
      world.chaos = false;
      // Frames sent during chaos may still be on their way with chaos latency.
      world.liveness.fault(world.now + CHAOS_ONE_WAY_MAX_MS);
      world.trace.log(() => 'CALM: faults stop');
    }
  }

  ready(world: World): boolean {
    if (this.phase !== 'calm' || !world.synced()) return false;
    return true;
  }

  nextAt(): number | undefined {
    return this.phase === 'chaos' ? this.#nextCommandAt : undefined;
  }

  run(world: World, now: number): void {
    if (this.phase === 'calm') {
      // A command timed during chaos can fire just as calm begins: rounds start only in sync.
      if (!world.synced()) return;
      if (this.#roundInFlight) this.#calmRounds++;
      if (this.#calmRounds >= CALM_ROUNDS) {
        this.phase = 'chaos';
        this.#phaseSteps = this.#rng.between(CHAOS_STEPS[0], CHAOS_STEPS[1]);
        this.#nextCommandAt = now + this.#rng.between(50, 3_000);
        world.chaos = true;
        world.trace.log(() => 'CHAOS: faults resume');
        return;
      }
      this.#roundInFlight = true;
      world.trace.log(() => 'operator (calm): app data both ways + rotate');
      world.hub.send(now);
      world.device.send(now);
      this.#rotate(world, now);
      world.liveness.roundIssued(now);
      return;
    }
    this.#nextCommandAt = now + this.#rng.between(50, 8_000);
    const roll = this.#rng.int(10);
    if (roll < 3) this.#rotate(world, now);
    else if (roll < 6) world.device.send(now);
    else if (roll < 9) world.hub.send(now);
    else {
      world.device.send(now);
      world.hub.send(now);
    }
  }

  #rotate(world: World, now: number): void {
    const hub = world.hub.core;
    if (hub === undefined || hub.deviceState(world.deviceId).persisting) return;
    world.trace.log(() => 'operator: rotate');
    world.hub.rotate(now);
  }

  done(): boolean {
    return false;
  }
}

/** Faults drawn from the seed, only during chaos. */
class ChaosPlan implements FaultPlan {
  readonly #rng: Rng;
  readonly #moves: readonly AdversaryMove[];
  readonly #instances: number;
  world: World | undefined;
  driver: ChaosDriver | undefined;

  constructor(rng: Rng, moves: readonly AdversaryMove[], instances = 1) {
    this.#rng = rng;
    this.#moves = moves;
    this.#instances = instances;
  }

  at(_step: number, event: SimEvent): StepFaults | undefined {
    const world = this.world!;
    this.driver!.tick(world);
    if (this.driver!.phase !== 'chaos') return undefined;
    // Chaos itself (random latency, chunking) is a fault for liveness: the bounds count from calm.
    world.liveness.fault(world.now);
    const rng = this.#rng;
    const faults: { -readonly [K in keyof StepFaults]: StepFaults[K] } = {};
    if (event.kind === 'deliver') {
      if (rng.chance(0.25)) faults.splitAtByte = rng.between(1, 200);
      if (rng.chance(0.1)) faults.coalesce = true;
    }
    // Instances: the balancer picks an instance at random per connection (tools/hub/postgres/balancer.ts).
    if (this.#instances > 1 && event.kind === 'reconnect') faults.connectTo = rng.int(this.#instances);
    if (!rng.chance(FAULT_PROBABILITY)) return faults;
    const before: BeforeFault[] = [];
    switch (rng.int(this.#instances > 1 ? 16 : 14)) {
      case 0:
        before.push({ kind: 'reset', silent: false });
        break;
      case 1:
        before.push({ kind: 'reset', silent: true });
        break;
      case 2:
        if (event.kind === 'deliver') faults.cutAtByte = rng.between(0, 200);
        break;
      case 3:
        before.push({ kind: 'delay', direction: rng.chance(0.5) ? 'up' : 'down', ms: rng.between(500, 60_000) });
        break;
      case 4:
        before.push({ kind: 'devicePowerCut' });
        break;
      case 5:
        faults.deviceCrashAfterAction = rng.between(1, 3);
        break;
      case 6:
      case 7:
        faults.tornWrite = {
          operation: rng.int(3),
          bytes: rng.between(0, 90),
          inFlightBits: rng.int(256),
          erase: rng.pick(['unchanged', 'half', 'erased'] as const),
        };
        break;
      case 8:
        before.push({ kind: 'hubCrash', silent: rng.chance(0.3) });
        break;
      case 9:
        faults.hubCrashAfterAction = rng.between(1, 3);
        break;
      case 10:
        if (event.kind === 'dbCommit') faults.dbFailure = rng.chance(0.5) ? 'beforeCommit' : 'afterCommit';
        break;
      case 14:
        before.push({ kind: 'pause', instance: rng.int(this.#instances), ms: rng.between(500, 70_000) });
        break;
      case 15:
        before.push({ kind: 'hubCrash', silent: rng.chance(0.3), instance: rng.int(this.#instances) });
        break;
      default:
        if (this.#moves.length > 0) before.push({ kind: 'adversary', move: rng.pick(this.#moves) });
        break;
    }
    faults.before = before;
    return faults;
  }
}

export function newRandomReport(): RandomReport {
  return {
    steps: 0,
    episodes: 0,
    checks: 0,
    faults: new Map(),
    calmPhases: 0,
    failures: [],
    violatedInvariants: new Map(),
    worstRecoveryMs: 0,
    worstConnectedMs: 0,
    worstRoundMs: 0,
    rotationsConfirmed: 0,
    appDelivered: 0,
    framesRejected: 0,
  };
}

/** One episode: a fresh World driven by `seed` for `steps` steps. */
export interface EpisodeOptions {
  readonly mode?: 'classic' | 'dh';
  readonly variant?: Variant;
  readonly store?: StoreFactory;
  readonly trace?: boolean;
  readonly adversaryMoves?: readonly AdversaryMove[];
  readonly instances?: 1 | 2;
}

export function randomEpisode(seed: number, steps: number, options: EpisodeOptions = {}): { world: World; driver: ChaosDriver } {
  const rng = new Rng(seed, 3);
  const instances = options.instances ?? options.variant?.instances ?? 1;
  const plan = new ChaosPlan(rng, options.adversaryMoves ?? ADVERSARY_MOVES, instances);
  const driver = new ChaosDriver(rng, 0);
  const world = new World({
    seed,
    driver,
    plan,
    ...(options.variant ? { variant: options.variant } : {}),
    ...(options.store ? { store: options.store } : {}),
    ...(options.mode ? { mode: options.mode } : {}),
    ...(instances === 1 ? {} : { instances }),
    trace: options.trace ?? false,
    maxSteps: steps,
  });
  plan.world = world;
  plan.driver = driver;
  world.chaos = true;
  world.run(() => world.step < steps);
  // Reaching the step budget is the normal end of an episode, not a livelock.
  if (world.violations.length > 0 && world.violations[0]!.invariant === 'L3 no livelock') world.violations.shift();
  return { world, driver };
}

export function runRandom(options: RandomOptions, report = newRandomReport()): RandomReport {
  const episodeSteps = options.episodeSteps ?? DEFAULT_EPISODE_STEPS;
  let episode = 0;
  while (report.steps < options.steps) {
    const seed = (options.seed + episode * 0x9e3779b1) >>> 0;
    episode++;
    const steps = Math.min(episodeSteps, options.steps - report.steps);
    const { world, driver } = randomEpisode(seed, steps, options);
    report.episodes++;
    report.steps += world.step;
    report.checks += world.checks;
    report.calmPhases += driver.calmPhases;
    report.rotationsConfirmed += world.counters.rotationsConfirmed;
    report.appDelivered += world.counters.appDelivered;
    report.framesRejected += world.counters.framesRejected;
    report.worstRecoveryMs = Math.max(report.worstRecoveryMs, world.liveness.worstRecoveryMs);
    report.worstConnectedMs = Math.max(report.worstConnectedMs, world.liveness.worstConnectedMs);
    report.worstRoundMs = Math.max(report.worstRoundMs, world.liveness.worstRoundMs);
    for (const [kind, count] of world.faults) report.faults.set(kind, (report.faults.get(kind) ?? 0) + count);
    const violation = world.violations[0];
    if (violation !== undefined) {
      report.failures.push({ seed, episodeSteps: steps, adversaryMoves: options.adversaryMoves ?? ADVERSARY_MOVES, violation });
      for (const v of world.violations) report.violatedInvariants.set(v.invariant, (report.violatedInvariants.get(v.invariant) ?? 0) + 1);
      if (options.stopAtFirstViolation) break;
    }
    if (episode % 20 === 0) options.onProgress?.(`random: ${report.steps} steps, ${report.episodes} episodes, ${report.failures.length} failing`);
  }
  return report;
}

/** Re-runs a failing episode from its seed with the trace on. */
export function explainRandomFailure(failure: RandomFailure, options: { variant?: Variant; store?: StoreFactory; mode?: 'classic' | 'dh'; instances?: 1 | 2 } = {}): string {
  const { world } = randomEpisode(failure.seed, failure.episodeSteps, { ...options, adversaryMoves: failure.adversaryMoves, trace: true });
  const again = world.violations[0];
  const reproduced = again !== undefined && again.invariant === failure.violation.invariant && again.step === failure.violation.step;
  return [
    `VIOLATION ${failure.violation.invariant} at step ${failure.violation.step} (t+${failure.violation.atMs} ms): ${failure.violation.detail}`,
    `  random episode seed ${failure.seed} (${failure.episodeSteps} steps, adversary: ${failure.adversaryMoves.join(', ')}); rerun: ${reproduced ? 'reproduced' : 'NOT reproduced'}; trace:`,
    world.trace.text(150),
  ].join('\n');
}
