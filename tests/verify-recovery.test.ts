/**
 * Rollbacks and recovery in the deterministic simulation
 * (docs/VERIFICATION.md §11, docs/PROTOCOL.md §12): the hub's database
 * restored from each earlier durable snapshot of the scenario, the device
 * re-flashed with each earlier keystore image (its provisioning image
 * first), and both at once, at every step of the 3-rotation scenario, with
 * every safety invariant after every step (adjusted where a rollback must
 * break them: invariants.ts) and the liveness bound after a rollback.
 *
 * Recovery off, the rollbacks that lose sync are reported as what they
 * are: the pair never converges (L1). That shows the fault kinds bite and
 * that L1 is not vacuous for them. Recovery on (the hub's auto policy):
 * every single rollback converges within RECOVERY_LIVENESS_BOUND_MS with 0
 * violations; a sample of the pairs of a rollback and a boundary fault;
 * finding F6 (now converging); the recovery variants refuted (R1/R2 are not
 * vacuous). Every pair with a rollback runs in `npm run verify`.
 */
import { RECOVERY_LIVENESS_BOUND_MS } from '../tools/verify/constants';
import { exploreExhaustively, runSchedule } from '../tools/verify/exhaustive';
import { faultPoints } from '../tools/verify/points';
import { printRefutation, refuteVariant } from '../tools/verify/refute';
import { printExhaustive } from '../tools/verify/report';
import { RECOVERY_SPIN_ONLY_VARIANTS, RECOVERY_VARIANTS } from '../tools/verify/variants';

/** CI runs every PAIR_STRIDE-th pair (a uniform, deterministic sample); `npm run verify` runs them all. */
const PAIR_STRIDE = 400;

function failuresByKind(report: ReturnType<typeof exploreExhaustively>): Map<string, number> {
  const byKind = new Map<string, number>();
  for (const f of report.failures) {
    const key = `${f.schedule.points[0]?.kind ?? 'none'}: ${f.violation.invariant}`;
    byKind.set(key, (byKind.get(key) ?? 0) + 1);
  }
  return byKind;
}

test('recovery off: single-side rollbacks that lose sync never converge (L1), and nothing else fires', () => {
  const report = exploreExhaustively({
    rounds: 3,
    seed: 1,
    pairs: 'none',
    rollbacks: 'only',
    recovery: false,
    singleKinds: ['hub restored from a snapshot', 'device re-flashed with an image'],
  });
  const lines: string[] = [];
  printExhaustive(report, (line) => lines.push(line));
  const byKind = failuresByKind(report);
  console.log(`rollbacks without recovery (CI):\n${lines.join('\n')}\n  first violation per schedule: ${JSON.stringify([...byKind])}`);
  expect(report.singles.byKind['hub restored from a snapshot']).toBeGreaterThan(50);
  expect(report.singles.byKind['device re-flashed with an image']).toBeGreaterThan(50);
  // Only liveness fails: no safety invariant (as adjusted for rollbacks) fires.
  expect([...report.violatedInvariants.keys()]).toEqual(['L1 converges after faults']);
  expect(byKind.get('hub restored from a snapshot: L1 converges after faults')).toBeGreaterThan(20);
  expect(byKind.get('device re-flashed with an image: L1 converges after faults')).toBeGreaterThan(20);
  // Some rollbacks are harmless (e.g. a hub restored to the state it had before a commit the device has not acted on).
  expect(report.failures.length).toBeLessThan(report.singles.runs);
}, 300_000);

test('recovery on: every single rollback fault point converges within the bound, 0 violations', () => {
  const report = exploreExhaustively({ rounds: 3, seed: 1, pairs: 'none', rollbacks: 'only' });
  const lines: string[] = [];
  printExhaustive(report, (line) => lines.push(line));
  console.log(`rollbacks with recovery, single faults (CI):\n${lines.join('\n')}`);
  expect(report.failures.map((f) => `${f.violation.invariant}: ${f.violation.detail} (${f.schedule.points.map((p) => p.label).join('; ')})`)).toEqual([]);
  expect(report.singles.byKind['hub restored from a snapshot']).toBeGreaterThan(50);
  expect(report.singles.byKind['device re-flashed with an image']).toBeGreaterThan(50);
  expect(report.singles.byKind['both rolled back']).toBeGreaterThan(200);
  expect(report.doubleRollbackRuns).toBeGreaterThan(200);
  expect(report.worstRollbackRecoveryMs).toBeGreaterThan(0);
  expect(report.worstRollbackRecoveryMs).toBeLessThanOrEqual(RECOVERY_LIVENESS_BOUND_MS);
}, 600_000);

test('recovery on: a sample of the pairs of a rollback and a boundary fault after it, 0 violations', () => {
  const report = exploreExhaustively({ rounds: 3, seed: 1, pairs: 'boundaries', rollbacks: 'only', rollbackSeconds: 'ordinary', pairStride: PAIR_STRIDE });
  const lines: string[] = [];
  printExhaustive(report, (line) => lines.push(line));
  console.log(`rollback + boundary fault pairs, every ${PAIR_STRIDE}th (CI):\n${lines.join('\n')}`);
  expect(report.failures.map((f) => `${f.violation.invariant}: ${f.violation.detail} (${f.schedule.points.map((p) => p.label).join('; ')})`)).toEqual([]);
  expect(report.pairs.runs).toBeGreaterThan(150);
}, 600_000);

test('F6 (fixed in the hub core): a double rollback onto a recovered pending key with an id gap converges', () => {
  // docs/VERIFICATION.md §11, F6: the hub restored to (active 1, pending 3 recovered), the device re-flashed to (1).
  const base = runSchedule({ seed: 1, rounds: 3, points: [] }, { profile: true, rollbacks: true });
  const first = faultPoints(base.world.profiles, 0, 1, { rollbacks: true }).find((p) => p.label === 'step 14: hub database restored from snapshot 0 of 2 before dbCommit');
  expect(first).toBeDefined();
  const single = runSchedule({ seed: 1, rounds: 3, points: [first!] }, { profile: true, rollbacks: true });
  expect(single.world.violations).toEqual([]);
  const second = faultPoints(single.world.profiles, first!.step, 1, { rollbacks: true }).find((p) => p.label === 'step 51: hub restored from snapshot 3 and device re-flashed with image 0 before dbAck');
  expect(second).toBeDefined();
  const { world } = runSchedule({ seed: 1, rounds: 3, points: [first!, second!] }, { rollbacks: true });
  expect(world.violations).toEqual([]);
  expect(world.liveness.worstRollbackRecoveryMs).toBeGreaterThan(0);
});

describe('recovery variants are refuted by the simulation (under rollbacks)', () => {
  for (const variant of RECOVERY_VARIANTS) {
    test(variant.name, () => {
      const refutation = refuteVariant(variant, { rounds: 3, seed: 1, randomSteps: 0 });
      const lines: string[] = [];
      printRefutation(refutation, (line) => lines.push(line));
      console.log(lines.join('\n'));
      expect(refutation.refuted).toBe(true);
    }, 300_000);
  }
  test('every recovery variant is simulated or named spin-only, not both', () => {
    const simulated = new Set(RECOVERY_VARIANTS.map((v) => v.name));
    for (const v of RECOVERY_SPIN_ONLY_VARIANTS) expect(`${v.name}: ${simulated.has(v.name)}`).toBe(`${v.name}: false`);
    expect(simulated.size + RECOVERY_SPIN_ONLY_VARIANTS.length).toBeGreaterThanOrEqual(8);
  });
});
