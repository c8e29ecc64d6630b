/** Shortened waits for the hub-mode tests (tests/conformance-hub*.test.ts); `npm run conformance` uses the spec's. */
import type { HubKitOptions } from '../../tools/conformance/hub/context';

export const SHORT: Pick<HubKitOptions, 'timeouts' | 'keepAlive'> = {
  timeouts: { frameMs: 2_000, reofferMs: 3_000, silenceMs: 300 },
  keepAlive: { intervalMs: 1_500, waitMs: 3_500 },
};
