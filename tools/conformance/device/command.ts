/** The kit's `device` mode (docs/CONFORMANCE.md). Built by issue 15's work in progress. */
import { Command } from 'commander';

export function deviceModeCommand(): Command {
  return new Command('device').description('not built yet').action(() => {
    throw new Error('the device mode of the conformance kit is not built yet');
  });
}
