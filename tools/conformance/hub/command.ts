/** The kit's `hub` mode (docs/CONFORMANCE.md). Built by issue 15's work in progress. */
import { Command } from 'commander';

export function hubModeCommand(): Command {
  return new Command('hub').description('not built yet').action(() => {
    throw new Error('the hub mode of the conformance kit is not built yet');
  });
}
