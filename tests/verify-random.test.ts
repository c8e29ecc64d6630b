/**
 * Random mode in CI (docs/VERIFICATION.md §2): 60,000 steps of chaos and
 * calm, every fault kind and the network adversary, all invariants after
 * every step, the liveness bound in every calm phase. While finding F1 is
 * open the adversary does not reflect frames (the probe decides; F1 has its
 * own failing tests in tests/sim-regressions.test.ts).
 */
import { ADVERSARY_MOVES } from '../tools/verify/adversary';
import { probeReflection } from '../tools/verify/probes';
import { explainRandomFailure, runRandom } from '../tools/verify/random-mode';
import { printRandom } from '../tools/verify/report';

test('60,000 random steps: no violation', () => {
  const probe = probeReflection();
  const moves = probe.deviceAcceptsOwnFrame || probe.hubAcceptsOwnFrame ? ADVERSARY_MOVES.filter((m) => m !== 'reflect') : ADVERSARY_MOVES;
  const seed = 20_261_125;
  const report = runRandom({ steps: 60_000, seed, adversaryMoves: moves });
  const lines: string[] = [];
  printRandom(report, seed, (line) => lines.push(line));
  console.log(`random mode (CI), adversary: ${moves.join(', ')}:\n${lines.join('\n')}`);
  const failure = report.failures[0];
  if (failure !== undefined) throw new Error(explainRandomFailure(failure));
  expect(report.steps).toBeGreaterThanOrEqual(60_000);
  expect(report.calmPhases).toBeGreaterThan(50);
  for (const kind of ['link reset', 'link silent cut', 'device power cut', 'torn flash write', 'hub crash', 'db write failure', 'adversary forge', 'adversary flip'] as const) {
    expect(report.faults.get(kind) ?? 0).toBeGreaterThan(0);
  }
});
