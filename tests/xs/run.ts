/**
 * `npm run test:xs`: builds the XS test host and runs tests/xs/main.ts on it.
 *   tsx tests/xs/run.ts               release build: every group on the mbedTLS backend,
 *                                     the native group on the ESP32 backend (stand-in IDF)
 *   tsx tests/xs/run.ts --sanitize    ASan+UBSan build: the groups that reach C, both backends
 * Exits nonzero unless every run reports "N passed, 0 failed" and exits 0.
 */
import { bundle, buildHost, runOnHost, type Backend, type HostVariant } from '../../hosts/xs-test/build';

/** Node-only modules that test support imports, swapped for XS stand-ins. */
export const XS_REDIRECTS = {
  'hosts/node/crypto': 'tests/xs/support/node-crypto-on-xs.ts',
  'hosts/node/key-agreement': 'tests/xs/support/node-key-agreement-on-xs.ts',
};

export interface XsRunPlan {
  variant: HostVariant;
  backend: Backend;
  /** Test groups to run (tests/xs/main.ts); empty = all. */
  groups: readonly string[];
}

/** What `npm run test:xs` (and the jest wrapper) runs, per build variant. */
export const XS_PLANS: Record<HostVariant, readonly XsRunPlan[]> = {
  release: [
    { variant: 'release', backend: 'mbedtls', groups: [] },
    { variant: 'release', backend: 'esp32StandIn', groups: ['native', 'dh'] },
  ],
  sanitize: [
    { variant: 'sanitize', backend: 'mbedtls', groups: ['native', 'core', 'dh'] },
    { variant: 'sanitize', backend: 'esp32StandIn', groups: ['native', 'dh'] },
  ],
};

export interface XsTestResult {
  ok: boolean;
  label: string;
  summary: string;
  output: string;
}

export async function runXsTests(plan: XsRunPlan): Promise<XsTestResult> {
  const programs = buildHost(plan.variant);
  const script = await bundle('tests/xs/main.ts', 'main', { redirects: XS_REDIRECTS });
  const result = runOnHost(programs[plan.backend], script, [...plan.groups]);
  const output = result.stdout + result.stderr;
  const summary = /(\d+) passed, (\d+) failed/.exec(result.stdout)?.[0] ?? 'no summary';
  const ok = result.status === 0 && / 0 failed/.test(summary) && !/ERROR: AddressSanitizer|runtime error:/.test(result.stderr);
  const label = `${plan.variant === 'sanitize' ? 'ASan+UBSan' : 'release'}, ${plan.backend} backend, ${plan.groups.length ? plan.groups.join('+') : 'all groups'}`;
  return { ok, label, summary, output };
}

async function main(): Promise<void> {
  const variant: HostVariant = process.argv.includes('--sanitize') ? 'sanitize' : 'release';
  let ok = true;
  for (const plan of XS_PLANS[variant]) {
    const started = Date.now();
    const result = await runXsTests(plan);
    if (!result.ok) process.stdout.write(result.output);
    process.stdout.write(`xs-test (${result.label}): ${result.summary} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    ok &&= result.ok;
  }
  process.exitCode = ok ? 0 : 1;
}

if (process.argv[1] !== undefined && /tests[\\/]xs[\\/]run\.ts$/.test(process.argv[1])) {
  main().catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
}
