/**
 * Model checking with spin (docs/VERIFICATION.md §7): the Promela model of
 * the protocol, in its classic mode, its dh mode (PROTOCOL.md §11) and the
 * upgrade from one to the other, passes safety (assertions in every state,
 * terminal states in sync, no invalid end states) and liveness (<>[] in sync
 * under weak fairness); each broken variant is refuted by a counterexample
 * of the check it must fail. The bounded `ci` configuration (spin.ts);
 * `npm run verify:spin` runs the full one.
 * Needs the Debian packages `spin` and `gcc` (tools/system-deps.sh).
 */
import { printSpinReport, runAllSpin, SPIN_VARIANTS, spinAvailable } from '../tools/verify/spin';
import { BROKEN_VARIANTS, SPIN_ONLY_VARIANTS } from '../tools/verify/variants';

test('every spin variant is named, once, in the simulation\'s lists with the same kind of failure', () => {
  const simulated = new Map(BROKEN_VARIANTS.map((v) => [v.name, v.expect]));
  const spinOnly = new Map(SPIN_ONLY_VARIANTS.map((v) => [v.name, v.expect]));
  for (const name of spinOnly.keys()) expect(`${name}: simulated ${simulated.has(name)}`).toBe(`${name}: simulated false`);
  for (const variant of SPIN_VARIANTS) {
    expect(`${variant.name}: ${simulated.get(variant.name) ?? spinOnly.get(variant.name)}`).toBe(`${variant.name}: ${variant.expect}`);
  }
  for (const name of [...simulated.keys(), ...spinOnly.keys()]) {
    expect(`${name}: in spin ${SPIN_VARIANTS.some((v) => v.name === name)}`).toBe(`${name}: in spin true`);
  }
  expect(new Set(SPIN_VARIANTS.map((v) => `${v.define} ${v.model}`)).size).toBe(SPIN_VARIANTS.length);
  for (const variant of BROKEN_VARIANTS) {
    const twin = SPIN_VARIANTS.find((v) => v.name === variant.name);
    expect(`${variant.name}: ${twin?.model}`).toBe(`${variant.name}: ${variant.mode ?? 'classic'}`);
  }
});

test('spin: the model holds in every mode, every broken variant is refuted', () => {
  if (!spinAvailable()) throw new Error('spin and gcc are needed: apt-get install -y spin gcc');
  const report = runAllSpin('ci');
  const lines: string[] = [];
  printSpinReport(report, (line) => lines.push(line));
  console.log(lines.join('\n'));
  expect(report.correct.map((r) => `${r.model} ${r.mode}`)).toEqual([
    'classic safety', 'classic liveness', 'dh safety', 'dh liveness', 'upgrade safety', 'upgrade liveness',
  ]);
  for (const result of report.correct) {
    expect(`${result.model} ${result.mode}: ${result.errors} errors`).toBe(`${result.model} ${result.mode}: 0 errors`);
    expect(result.statesStored).toBeGreaterThan(10_000);
  }
  for (const variant of report.variants) {
    expect(`${variant.name}: ${variant.refuted ? 'refuted' : 'not refuted'}`).toBe(`${variant.name}: refuted`);
    const expected = variant.expect === 'safety' ? variant.safety : variant.liveness;
    expect(`${variant.name} ${variant.expect}: ${(expected?.errors ?? 0) > 0}`).toBe(`${variant.name} ${variant.expect}: true`);
  }
}, 600_000);
