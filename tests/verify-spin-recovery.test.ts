/**
 * spin on the recovery model (docs/model/recovery.pml, docs/VERIFICATION.md
 * §7.2, docs/PROTOCOL.md §12): the correct model holds in every rollback
 * mode (safety in all three, liveness in the hub and device modes); every
 * broken variant is refuted by the check named for it; finding F4 (two
 * rollbacks leave a recovered pending key the device refuses for ever)
 * shows at MAXRB 2 and the proposed fix removes it. The `ci` configuration
 * of tools/verify/spin-recovery.ts; `npm run verify:spin-recovery` runs the
 * full one. Needs the Debian packages `spin` and `gcc` (tools/system-deps.sh).
 */
import { spinAvailable } from '../tools/verify/spin';
import { printRecoveryReport, RECOVERY_VARIANTS, recoveryChecks, runRecoverySpin } from '../tools/verify/spin-recovery';

test('the recovery variants have distinct names and switches, and the ci configuration runs each', () => {
  expect(new Set(RECOVERY_VARIANTS.map((v) => v.name)).size).toBe(RECOVERY_VARIANTS.length);
  expect(new Set(RECOVERY_VARIANTS.map((v) => v.defines[0])).size).toBe(RECOVERY_VARIANTS.length);
  const ci = recoveryChecks('ci');
  for (const variant of RECOVERY_VARIANTS) expect(ci.filter((c) => c.name === variant.name)).toHaveLength(1);
  // The four the issue names.
  for (const name of ['recovery-reuses-current-id', 'recovery-device-skips-hub-static-check', 'recovery-hub-completes-on-unverified-claim']) {
    expect(RECOVERY_VARIANTS.some((v) => v.name === name)).toBe(true);
  }
  expect(RECOVERY_VARIANTS.filter((v) => /before-persisting/.test(v.name))).toHaveLength(2);
});

test('spin: recovery keeps sync in every rollback mode; every broken variant is refuted by its check', () => {
  if (!spinAvailable()) throw new Error('spin and gcc are needed: apt-get install -y spin gcc');
  const report = runRecoverySpin('ci');
  const lines: string[] = [];
  printRecoveryReport(report, (line) => lines.push(line));
  console.log(lines.join('\n'));
  for (const { check, run } of report.runs) {
    const label = `${check.name} [${check.rollback} ${check.defines.join(' ')}] ${check.mode}`;
    expect(`${label}: ${run.failure || 'holds'}`).toBe(`${label}: ${check.expect || 'holds'}`);
    if (check.expect === '') expect(run.result.statesStored).toBeGreaterThan(100_000);
  }
}, 1_800_000);
