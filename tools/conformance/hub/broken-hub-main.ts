/** Runs the reference hub with an excluded design injected (test support: tools/conformance/hub/broken-hub.ts). */
import { brokenHubMain } from './broken-hub';

brokenHubMain().catch((error: unknown) => {
  process.stderr.write(`broken-hub: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});
