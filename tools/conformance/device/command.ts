/**
 * `npm run conformance -- device --listen host:port …` (docs/CONFORMANCE.md,
 * "Device mode"): the kit acts as the hub for the device under test that
 * connects to it, runs the scenarios that apply, prints one line per
 * requirement (pass / fail / n/a, with the frames of every failure), writes
 * the JSON report with --json, and exits 0 only when every applicable
 * requirement passed (1 otherwise; 2 for a usage error).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { parseDuration } from '../../hub/duration';
import { parseFeatures } from '../report';
import type { RequirementFeature } from '../requirements';
import { loadRecords, provisionForKit, KIT_STATIC_FILE } from './records';
import { DEFAULT_TIMERS, runDeviceMode, shellPower } from './run';
import { scenarioNames } from './scenarios';

function hostPort(value: string): { host: string; port: number } {
  const match = /^(.*):(\d+)$/.exec(value);
  const port = match === null ? NaN : Number(match[2]);
  if (match === null || match[1] === '' || !Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError('expected host:port, e.g. 127.0.0.1:7700');
  return { host: (match[1] as string).replace(/^\[(.*)\]$/, '$1'), port };
}

function features(value: string): RequirementFeature[] {
  try {
    return parseFeatures(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function duration(value: string): number {
  try {
    return parseDuration(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

interface Flags {
  listen?: { host: string; port: number };
  provisionOut?: string;
  provisionOnly: boolean;
  mode: 'classic' | 'dh';
  keyWrap: boolean;
  credential: boolean;
  records?: string;
  hubStaticKeyFile?: string;
  deviceKillCmd?: string;
  deviceStartCmd?: string;
  deviceLog?: string;
  keepalive: number;
  idleTimeout: number;
  handshakeTimeout: number;
  slack: number;
  quiet: number;
  connectWait: number;
  scenarios?: string;
  without?: RequirementFeature[];
  timeout: number;
  json?: string;
  checks: boolean;
  verbose: boolean;
}

export function deviceModeCommand(): Command {
  return new Command('device')
    .description('act as the hub for the device under test that connects to --listen, and check it against docs/PROTOCOL.md')
    .option('--listen <host:port>', 'the address to listen on (only this one)', hostPort)
    .option('--provision-out <dir>', "write the device's provisioning files there (keystore.bin, device.json, and the kit's hub static key hub.static)")
    .option('--provision-only', 'with --provision-out: write the files and exit (flash or build them into the device, then run with --records)', false)
    .addOption(new Option('--mode <mode>', 'rekey mode to provision (classic covers both: the device moves to dh during the run)').choices(['classic', 'dh']).default('classic'))
    .option('--key-wrap', 'provision with a key-wrapping key (keywrap.bin)', false)
    .option('--no-credential', 'provision without a recovery credential: the device enrols one over the wire (ENROL, DK15) during the run')
    .option('--records <file>', "the device's hub record (device.json, docs/HUB.md §2); rewritten with its current key at the end")
    .option('--hub-static-key-file <file>', 'the hub static key file that goes with --records (lockstep-hub-static/1): enables the recovery scenarios')
    .option('--device-kill-cmd <cmd>', 'shell command that cuts the power of the device under test (e.g. kill -9 its process)')
    .option('--device-start-cmd <cmd>', 'shell command that starts it again (left running); also run once at the start')
    .option('--device-log <file>', 'append the output of --device-start-cmd here')
    .option('--keepalive <duration>', "the device's keep-alive interval", duration, DEFAULT_TIMERS.keepaliveMs)
    .option('--idle-timeout <duration>', "the device's idle timeout", duration, DEFAULT_TIMERS.idleMs)
    .option('--handshake-timeout <duration>', "the device's handshake timeout", duration, DEFAULT_TIMERS.handshakeMs)
    .option('--slack <duration>', 'tolerance on every timer', duration, DEFAULT_TIMERS.slackMs)
    .option('--quiet <duration>', 'how long "the device sends nothing" is watched', duration, DEFAULT_TIMERS.quietMs)
    .option('--connect-wait <duration>', 'how long to wait for the device to (re)connect', duration, DEFAULT_TIMERS.connectWaitMs)
    .option('--without <features>', 'optional features the device does not implement, comma-separated: dh, recovery, tls (docs/PROTOCOL.md §15): never exercised, their requirements n/a', features)
    .option('--scenarios <names>', `comma-separated subset of: ${scenarioNames().join(', ')}`)
    .option('--timeout <duration>', 'bound on the whole run', duration, 15 * 60_000)
    .option('--json <file>', 'write the report as JSON')
    .option('--checks', "also print the kit's verdict per check", false)
    .option('--verbose', 'print progress', false)
    .action(async (flags: Flags) => {
      if (flags.provisionOut !== undefined && flags.records !== undefined) throw new Error('--provision-out and --records exclude each other');
      if ((flags.deviceKillCmd === undefined) !== (flags.deviceStartCmd === undefined)) throw new Error('--device-kill-cmd and --device-start-cmd go together');
      let records;
      if (flags.without?.includes('dh') === true && flags.mode === 'dh') throw new Error('--mode dh with --without dh: a device without the dh mode is provisioned classic');
      if (flags.provisionOut !== undefined) {
        records = provisionForKit(flags.provisionOut, { mode: flags.mode, keyWrap: flags.keyWrap, credential: flags.credential });
        process.stderr.write(`provisioned device ${records.record.deviceId} (${flags.mode}) in ${flags.provisionOut}: keystore.bin${flags.keyWrap ? ', keywrap.bin' : ''}, device.json, ${KIT_STATIC_FILE}\n`);
        if (flags.provisionOnly) {
          process.stderr.write(`next: give the device ${join(flags.provisionOut, 'keystore.bin')}, then run with --records ${join(flags.provisionOut, 'device.json')} --hub-static-key-file ${join(flags.provisionOut, KIT_STATIC_FILE)}\n`);
          return;
        }
      } else if (flags.records !== undefined) {
        records = loadRecords(flags.records, flags.hubStaticKeyFile);
      } else {
        throw new Error('give --provision-out DIR or --records FILE');
      }
      if (flags.listen === undefined) throw new Error('--listen host:port is required');
      const power = flags.deviceKillCmd !== undefined && flags.deviceStartCmd !== undefined ? shellPower(flags.deviceKillCmd, flags.deviceStartCmd, flags.deviceLog) : undefined;
      const result = await runDeviceMode({
        host: flags.listen.host,
        port: flags.listen.port,
        records,
        timers: { keepaliveMs: flags.keepalive, idleMs: flags.idleTimeout, handshakeMs: flags.handshakeTimeout, slackMs: flags.slack, quietMs: flags.quiet, connectWaitMs: flags.connectWait },
        ...(power === undefined ? {} : { power, startAtBeginning: true }),
        ...(flags.without === undefined ? {} : { without: flags.without }),
        ...(flags.scenarios === undefined ? {} : { scenarios: flags.scenarios.split(',').map((s) => s.trim()).filter((s) => s !== '') }),
        timeoutMs: flags.timeout,
        ...(flags.verbose ? { log: (line: string) => process.stderr.write(`${line}\n`) } : {}),
        onListening: (address) => {
          if (power === undefined) process.stderr.write(`listening on ${address.host}:${address.port}: start the device under test now\n`);
        },
      });
      process.stdout.write(`${result.report.toText()}\n`);
      if (flags.checks) process.stdout.write(`\nchecks:\n${result.observer.checksText()}\n`);
      const json = result.json;
      process.stdout.write(`\ndevice mode: ${json.passed} passed, ${json.failed} failed, ${json.notApplicable} n/a (${Math.round(json.durationMs / 1000)} s)\n`);
      if (flags.json !== undefined) writeFileSync(flags.json, `${JSON.stringify(json, null, 2)}\n`);
      process.exitCode = result.exitCode;
    });
}
