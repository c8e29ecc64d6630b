/**
 * Runs tests/xs/main.ts on the real XS engine (hosts/xs-test), so `npm test`
 * covers XS: the release build runs every group, the ASan+UBSan build the
 * native module's groups. The first run compiles XS (~20 s of CPU per build);
 * later runs reuse build/xs-test.
 */
import { NATIVE_GROUPS, runXsTests } from './run';

const BUILD_AND_RUN_MS = 300_000;

describe('XS engine (hosts/xs-test)', () => {
  test(
    'release build: every group passes',
    async () => {
      const result = await runXsTests('release');
      if (!result.ok) throw new Error(`XS run failed (${result.summary}):\n${result.output}`);
      expect(result.summary).toMatch(/^\d+ passed, 0 failed$/);
    },
    BUILD_AND_RUN_MS,
  );

  test(
    'ASan+UBSan build: the native module groups pass',
    async () => {
      const result = await runXsTests('sanitize', NATIVE_GROUPS);
      if (!result.ok) throw new Error(`XS sanitizer run failed (${result.summary}):\n${result.output}`);
      expect(result.summary).toMatch(/^\d+ passed, 0 failed$/);
    },
    BUILD_AND_RUN_MS,
  );
});
