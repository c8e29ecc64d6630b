/**
 * Runs spin on docs/model/lockstep.pml (docs/VERIFICATION.md §7): the
 * correct model must pass both checks, every broken variant must fail at
 * least one (its counterexample is the proof that the model can fail).
 * - safety: `spin -a`, `gcc -DSAFETY -DNOCLAIM`, `pan`: assertions in every
 *   state, terminal states in sync, no invalid end states;
 * - liveness: `spin -DLIVENESS -a`, `gcc`, `pan -a -f`: ltl `converges`
 *   (<>[] in sync) under weak fairness.
 * Needs the Debian packages `spin` and `gcc`. As a program:
 *   tsx tools/verify/spin.ts            all checks, with figures
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const MODEL_PATH = resolve(dirname(fileURLToPath(import.meta.url)), '../../docs/model/lockstep.pml');

export type SpinMode = 'safety' | 'liveness';

export interface SpinResult {
  readonly variant: string;
  readonly mode: SpinMode;
  readonly errors: number;
  /** What failed (an assertion: keys disagree / a terminal state out of sync; an acceptance cycle; an invalid end state), or '' when none. */
  readonly failure: string;
  readonly statesStored: number;
  readonly statesVisited: number;
  readonly transitions: number;
  readonly depth: number;
  readonly ms: number;
}

/** The sim's broken variants (tools/verify/variants.ts) and their -D switch in the model. */
export const SPIN_VARIANTS: readonly { readonly name: string; readonly define: string; readonly expect: SpinMode }[] = [
  { name: 'device-acks-before-persisting', define: 'DEVICE_ACKS_BEFORE_PERSISTING', expect: 'safety' },
  { name: 'hub-offers-before-persisting-pending', define: 'HUB_OFFERS_BEFORE_PERSISTING', expect: 'safety' },
  { name: 'device-seals-old-until-hub-uses-new', define: 'DEVICE_SEALS_OLD_UNTIL_HUB_USES_NEW', expect: 'safety' },
  { name: 'hub-replaces-unconfirmed-pending', define: 'HUB_REPLACES_PENDING', expect: 'safety' },
  { name: 'hub-persists-promotion-lazily', define: 'HUB_LAZY_PROMOTION', expect: 'safety' },
  { name: 'hub-sends-no-confirmation', define: 'HUB_NO_CONFIRM', expect: 'liveness' },
];

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

/** One spin check in a scratch directory. */
export function runSpin(
  mode: SpinMode,
  variant?: { name: string; define: string },
  options: { maxRotations?: number; maxFaults?: number; model?: string; defines?: readonly string[] } = {},
): SpinResult {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-spin-'));
  const started = performance.now();
  try {
    // Another model (e.g. docs/model/fencing.pml) is copied under the same name: the rest is the same.
    copyFileSync(options.model ?? MODEL_PATH, join(dir, 'lockstep.pml'));
    const defines = [
      ...(variant ? [`-D${variant.define}`] : []),
      ...(mode === 'liveness' ? ['-DLIVENESS'] : []),
      ...(options.maxRotations !== undefined ? [`-DMAXROT=${options.maxRotations}`] : []),
      ...(options.maxFaults !== undefined ? [`-DMAXFAULTS=${options.maxFaults}`] : []),
      ...(options.defines ?? []).map((d) => `-D${d}`),
    ];
    execFileSync('spin', [...defines, '-a', 'lockstep.pml'], { cwd: dir, stdio: 'pipe' });
    const cflags = mode === 'safety' ? ['-DSAFETY', '-DNOCLAIM'] : [];
    execFileSync('gcc', ['-O2', ...cflags, '-o', 'pan', 'pan.c'], { cwd: dir, stdio: 'pipe' });
    const panArgs = mode === 'safety' ? ['-m2000000', '-w22'] : ['-a', '-f', '-m2000000', '-w22'];
    let output: string;
    try {
      output = execFileSync('./pan', panArgs, { cwd: dir, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    } catch (error) {
      // pan exits non-zero on some errors; its report is still on stdout.
      output = String((error as { stdout?: string }).stdout ?? '');
    }
    return parsePan(output, variant?.name ?? 'correct', mode, performance.now() - started);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function parsePan(output: string, variant: string, mode: SpinMode, ms: number): SpinResult {
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

export interface SpinReport {
  readonly version: string;
  readonly correct: readonly SpinResult[];
  readonly variants: readonly { readonly name: string; readonly expect: SpinMode; readonly safety: SpinResult; readonly liveness: SpinResult; readonly refuted: boolean }[];
}

export function runAllSpin(): SpinReport {
  const correct = [runSpin('safety'), runSpin('liveness')];
  const variants = SPIN_VARIANTS.map((variant) => {
    const safety = runSpin('safety', variant);
    const liveness = runSpin('liveness', variant);
    return { name: variant.name, expect: variant.expect, safety, liveness, refuted: safety.errors > 0 || liveness.errors > 0 };
  });
  return { version: spinVersion(), correct, variants };
}

export function describeSpin(result: SpinResult): string {
  const visited = result.statesVisited !== result.statesStored ? ` (${result.statesVisited} visited)` : '';
  return `${result.statesStored} states${visited}, ${result.transitions} transitions, depth ${result.depth}, errors ${result.errors}${result.failure ? ` (${result.failure})` : ''}, ${Math.round(result.ms)} ms`;
}

export function printSpinReport(report: SpinReport, print: (line: string) => void = console.log): void {
  print(`spin (${report.version}), model docs/model/lockstep.pml`);
  for (const result of report.correct) print(`  correct protocol, ${result.mode.padEnd(8)}: ${describeSpin(result)}`);
  for (const variant of report.variants) {
    print(`  ${variant.name} (${variant.refuted ? 'REFUTED' : 'NOT REFUTED'}):`);
    print(`      safety:   ${describeSpin(variant.safety)}`);
    print(`      liveness: ${describeSpin(variant.liveness)}`);
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (!spinAvailable()) {
    console.error('spin and gcc are needed (Debian packages `spin` and `gcc`).');
    process.exit(2);
  }
  const report = runAllSpin();
  printSpinReport(report);
  const ok = report.correct.every((r) => r.errors === 0) && report.variants.every((v) => v.refuted);
  process.exit(ok ? 0 : 1);
}
