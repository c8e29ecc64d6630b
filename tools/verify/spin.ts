/**
 * Runs spin on docs/model/lockstep.pml (docs/VERIFICATION.md §7): the
 * correct model must pass both checks in each of its modes (classic, dh,
 * the upgrade from classic to dh), every broken variant must fail at least
 * one (its counterexample is the proof that the model can fail).
 * - safety: `spin -a`, `gcc -DSAFETY -DNOCLAIM`, `pan`: assertions in every
 *   state, terminal states in sync, no invalid end states;
 * - liveness: `spin -DLIVENESS -a`, `gcc`, `pan -a -f`: ltl `converges`
 *   (<>[] in sync) under weak fairness.
 * Needs the Debian packages `spin` and `gcc`. As a program:
 *   tsx tools/verify/spin.ts            all checks at full bounds, with figures
 *   tsx tools/verify/spin.ts --ci       the bounded configuration CI runs
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const MODEL_PATH = resolve(dirname(fileURLToPath(import.meta.url)), '../../docs/model/lockstep.pml');

export type SpinMode = 'safety' | 'liveness';

/** The model's rekey mode (a -D switch): classic, dh from provisioning, or classic then moved to dh by the operator (PROTOCOL.md §11.6). */
export type SpinModel = 'classic' | 'dh' | 'upgrade';

const MODEL_DEFINES: Record<SpinModel, readonly string[]> = { classic: [], dh: ['-DDH'], upgrade: ['-DUPGRADE'] };

export interface SpinBounds {
  readonly maxRotations?: number;
  readonly maxFaults?: number;
  /** Another model file (docs/model/fencing.pml), copied under the same name; default lockstep.pml. */
  readonly modelPath?: string;
  /** More -D switches for that model (its own bounds). */
  readonly defines?: readonly string[];
  /** More gcc flags for pan (e.g. -DNFAIR=3 for a model with more processes under weak fairness). */
  readonly cflags?: readonly string[];
  /** Compile pan -O0 (a search expected to stop at its first counterexample) whatever the variant argument says. */
  readonly expectFailure?: boolean;
  /** Receives pan's whole report (to classify a counterexample). */
  readonly onOutput?: (output: string) => void;
}

export interface SpinResult {
  readonly variant: string;
  readonly model: SpinModel;
  readonly mode: SpinMode;
  /** MAXROT and MAXFAULTS of the run. */
  readonly maxRotations: number;
  readonly maxFaults: number;
  readonly errors: number;
  /** What failed (an assertion: keys disagree / a terminal state out of sync; an acceptance cycle; an invalid end state), or '' when none. */
  readonly failure: string;
  readonly statesStored: number;
  readonly statesVisited: number;
  readonly transitions: number;
  readonly depth: number;
  readonly ms: number;
}

export interface SpinVariant {
  /** The variant's name, shared with the simulation: BROKEN_VARIANTS or SPIN_ONLY_VARIANTS in tools/verify/variants.ts. */
  readonly name: string;
  /** Its -D switch in the model. */
  readonly define: string;
  readonly model: SpinModel;
  /** Which check must refute it. */
  readonly expect: SpinMode;
}

/** The broken variants and their -D switch in the model (docs/VERIFICATION.md §5). */
export const SPIN_VARIANTS: readonly SpinVariant[] = [
  { name: 'device-acks-before-persisting', define: 'DEVICE_ACKS_BEFORE_PERSISTING', model: 'classic', expect: 'safety' },
  { name: 'hub-offers-before-persisting-pending', define: 'HUB_OFFERS_BEFORE_PERSISTING', model: 'classic', expect: 'safety' },
  { name: 'device-seals-old-until-hub-uses-new', define: 'DEVICE_SEALS_OLD_UNTIL_HUB_USES_NEW', model: 'classic', expect: 'safety' },
  { name: 'hub-replaces-unconfirmed-pending', define: 'HUB_REPLACES_PENDING', model: 'classic', expect: 'safety' },
  { name: 'hub-persists-promotion-lazily', define: 'HUB_LAZY_PROMOTION', model: 'classic', expect: 'safety' },
  { name: 'hub-sends-no-confirmation', define: 'HUB_NO_CONFIRM', model: 'classic', expect: 'liveness' },
  { name: 'dh-device-fresh-ephemeral-on-repeat', define: 'DEVICE_FRESH_EPHEMERAL_ON_REPEAT', model: 'dh', expect: 'safety' },
  { name: 'dh-hub-ephemeral-not-persisted', define: 'HUB_EPHEMERAL_NOT_PERSISTED', model: 'dh', expect: 'safety' },
  { name: 'dh-device-acks-before-persisting', define: 'DEVICE_ACKS_BEFORE_PERSISTING', model: 'dh', expect: 'safety' },
  { name: 'dh-hub-forgets-ephemeral-before-promotion', define: 'HUB_FORGETS_EPHEMERAL_EARLY', model: 'dh', expect: 'safety' },
  { name: 'dh-hello-without-share', define: 'DEVICE_HELLO_WITHOUT_SHARE', model: 'dh', expect: 'liveness' },
];

/** A run of the correct model. */
export interface SpinCheck {
  readonly model: SpinModel;
  readonly mode: SpinMode;
  readonly bounds: SpinBounds;
}

/**
 * `full` (npm run verify, verify:spin): every mode, both checks, MAXROT 3
 * and MAXFAULTS 3, and both checks of every variant. `ci`
 * (tests/verify-spin.test.ts): the same except the upgrade model's liveness,
 * bounded to MAXROT 2 and MAXFAULTS 2 (at full bounds it alone costs about
 * as much CPU as all the rest together), and each variant only under the
 * check that must refute it.
 */
export type SpinConfig = 'full' | 'ci';

export function spinChecks(config: SpinConfig): readonly SpinCheck[] {
  const checks: SpinCheck[] = [];
  for (const model of ['classic', 'dh', 'upgrade'] as const) {
    checks.push({ model, mode: 'safety', bounds: {} });
    checks.push({ model, mode: 'liveness', bounds: config === 'ci' && model === 'upgrade' ? { maxRotations: 2, maxFaults: 2 } : {} });
  }
  return checks;
}

export function spinAvailable(): boolean {
  try {
    execFileSync('spin', ['-V'], { stdio: 'pipe' });
    execFileSync('gcc', ['--version'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

export function spinVersion(): string {
  return execFileSync('spin', ['-V'], { encoding: 'utf8' }).trim();
}

/** The model's defaults (docs/model/lockstep.pml). */
const DEFAULT_ROTATIONS = 3;
const DEFAULT_FAULTS = 3;

/**
 * One spin check in a scratch directory. A variant under the check that must
 * refute it is compiled -O0: the search stops at the first counterexample,
 * and gcc -O2 would cost more than the search. Everything else (the correct
 * model, a variant under the other check, which may search the whole space:
 * hub-persists-promotion-lazily survives liveness) is compiled -O2.
 */
export function runSpin(mode: SpinMode, model: SpinModel = 'classic', variant?: { name: string; define: string; expect?: SpinMode }, options: SpinBounds = {}): SpinResult {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-spin-'));
  const started = performance.now();
  try {
    copyFileSync(options.modelPath ?? MODEL_PATH, join(dir, 'lockstep.pml'));
    const defines = [
      ...MODEL_DEFINES[model],
      ...(variant ? [`-D${variant.define}`] : []),
      ...(mode === 'liveness' ? ['-DLIVENESS'] : []),
      ...(options.maxRotations !== undefined ? [`-DMAXROT=${options.maxRotations}`] : []),
      ...(options.maxFaults !== undefined ? [`-DMAXFAULTS=${options.maxFaults}`] : []),
      ...(options.defines ?? []).map((define) => `-D${define}`),
    ];
    execFileSync('spin', [...defines, '-a', 'lockstep.pml'], { cwd: dir, stdio: 'pipe' });
    const cflags = [...(mode === 'safety' ? ['-DSAFETY', '-DNOCLAIM'] : []), ...(options.cflags ?? [])];
    const quick = variant?.expect === mode || options.expectFailure === true;
    execFileSync('gcc', [quick ? '-O0' : '-O2', ...cflags, '-o', 'pan', 'pan.c'], { cwd: dir, stdio: 'pipe' });
    const panArgs = mode === 'safety' ? ['-m2000000', '-w22'] : ['-a', '-f', '-m2000000', '-w22'];
    let output: string;
    try {
      output = execFileSync('./pan', panArgs, { cwd: dir, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    } catch (error) {
      // pan exits non-zero on some errors; its report is still on stdout.
      output = String((error as { stdout?: string }).stdout ?? '');
    }
    options.onOutput?.(output);
    const bounds = { maxRotations: options.maxRotations ?? DEFAULT_ROTATIONS, maxFaults: options.maxFaults ?? DEFAULT_FAULTS };
    return { ...parsePan(output, variant?.name ?? 'correct', mode, performance.now() - started), model, ...bounds };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function parsePan(output: string, variant: string, mode: SpinMode, ms: number): Omit<SpinResult, 'model' | 'maxRotations' | 'maxFaults'> {
  const number = (pattern: RegExp): number => {
    const match = pattern.exec(output);
    return match === null ? Number.NaN : Number(match[1]);
  };
  if (/max search depth too small/.test(output)) throw new Error(`spin: search truncated for ${variant} (${mode}); raise -m`);
  const errors = number(/errors: (\d+)/);
  if (Number.isNaN(errors)) throw new Error(`spin: no result for ${variant} (${mode}):\n${output.slice(0, 2000)}`);
  const assertion = /assertion violated (.*)/.exec(output)?.[1] ?? '';
  const failure = assertion !== ''
    ? assertion.includes('rotations==')
      ? 'assertion violated: a terminal state out of sync'
      : 'assertion violated: keys disagree'
    : /acceptance cycle/.test(output)
      ? 'acceptance cycle'
      : /invalid end state/.test(output)
        ? 'invalid end state'
        : '';
  const stored = number(/([\d.e+]+) states, stored/);
  const visited = number(/states, stored \(([\d.e+]+) visited\)/);
  return {
    variant,
    mode,
    errors,
    failure: errors > 0 ? failure || 'error' : '',
    statesStored: stored,
    statesVisited: Number.isNaN(visited) ? stored : visited,
    transitions: number(/([\d.e+]+) transitions/),
    depth: number(/depth reached (\d+)/),
    ms,
  };
}

export interface SpinVariantResult {
  readonly name: string;
  readonly model: SpinModel;
  readonly expect: SpinMode;
  /** Each check run on it (`ci` runs only the expected one). */
  readonly safety?: SpinResult;
  readonly liveness?: SpinResult;
  readonly refuted: boolean;
}

export interface SpinReport {
  readonly version: string;
  readonly config: SpinConfig;
  readonly correct: readonly SpinResult[];
  readonly variants: readonly SpinVariantResult[];
  readonly ms: number;
}

export function runAllSpin(config: SpinConfig = 'full'): SpinReport {
  const started = performance.now();
  const correct = spinChecks(config).map((check) => runSpin(check.mode, check.model, undefined, check.bounds));
  const variants = SPIN_VARIANTS.map((variant): SpinVariantResult => {
    const safety = config === 'full' || variant.expect === 'safety' ? runSpin('safety', variant.model, variant) : undefined;
    const liveness = config === 'full' || variant.expect === 'liveness' ? runSpin('liveness', variant.model, variant) : undefined;
    const refuted = (safety?.errors ?? 0) > 0 || (liveness?.errors ?? 0) > 0;
    return { name: variant.name, model: variant.model, expect: variant.expect, safety, liveness, refuted };
  });
  return { version: spinVersion(), config, correct, variants, ms: performance.now() - started };
}

export function describeSpin(result: SpinResult): string {
  const visited = result.statesVisited !== result.statesStored ? ` (${result.statesVisited} visited)` : '';
  return `${result.statesStored} states${visited}, ${result.transitions} transitions, depth ${result.depth}, errors ${result.errors}${result.failure ? ` (${result.failure})` : ''}, ${Math.round(result.ms)} ms`;
}

export function printSpinReport(report: SpinReport, print: (line: string) => void = console.log): void {
  print(`spin (${report.version}), model docs/model/lockstep.pml, configuration ${report.config}`);
  for (const result of report.correct) {
    print(`  correct protocol, ${result.model.padEnd(7)} ${result.mode.padEnd(8)} (MAXROT ${result.maxRotations}, MAXFAULTS ${result.maxFaults}): ${describeSpin(result)}`);
  }
  for (const variant of report.variants) {
    print(`  ${variant.name} [${variant.model}] (${variant.refuted ? 'REFUTED' : 'NOT REFUTED'}):`);
    if (variant.safety) print(`      safety:   ${describeSpin(variant.safety)}`);
    if (variant.liveness) print(`      liveness: ${describeSpin(variant.liveness)}`);
  }
  print(`  total: ${(report.ms / 1000).toFixed(1)} s`);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (!spinAvailable()) {
    console.error('spin and gcc are needed (Debian packages `spin` and `gcc`).');
    process.exit(2);
  }
  const report = runAllSpin(process.argv.includes('--ci') ? 'ci' : 'full');
  printSpinReport(report);
  const ok = report.correct.every((r) => r.errors === 0) && report.variants.every((v) => v.refuted);
  process.exit(ok ? 0 : 1);
}
