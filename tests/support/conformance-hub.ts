/** Shortened waits for the hub-mode tests (tests/conformance-hub*.test.ts); `npm run conformance` uses the spec's. */
import type { HubKitOptions } from '../../tools/conformance/hub/context';
import { runHubConformance, type HubKitResult } from '../../tools/conformance/hub/run';
import type { Testbed } from '../../tools/conformance/hub/testbed';

export const SHORT: Pick<HubKitOptions, 'timeouts' | 'keepAlive'> = {
  timeouts: { frameMs: 2_000, reofferMs: 3_000, silenceMs: 300 },
  keepAlive: { intervalMs: 1_500, waitMs: 3_500 },
};

/** The kit against a testbed hub on loopback, with the shortened waits (`timeouts` merged over SHORT's). */
export function runAgainstTestbed(bed: Testbed, options: Partial<Omit<HubKitOptions, 'target' | 'devices' | 'hooks'>> = {}): Promise<HubKitResult> {
  return runHubConformance({
    target: { host: '127.0.0.1', port: bed.port },
    devices: bed.devices,
    hubStatic: bed.hubStatic,
    hooks: bed.hub.hooks(),
    ...SHORT,
    ...options,
    timeouts: { ...SHORT.timeouts, ...options.timeouts },
  });
}
