/**
 * Runs tests/xs/main.ts on the real XS engine (hosts/xs-test), so `npm test`
 * covers XS: the plans of tests/xs/run.ts (release: every group; ASan+UBSan:
 * the groups that reach C; each on the mbedTLS backend and, for the native
 * group, on the ESP32 backend over its IDF stand-in). The first run compiles
 * XS twice (~20 s of CPU each); later runs reuse build/xs-test.
 */
import { XS_PLANS, runXsTests } from './run';

const BUILD_AND_RUN_MS = 300_000;

describe('XS engine (hosts/xs-test)', () => {
  for (const plan of [...XS_PLANS.release, ...XS_PLANS.sanitize]) {
    const groups = plan.groups.length ? plan.groups.join('+') : 'all groups';
    test(
      `${plan.variant} build, ${plan.backend} backend: ${groups} pass`,
      async () => {
        const result = await runXsTests(plan);
        if (!result.ok) throw new Error(`XS run failed (${result.label}: ${result.summary}):\n${result.output}`);
        expect(result.summary).toMatch(/^\d+ passed, 0 failed$/);
      },
      BUILD_AND_RUN_MS,
    );
  }
});
