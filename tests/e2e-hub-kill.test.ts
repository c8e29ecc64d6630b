/**
 * The hub as a real child process, killed with SIGKILL at random moments
 * while keys rotate, restarted from its SQLite database each time: every
 * device ends in sync, the durable states never lose sync in between, and
 * application data is neither lost nor duplicated beyond what a crash
 * allows (ledger rules, docs/HUB.md). The second run is the main job
 * (`npm start`) in miniature, over TLS with every fault at once.
 */
import { runSimulation } from '../tools/demo/simulation';

function expectClean(summary: Awaited<ReturnType<typeof runSimulation>>): void {
  expect(summary.problems).toEqual([]);
  expect(summary.ok).toBe(true);
  expect(summary.settled).toBe(true);
  expect(summary.everOutOfSync).toBe(0);
  for (const verdict of [summary.upVerdict, summary.downVerdict]) {
    expect(verdict.lost + verdict.duplicates + verdict.unknown).toBe(0);
    expect(verdict.delivered + verdict.droppedBySenderCrash).toBe(verdict.sent);
  }
}

test('hub killed with SIGKILL during rotations, restarted from its database, several times', async () => {
  const summary = await runSimulation({
    devices: 10,
    durationMs: 12_000,
    rotateEveryMs: 400,
    chaos: true,
    tls: false,
    chaosSettings: { cutProbability: 0.2, cutMaxBytes: 20_000, powerCutProbability: 0 },
    hubKillEveryMs: [700, 1800],
    powerCycleEveryMs: 0,
    telemetryEveryMs: 300,
    commandEveryMs: 400,
  });
  expectClean(summary);
  expect(summary.hubKills).toBeGreaterThanOrEqual(3);
  expect(summary.rotations).toBeGreaterThan(50);
});

test('the main job in miniature: TLS, cuts, power cuts mid flash write, hub kills', async () => {
  const summary = await runSimulation({
    devices: 8,
    durationMs: 8_000,
    rotateEveryMs: 500,
    chaos: true,
    tls: true,
    chaosSettings: { cutProbability: 0.6, cutMaxBytes: 3000, powerCutProbability: 0.15 },
    hubKillEveryMs: [1500, 3000],
    powerCycleEveryMs: 700,
    telemetryEveryMs: 300,
    commandEveryMs: 400,
  });
  expectClean(summary);
  expect(summary.hubKills).toBeGreaterThanOrEqual(2);
  expect(summary.powerCutsDuringWrite).toBeGreaterThan(0);
  expect(summary.cuts).toBeGreaterThan(0);
});
