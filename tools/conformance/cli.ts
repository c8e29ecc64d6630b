/**
 * The conformance kit (`npm run conformance -- hub|device …`, docs/CONFORMANCE.md):
 *   hub     act as one or many devices against the hub at --target host:port
 *   device  act as a hub for the device(s) that connect to --listen host:port
 * Each prints one line per requirement of docs/PROTOCOL.md (pass / fail /
 * n/a) with the evidence of every failure, `--json` writes the report as
 * JSON, and the exit code is 0 only when every applicable requirement passed.
 */
import { Command } from 'commander';
import { hubModeCommand } from './hub/command';
import { deviceModeCommand } from './device/command';

const program = new Command('conformance')
  .description('the Lockstep conformance kit: test any hub or any device against docs/PROTOCOL.md')
  .addCommand(hubModeCommand())
  .addCommand(deviceModeCommand());

program.parseAsync(process.argv).catch((error: unknown) => {
  process.stderr.write(`conformance: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(2);
});
