/**
 * Runs spin on docs/model/fencing.pml (docs/HUB.md §13.2): two hub instances
 * sharing one database row, each with a write that may land at any later
 * moment. The fenced model must pass safety; both broken variants must be
 * refuted (an assertion: the device seals with a key the database does not
 * hold with those bytes). Uses the machinery of tools/verify/spin.ts.
 *   tsx tools/verify/spin-fencing.ts [--keys N --leases N]
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runSpin, spinVersion, type SpinResult } from './spin';

export const FENCING_MODEL_PATH = resolve(dirname(fileURLToPath(import.meta.url)), '../../docs/model/fencing.pml');

export const FENCING_VARIANTS: readonly { readonly name: string; readonly define: string }[] = [
  { name: 'instances-write-without-fence', define: 'NO_FENCE' },
  { name: 'lease-without-reload', define: 'EPOCH_ONLY_NO_RELOAD' },
];

export interface FencingReport {
  readonly version: string;
  readonly correct: SpinResult;
  readonly variants: readonly SpinResult[];
}

export function runFencingSpin(bounds: { keys?: number; leases?: number } = {}): FencingReport {
  const defines = [...(bounds.keys === undefined ? [] : [`MAXKEYS=${bounds.keys}`]), ...(bounds.leases === undefined ? [] : [`MAXLEASES=${bounds.leases}`])];
  const options = { modelPath: FENCING_MODEL_PATH, defines };
  return {
    version: spinVersion(),
    correct: runSpin('safety', 'classic', undefined, options),
    // expect: 'safety' — each variant must be refuted by the safety check (compiled -O0: the search stops at the counterexample).
    variants: FENCING_VARIANTS.map((variant) => runSpin('safety', 'classic', { ...variant, expect: 'safety' }, options)),
  };
}

export function printFencingReport(report: FencingReport, print: (line: string) => void = console.log): void {
  print(`spin (${report.version}) on docs/model/fencing.pml: two instances, one device row`);
  const line = (r: SpinResult) =>
    `  ${r.variant.padEnd(32)} ${r.errors === 0 ? 'holds  ' : 'REFUTED'}  ${String(r.statesStored).padStart(9)} states, depth ${r.depth}, ${Math.round(r.ms)} ms${r.failure ? `  (${r.failure})` : ''}`;
  print(line(report.correct));
  for (const variant of report.variants) print(line(variant));
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name: string) => {
    const at = process.argv.indexOf(name);
    return at < 0 ? undefined : Number(process.argv[at + 1]);
  };
  const report = runFencingSpin({ keys: arg('--keys'), leases: arg('--leases') });
  printFencingReport(report);
  process.exitCode = report.correct.errors === 0 && report.variants.every((v) => v.errors > 0) ? 0 : 1;
}
