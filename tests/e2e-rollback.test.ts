/**
 * `npm start`'s rollback faults (issue 14) in miniature: the hub restored
 * from a backup taken seconds earlier and devices re-flashed with their
 * provisioning images, against the real hub process and the real device
 * loop on sockets. The run must end with every device settled and none
 * ever out of sync outside a rollback episode (the summary's check); and
 * the same run with recovery off must fail it — the faults do break sync,
 * and recovery is what heals them.
 */
import { runSimulation } from '../tools/demo/simulation';

const base = {
  devices: 6,
  durationMs: 9_000,
  rotateEveryMs: 500,
  chaos: true,
  tls: false,
  // No cuts or power cuts here: a cut recovery attempt waits the device's 30 s spacing (§12.7).
  chaosSettings: { cutProbability: 0, cutMaxBytes: 0, powerCutProbability: 0 },
  hubKillEveryMs: undefined,
  powerCycleEveryMs: 0,
  restoreEveryMs: [3_000, 4_000] as const,
  backupAgeMs: 1_500,
  reflashEveryMs: 2_500,
  telemetryEveryMs: 300,
  commandEveryMs: 400,
};

test('restores from a backup and re-flashes: every device recovers, 0 out of sync', async () => {
  const summary = await runSimulation(base);
  expect(summary.problems).toEqual([]);
  expect(summary.ok).toBe(true);
  expect(summary.settled).toBe(true);
  expect(summary.everOutOfSync).toBe(0);
  expect(summary.hubRestores).toBeGreaterThanOrEqual(1);
  expect(summary.reflashes).toBeGreaterThanOrEqual(2);
  expect(summary.recoveriesAccepted).toBeGreaterThanOrEqual(summary.devices);
  expect(summary.recoveredEpisodes).toBeGreaterThanOrEqual(summary.devices);
  for (const verdict of [summary.upVerdict, summary.downVerdict]) expect(verdict.lost + verdict.duplicates + verdict.unknown).toBe(0);
}, 120_000);

test('the same faults with recovery off: the run fails (devices never come back)', async () => {
  const summary = await runSimulation({ ...base, durationMs: 5_000, restoreEveryMs: [2_000, 2_500], recovery: { mode: 'off' }, settleTimeoutMs: 5_000 });
  expect(summary.ok).toBe(false);
  expect(summary.settled).toBe(false);
  expect(summary.recoveriesAccepted).toBe(0);
  expect(summary.problems.some((p) => p.includes('did not settle on one key'))).toBe(true);
}, 120_000);
