/**
 * `npm run test:xs`: builds the XS test host and runs tests/xs/main.ts on it.
 *   tsx tests/xs/run.ts               release build, every group
 *   tsx tests/xs/run.ts --sanitize    ASan+UBSan build, the native groups
 * Exits nonzero unless the program reports "N passed, 0 failed" and exits 0.
 */
import { bundle, buildHost, runOnHost, type HostVariant } from '../../hosts/xs-test/build';

/** The groups the sanitizer build runs: everything that calls into C. */
export const NATIVE_GROUPS = ['native', 'core'];

/** Node-only modules that test support imports, swapped for XS stand-ins. */
export const XS_REDIRECTS = { 'hosts/node/crypto': 'tests/xs/support/node-crypto-on-xs.ts' };

export interface XsTestResult {
  ok: boolean;
  summary: string;
  output: string;
}

export async function runXsTests(variant: HostVariant, groups: readonly string[] = []): Promise<XsTestResult> {
  const program = buildHost(variant);
  const script = await bundle('tests/xs/main.ts', 'main', { redirects: XS_REDIRECTS });
  const result = runOnHost(program, script, [...groups]);
  const output = result.stdout + result.stderr;
  const summary = /(\d+) passed, (\d+) failed/.exec(result.stdout)?.[0] ?? 'no summary';
  const ok = result.status === 0 && / 0 failed/.test(summary) && !/ERROR: AddressSanitizer|runtime error:/.test(result.stderr);
  return { ok, summary, output };
}

async function main(): Promise<void> {
  const sanitize = process.argv.includes('--sanitize');
  const started = Date.now();
  const result = await runXsTests(sanitize ? 'sanitize' : 'release', sanitize ? NATIVE_GROUPS : []);
  process.stdout.write(result.output);
  process.stdout.write(`xs-test (${sanitize ? 'ASan+UBSan' : 'release'}): ${result.summary} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  process.exitCode = result.ok ? 0 : 1;
}

if (process.argv[1] !== undefined && /tests[\\/]xs[\\/]run\.ts$/.test(process.argv[1])) {
  main().catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
}
