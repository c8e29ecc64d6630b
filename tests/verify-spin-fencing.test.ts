/**
 * spin on the two-instance fencing model (docs/model/fencing.pml, docs/HUB.md
 * §10.2): the fenced model holds in every state; the variant whose writes are
 * unconditional, and the one whose lease keeps the cached row, are refuted.
 * Needs the Debian packages `spin` and `gcc` (tools/system-deps.sh).
 */
import { spinAvailable } from '../tools/verify/spin';
import { printFencingReport, runFencingSpin } from '../tools/verify/spin-fencing';

test('spin: fencing keeps two instances in sync with the device; both unfenced variants are refuted', () => {
  if (!spinAvailable()) throw new Error('spin and gcc are needed: apt-get install -y spin gcc');
  const report = runFencingSpin({ keys: 5, leases: 4 });
  const lines: string[] = [];
  printFencingReport(report, (line) => lines.push(line));
  console.log(lines.join('\n'));
  expect(report.correct.errors).toBe(0);
  expect(report.correct.statesStored).toBeGreaterThan(10_000);
  for (const variant of report.variants) {
    expect(`${variant.variant}: ${variant.errors > 0 ? variant.failure : 'not refuted'}`).toBe(`${variant.variant}: assertion violated: keys disagree`);
  }
}, 120_000);
