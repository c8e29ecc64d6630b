/**
 * Runs spin on docs/model/recovery.pml (docs/VERIFICATION.md §7.2): recovery
 * after a rollback (docs/PROTOCOL.md §12). The correct model must pass
 * safety and liveness in each rollback mode (the hub restored from an
 * earlier snapshot; the device re-flashed with its provisioning image or an
 * earlier image; both), every broken variant must fail the check named for
 * it, and finding F4 (two rollbacks leave a recovered pending key the device
 * refuses for ever) must show as long as §12 is unamended, and vanish under
 * the proposed fix. Uses the machinery of tools/verify/spin.ts.
 *   tsx tools/verify/spin-recovery.ts          the full configuration (npm run verify)
 *   tsx tools/verify/spin-recovery.ts --ci     the bounded one tests/verify-spin-recovery.test.ts runs
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runSpin, spinAvailable, spinVersion, type SpinMode, type SpinResult } from './spin';

export const RECOVERY_MODEL_PATH = resolve(dirname(fileURLToPath(import.meta.url)), '../../docs/model/recovery.pml');

/** Which side(s) the model may roll back (its -D switch). */
export type RollbackMode = 'hub' | 'device' | 'both';

const ROLLBACK_DEFINE: Record<RollbackMode, string> = { hub: 'HUB_ROLLBACK', device: 'DEVICE_ROLLBACK', both: 'BOTH_ROLLBACK' };

/** The model's check a counterexample fails (from pan's report). */
export type RecoveryFailure =
  | 'agreement broken without a rollback'
  | 'a key from a handshake with the attacker'
  | 'an id stored that the device holds'
  | 'an id of an earlier life with other bytes'
  | 'an offer the device refuses'
  | 'a terminal state out of sync'
  | 'acceptance cycle'
  | 'invalid end state'
  | 'error';

export function classifyRecoveryFailure(output: string): RecoveryFailure {
  const assertion = /assertion violated (.*)/.exec(output)?.[1] ?? '';
  if (assertion.includes('&128')) return 'a key from a handshake with the attacker';
  if (assertion.includes('needRecovery')) return 'agreement broken without a rollback';
  if (assertion.includes('devSeen')) return 'an id of an earlier life with other bytes';
  if (assertion.includes('sN>')) return 'an id stored that the device holds';
  if (assertion.includes('offerRefused')) return 'an offer the device refuses';
  if (assertion.includes('rotations==')) return 'a terminal state out of sync';
  if (/acceptance cycle/.test(output)) return 'acceptance cycle';
  if (/invalid end state/.test(output)) return 'invalid end state';
  return 'error';
}

export interface RecoveryRun {
  /** 'correct', a variant's name, or a finding's. */
  readonly name: string;
  readonly rollback: RollbackMode;
  readonly mode: SpinMode;
  /** The model's -D switches beyond the rollback mode (bounds, variant, fix). */
  readonly defines: readonly string[];
  readonly result: SpinResult;
  readonly failure: RecoveryFailure | '';
}

export interface RecoveryVariant {
  readonly name: string;
  /** Its -D switch (and any bound it needs, e.g. a second attacker action). */
  readonly defines: readonly string[];
  readonly rollback: RollbackMode;
  /** The check that must refute it. */
  readonly expect: RecoveryFailure;
  /** The counterexample, in a sentence (docs/VERIFICATION.md §7.2). */
  readonly counterexample: string;
}

/** The broken variants of §12's rules (docs/VERIFICATION.md §7.2), each with the check that must refute it. */
export const RECOVERY_VARIANTS: readonly RecoveryVariant[] = [
  {
    name: 'recovery-reuses-current-id',
    defines: ['RECOVERY_REUSES_CURRENT_ID'],
    rollback: 'hub',
    expect: 'an id stored that the device holds',
    counterexample: 'the hub, restored to id 1, gives the device (holding 2) N = 2; the device stores (2, new bytes) beside (2, old bytes)',
  },
  {
    name: 'recovery-id-from-device-report-only',
    defines: ['RECOVERY_ID_FROM_DEVICE_ONLY'],
    rollback: 'device',
    expect: 'an id of an earlier life with other bytes',
    counterexample: 'a device re-flashed to id 1 after it held 2 gets N = 2 from a hub that ignores its own id 2: id 2 names two keys across the device\'s lives',
  },
  {
    name: 'recovery-device-skips-hub-static-check',
    defines: ['DEVICE_SKIPS_HUB_STATIC_CHECK'],
    rollback: 'hub',
    expect: 'agreement broken without a rollback',
    counterexample: 'after the honest RECOVER_REPLY, the attacker forges RECOVER_RESULT ACCEPTED (tag4 without es/ss is computable); the device stores a key the hub never stored',
  },
  {
    name: 'recovery-hub-completes-on-unverified-claim',
    defines: ['HUB_SKIPS_DEVICE_STATIC_CHECK', 'MAXATT=2'],
    rollback: 'hub',
    expect: 'a key from a handshake with the attacker',
    counterexample: 'after NO_KEY the attacker races the device with its own RECOVER_INIT and RECOVER_FINISH; the hub stores a pending key from a handshake with the attacker',
  },
  {
    name: 'recovery-device-uses-result-before-persisting',
    defines: ['DEVICE_USES_RESULT_BEFORE_PERSISTING'],
    rollback: 'hub',
    expect: 'agreement broken without a rollback',
    counterexample: 'the device takes N into memory and seals under it before its keystore has it: a power cut then leaves it with keys the hub no longer accepts',
  },
  {
    name: 'recovery-hub-answers-before-persisting',
    defines: ['HUB_ANSWERS_BEFORE_PERSISTING'],
    rollback: 'hub',
    expect: 'agreement broken without a rollback',
    counterexample: 'RECOVER_RESULT ACCEPTED leaves before the pending N is durable; the device stores N, the hub crashes and comes back without it',
  },
  {
    name: 'recovery-device-stores-before-result',
    defines: ['DEVICE_STORES_ON_REPLY'],
    rollback: 'hub',
    expect: 'agreement broken without a rollback',
    counterexample: 'the device stores N on RECOVER_REPLY (not R1); the hub, whose check shows the device in sync (a corrupted HELLO), answers IN_SYNC, and the device now seals under N',
  },
  {
    name: 'recovery-hub-stores-before-tag3',
    defines: ['HUB_STORES_ON_INIT', 'INIT_FORGER', 'MAXATT=2'],
    rollback: 'hub',
    expect: 'an offer the device refuses',
    counterexample: 'an attacker holding s_h corrupts a HELLO and forges RECOVER_INIT; the hub replaces its pending key by N > A + 1 on it (not R1), and offers N, which the device refuses',
  },
  {
    name: 'recovery-hub-ignores-check',
    defines: ['HUB_IGNORES_CHECK'],
    rollback: 'hub',
    expect: 'an offer the device refuses',
    counterexample: 'a corrupted HELLO of a device in sync starts a recovery; the hub accepts although check matches its active key (not R4), the RESULT is lost, and the device (sealing under A) is offered N > A + 1, which it refuses',
  },
];

export interface RecoveryCheck {
  readonly name: string;
  readonly rollback: RollbackMode;
  readonly mode: SpinMode;
  readonly defines: readonly string[];
  /** '' = must hold; otherwise the failure it must show. */
  readonly expect: RecoveryFailure | '';
}

export type RecoveryConfig = 'full' | 'ci';

/**
 * `ci`: the correct model's safety in the three modes at the model's
 * default bounds (MAXROT 1, MAXFAULTS 2, MAXRB 1, MAXATT 1, MAXREC 1) and
 * its liveness in the hub and device modes with MAXFAULTS 1; finding F4 at MAXRB 2 and the
 * proposed fix's safety there; every variant under its check. `full` adds
 * the both mode's liveness, F4's liveness, the fix's liveness and hub-mode
 * safety at MAXRB 2 (its both-mode safety, 13.6 million states, is a
 * one-off run: docs/VERIFICATION.md §7.2), the attacker holding s_h for
 * RECOVER_INIT, and a second attacker action.
 */
export function recoveryChecks(config: RecoveryConfig): readonly RecoveryCheck[] {
  const checks: RecoveryCheck[] = [];
  for (const rollback of ['hub', 'device', 'both'] as const) {
    checks.push({ name: 'correct', rollback, mode: 'safety', defines: [], expect: '' });
  }
  // Liveness at MAXFAULTS 1 in ci (a third of the cost); at the default 2 in full.
  const liveness = config === 'ci' ? ['MAXFAULTS=1'] : [];
  checks.push({ name: 'correct', rollback: 'hub', mode: 'liveness', defines: liveness, expect: '' });
  checks.push({ name: 'correct', rollback: 'device', mode: 'liveness', defines: liveness, expect: '' });
  checks.push({ name: 'correct, ids across lives when both roll back', rollback: 'both', mode: 'safety', defines: ['CROSS_LIFE_IDS_ANYWAY', 'MAXROT=2'], expect: 'an id of an earlier life with other bytes' });
  checks.push({ name: 'finding F4 (two rollbacks)', rollback: 'device', mode: 'safety', defines: ['MAXRB=2'], expect: 'an offer the device refuses' });
  checks.push({ name: 'proposed fix of F4', rollback: 'device', mode: 'safety', defines: ['MAXRB=2', 'FIX_RECOVERED_PENDING'], expect: '' });
  if (config === 'full') {
    checks.push({ name: 'correct', rollback: 'both', mode: 'liveness', defines: [], expect: '' });
    checks.push({ name: 'correct, INIT forger', rollback: 'hub', mode: 'safety', defines: ['INIT_FORGER', 'MAXATT=2'], expect: '' });
    checks.push({ name: 'correct, two attacker actions', rollback: 'device', mode: 'safety', defines: ['MAXATT=2'], expect: '' });
    checks.push({ name: 'finding F4 (two rollbacks)', rollback: 'device', mode: 'liveness', defines: ['MAXRB=2'], expect: 'acceptance cycle' });
    checks.push({ name: 'proposed fix of F4', rollback: 'device', mode: 'liveness', defines: ['MAXRB=2', 'FIX_RECOVERED_PENDING'], expect: '' });
    checks.push({ name: 'proposed fix of F4', rollback: 'hub', mode: 'safety', defines: ['MAXRB=2', 'FIX_RECOVERED_PENDING'], expect: '' });
  }
  for (const variant of RECOVERY_VARIANTS) {
    checks.push({ name: variant.name, rollback: variant.rollback, mode: 'safety', defines: variant.defines, expect: variant.expect });
  }
  return checks;
}

export function runRecoveryCheck(check: RecoveryCheck): RecoveryRun {
  let output = '';
  // A check expected to fail is compiled -O0 (runSpin: the search stops at the first counterexample).
  const result = runSpin(check.mode, 'classic', undefined, {
    modelPath: RECOVERY_MODEL_PATH,
    defines: [ROLLBACK_DEFINE[check.rollback], ...check.defines],
    // Six processes under weak fairness (Device, Hub, Window, Faults, Attacker, Time).
    cflags: check.mode === 'liveness' ? ['-DNFAIR=3'] : [],
    expectFailure: check.expect !== '',
    onOutput: (text) => {
      output = text;
    },
  });
  return { name: check.name, rollback: check.rollback, mode: check.mode, defines: check.defines, result, failure: result.errors > 0 ? classifyRecoveryFailure(output) : '' };
}

export interface RecoveryReport {
  readonly version: string;
  readonly config: RecoveryConfig;
  readonly runs: readonly { readonly check: RecoveryCheck; readonly run: RecoveryRun; readonly ok: boolean }[];
  readonly ms: number;
}

export function runRecoverySpin(config: RecoveryConfig = 'full'): RecoveryReport {
  const started = performance.now();
  const runs = recoveryChecks(config).map((check) => {
    const run = runRecoveryCheck(check);
    return { check, run, ok: run.failure === check.expect };
  });
  return { version: spinVersion(), config, runs, ms: performance.now() - started };
}

export function printRecoveryReport(report: RecoveryReport, print: (line: string) => void = console.log): void {
  print(`spin (${report.version}), model docs/model/recovery.pml, configuration ${report.config}`);
  for (const { check, run, ok } of report.runs) {
    const label = `${check.name} [${check.rollback}${check.defines.length ? ` ${check.defines.join(' ')}` : ''}] ${check.mode}`;
    const verdict = check.expect === '' ? (ok ? 'holds' : 'FAILS') : ok ? 'REFUTED as expected' : `NOT AS EXPECTED (want: ${check.expect})`;
    const r = run.result;
    const visited = r.statesVisited !== r.statesStored ? ` (${r.statesVisited} visited)` : '';
    print(`  ${label}: ${verdict}; ${r.statesStored} states${visited}, depth ${r.depth}, errors ${r.errors}${run.failure ? ` (${run.failure})` : ''}, ${Math.round(r.ms)} ms`);
  }
  print(`  total: ${(report.ms / 1000).toFixed(1)} s`);
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (!spinAvailable()) {
    console.error('spin and gcc are needed (Debian packages `spin` and `gcc`).');
    process.exit(2);
  }
  const report = runRecoverySpin(process.argv.includes('--ci') ? 'ci' : 'full');
  printRecoveryReport(report);
  process.exitCode = report.runs.every((r) => r.ok) ? 0 : 1;
}
