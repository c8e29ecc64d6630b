/**
 * Model checking with spin (docs/VERIFICATION.md §7): the Promela model of
 * the protocol passes safety (assertions in every state, terminal states in
 * sync, no invalid end states) and liveness (<>[] in sync under weak
 * fairness); each of the six broken variants is refuted by a counterexample.
 * Needs the Debian packages `spin` and `gcc` (tools/system-deps.sh).
 */
import { printSpinReport, runAllSpin, spinAvailable } from '../tools/verify/spin';

test('spin: the model holds, every broken variant is refuted', () => {
  if (!spinAvailable()) throw new Error('spin and gcc are needed: apt-get install -y spin gcc');
  const report = runAllSpin();
  const lines: string[] = [];
  printSpinReport(report, (line) => lines.push(line));
  console.log(lines.join('\n'));
  for (const result of report.correct) {
    expect(`${result.mode}: ${result.errors} errors`).toBe(`${result.mode}: 0 errors`);
    expect(result.statesStored).toBeGreaterThan(10_000);
  }
  for (const variant of report.variants) {
    expect(`${variant.name}: ${variant.refuted ? 'refuted' : 'not refuted'}`).toBe(`${variant.name}: refuted`);
    const expected = variant.expect === 'safety' ? variant.safety : variant.liveness;
    expect(`${variant.name} ${variant.expect}: ${expected.errors > 0}`).toBe(`${variant.name} ${variant.expect}: true`);
  }
}, 300_000);
