/**
 * `npm run conformance -- hub …` (docs/CONFORMANCE.md): act as devices
 * against any hub. Two steps:
 *   1. `--records-out FILE`: write device records for the hub under test to
 *      import (hub records as JSON lines, and the kit's private file beside
 *      them), then exit;
 *   2. `--target host:port --records FILE`: run the scenarios, print one line
 *      per requirement, write `--json`, exit 0 only when every applicable
 *      requirement passed (1 otherwise, 2 for a usage error).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { LockstepError } from '../../../modules/errors';
import { DURATION_HELP, formatDuration, parseDuration } from '../../hub/duration';
import type { HubKitTimeouts } from './context';
import { loadKitDevices, newKitDevices, saveKitDevices, writeKitRecords, type HubStaticPublic } from './kit-devices';
import { parseFeatures } from '../report';
import type { RequirementFeature } from '../requirements';
import { runHubConformance } from './run';
import { SCENARIOS } from './scenarios';

/** Devices the scenarios use besides the fault runs' (crash needs three per mode, one with a credential). */
export const SCENARIO_DEVICES = { classic: 12, dh: 8 } as const;

function durationArg(text: string): number {
  try {
    return parseDuration(text);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function integerArg(text: string): number {
  if (!/^\d+$/.test(text)) throw new InvalidArgumentError('a non-negative integer');
  return Number(text);
}

function featuresArg(text: string): RequirementFeature[] {
  try {
    return parseFeatures(text);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

function targetArg(text: string): { host: string; port: number } {
  const match = /^(.+):(\d{1,5})$/.exec(text);
  const port = match === null ? NaN : Number(match[2]);
  if (match === null || port < 1 || port > 65_535) throw new InvalidArgumentError('host:port');
  return { host: (match[1] as string).replace(/^\[(.*)\]$/, '$1'), port };
}

/** Runs a shell command to its end (rotate, kill), bounded in time; throws with its stderr on failure. */
function runCommand(command: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => {
      stderr = (stderr + text).slice(-2_000);
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`\`${command}\` did not finish within ${formatDuration(timeoutMs)}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`\`${command}\` exited with ${code}: ${stderr.trim()}`));
    });
  });
}

/** Starts the hub again: the command may run it in the foreground (it is left running) or start it and return. */
function startCommand(command: string, started: ChildProcess[]): Promise<void> {
  const child = spawn('/bin/sh', ['-c', command], { stdio: 'ignore', detached: true });
  child.unref();
  started.push(child);
  return new Promise((resolve, reject) => {
    const early = (code: number | null): void => reject(new Error(`\`${command}\` exited with ${code} at once`));
    child.once('exit', (code) => {
      if (code !== 0) early(code);
    });
    // Either it keeps running (a foreground hub) or it exited 0 (it started one): the kit then waits for the port.
    setTimeout(() => {
      child.removeAllListeners('exit');
      resolve();
    }, 300);
  });
}

interface HubModeOptions {
  target?: { host: string; port: number };
  records?: string;
  recordsOut?: string;
  devices: number;
  hubStaticPublic?: string;
  hubStaticId?: number;
  tls: boolean;
  ca?: string;
  servername?: string;
  scenarios?: string;
  without?: RequirementFeature[];
  rotateCmd?: string;
  waitRotation?: number;
  killCmd?: string;
  startCmd?: string;
  duration: number;
  seed?: number;
  json?: string;
  maxConnections: number;
  timeout: number;
  frameTimeout?: number;
  rotationTimeout?: number;
  reofferWait?: number;
  startTimeout?: number;
  keepaliveWait?: number;
  keepaliveInterval?: number;
  cutStride: number;
  recoveryPace?: number;
  recoveryRetryWait?: number;
  commandTimeout: number;
  quiet: boolean;
}

export function hubModeCommand(): Command {
  return new Command('hub')
    .description('act as one or many devices against the hub at --target host:port (docs/CONFORMANCE.md)')
    .option('--records-out <file>', 'write device records for the hub under test to import (JSON lines; 0600), and the kit\'s private file <file>.kit.json, then exit')
    .option('--hub-static-public <hex>', 'with --records-out: the hub\'s static public key (`hub static-key status`), so the devices get recovery credentials')
    .option('--hub-static-id <n>', 'with --hub-static-public: its id', integerArg)
    .option('--devices <n>', `devices for the randomized fault runs (besides the ${SCENARIO_DEVICES.classic} classic and ${SCENARIO_DEVICES.dh} dh the scenarios use)`, integerArg, 4)
    .option('--target <host:port>', 'the hub under test (only this address is ever connected to)', targetArg)
    .option('--records <file>', 'the records the hub imported (the kit reads <file>.kit.json beside it, and rewrites it after the run)')
    .option('--tls', 'connect with TLS (with --ca)', false)
    .option('--ca <file>', 'the CA certificate (PEM) the hub\'s certificate must chain to')
    .option('--servername <name>', 'the TLS server name to check (default: the target host)')
    .option('--without <features>', 'optional features the hub does not implement, comma-separated: dh, recovery, tls (docs/PROTOCOL.md §15): never exercised, their requirements n/a; with --records-out: classic devices only / no credentials', featuresArg)
    .option('--scenarios <names>', `only these scenarios, comma-separated: ${SCENARIOS.map((s) => s.name).join(', ')}`)
    .option('--rotate-cmd <command>', 'a shell command that makes the hub start a rotation of {device} now (e.g. "npm run hub -- rotate {device} --db hub.db")')
    .option('--wait-rotation <duration>', `without --rotate-cmd: the hub rotates on its own schedule at least this often (${DURATION_HELP})`, durationArg)
    .option('--kill-cmd <command>', 'a shell command that crashes the hub under test now (SIGKILL: nothing flushed)')
    .option('--start-cmd <command>', 'a shell command that starts the hub under test again on the same database and address')
    .option('--duration <duration>', 'randomized fault runs for this long (default 0: none)', durationArg, 0)
    .option('--seed <n>', 'the fault runs\' seed (printed by every run)', integerArg)
    .option('--json <file>', 'also write the report as JSON')
    .option('--max-connections <n>', 'sockets open at once, at most', integerArg, 32)
    .option('--timeout <duration>', 'the whole run, at most', durationArg, 15 * 60_000)
    .option('--frame-timeout <duration>', 'an answer the hub owes at once (default 3s)', durationArg)
    .option('--rotation-timeout <duration>', 'from a rotation request to its REKEY (default 15s)', durationArg)
    .option('--reoffer-wait <duration>', 'wait for the re-offer of an unacknowledged REKEY (default 35s; 0 skips; under 30s a missing re-offer is n/a)', durationArg)
    .option('--start-timeout <duration>', 'after --start-cmd, the hub accepts connections within this (default 30s)', durationArg)
    .option('--keepalive-wait <duration>', 'how long the quiet device stays quiet but for PINGs, and a connection without a HELLO open (default 65s; under 45s a pass is n/a)', durationArg)
    .option('--keepalive-interval <duration>', 'its PING interval (default 15s, the spec\'s)', durationArg)
    .option('--recovery-pace <duration>', 'at least this long between two connections whose HELLO is meant to fail (negative vectors, NO_KEYs, recoveries): for a hub whose per-source limit (H-RATE-2) is smaller than the kit needs (default 0: unpaced; docs/CONFORMANCE.md)', durationArg)
    .option('--recovery-retry-wait <duration>', 'a recovery the hub closed unanswered after earlier NO_KEYs is tried once more after this quiet wait before it is judged (default 15s)', durationArg)
    .option('--cut-stride <n>', 'cut at every n-th byte (default 1: every byte)', integerArg, 1)
    .option('--command-timeout <duration>', 'a --rotate-cmd or --kill-cmd finishes within this', durationArg, 60_000)
    .option('--quiet', 'no progress lines on stderr', false)
    .action(async (options: HubModeOptions) => {
      process.exitCode = await hubMode(options);
    });
}

async function hubMode(options: HubModeOptions): Promise<number> {
  const log = (line: string): void => {
    if (!options.quiet) process.stderr.write(`conformance: ${line}\n`);
  };
  if (options.recordsOut !== undefined) {
    let hubStatic: HubStaticPublic | undefined;
    if ((options.hubStaticPublic === undefined) !== (options.hubStaticId === undefined)) throw new LockstepError('LOCAL_BAD_ARGUMENT', '--hub-static-public and --hub-static-id go together');
    const without = options.without ?? [];
    if (options.hubStaticPublic !== undefined && without.includes('recovery')) throw new LockstepError('LOCAL_BAD_ARGUMENT', '--hub-static-public gives the devices recovery credentials: not with --without recovery');
    if (options.hubStaticPublic !== undefined) {
      if (!/^[0-9a-fA-F]{64}$/.test(options.hubStaticPublic)) throw new LockstepError('LOCAL_BAD_ARGUMENT', '--hub-static-public is 64 hex digits');
      hubStatic = { id: options.hubStaticId as number, publicKey: new Uint8Array(Buffer.from(options.hubStaticPublic, 'hex')) };
    }
    const counts = { classic: SCENARIO_DEVICES.classic + Math.ceil(options.devices / 2), dh: SCENARIO_DEVICES.dh + Math.floor(options.devices / 2) };
    // A hub without the dh mode gets every device as classic.
    const devices = newKitDevices(without.includes('dh') ? { classic: counts.classic + counts.dh, dh: 0 } : counts, hubStatic);
    writeKitRecords(options.recordsOut, devices);
    process.stdout.write(`wrote ${devices.length} device records to ${options.recordsOut} (import them: npm run hub -- provision --import ${options.recordsOut} --db …) and the kit's private file ${options.recordsOut}.kit.json\n`);
    return 0;
  }
  if (options.target === undefined || options.records === undefined) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'give --target host:port and --records FILE (or --records-out FILE first)');
  if (options.tls && options.ca === undefined) throw new LockstepError('LOCAL_BAD_ARGUMENT', '--tls needs --ca FILE');
  if ((options.killCmd === undefined) !== (options.startCmd === undefined)) throw new LockstepError('LOCAL_BAD_ARGUMENT', '--kill-cmd and --start-cmd go together');
  const records = options.records;
  const devices = loadKitDevices(records);
  const started: ChildProcess[] = [];
  const timeouts: Partial<HubKitTimeouts> = {
    ...(options.frameTimeout === undefined ? {} : { frameMs: options.frameTimeout }),
    ...(options.rotationTimeout === undefined ? {} : { rotationMs: options.rotationTimeout }),
    ...(options.reofferWait === undefined ? {} : { reofferMs: options.reofferWait }),
    ...(options.startTimeout === undefined ? {} : { startMs: options.startTimeout }),
    ...(options.recoveryRetryWait === undefined ? {} : { rateRetryMs: options.recoveryRetryWait }),
  };
  const hubStatic = devices.find((d) => d.credential !== undefined)?.credential;
  const target = {
    ...options.target,
    ...(options.tls ? { tls: { ca: readFileSync(options.ca as string), servername: options.servername ?? options.target.host } } : {}),
  };
  const rotateCmd = options.rotateCmd;
  const killCmd = options.killCmd;
  const startCmd = options.startCmd;
  const result = await runHubConformance({
    target,
    devices,
    ...(hubStatic === undefined ? {} : { hubStatic: { id: hubStatic.hubStaticId, publicKey: hubStatic.hubPublicKey } }),
    hooks: {
      ...(rotateCmd === undefined ? {} : { rotate: (deviceId: string) => runCommand(rotateCmd.replaceAll('{device}', deviceId), options.commandTimeout) }),
      ...(killCmd === undefined ? {} : { kill: () => runCommand(killCmd, options.commandTimeout) }),
      ...(startCmd === undefined ? {} : { start: () => startCommand(startCmd, started) }),
    },
    ...(options.waitRotation === undefined ? {} : { waitRotationMs: options.waitRotation }),
    ...(options.without === undefined ? {} : { without: options.without }),
    ...(options.scenarios === undefined ? {} : { scenarios: options.scenarios.split(',').map((s) => s.trim()).filter((s) => s !== '') }),
    durationMs: options.duration,
    ...(options.recoveryPace === undefined ? {} : { recoveryPaceMs: options.recoveryPace }),
    faultDevices: options.devices,
    maxConnections: options.maxConnections,
    totalTimeoutMs: options.timeout,
    timeouts,
    keepAlive: {
      ...(options.keepaliveWait === undefined ? {} : { waitMs: options.keepaliveWait }),
      ...(options.keepaliveInterval === undefined ? {} : { intervalMs: options.keepaliveInterval }),
    },
    cutStride: Math.max(1, options.cutStride),
    ...(options.seed === undefined ? {} : { seed: options.seed }),
    log,
    onDevicesChanged: (current) => saveKitDevices(records, current),
  });
  const target_ = `${options.target.host}:${options.target.port}${options.tls ? ' (TLS)' : ''}`;
  const json = result.report.toJson({ mode: 'hub', target: target_, startedAt: result.startedAt, durationMs: result.durationMs });
  process.stdout.write(`${result.report.toText()}\n`);
  process.stdout.write(`hub ${target_}: ${json.passed} passed, ${json.failed} failed, ${json.notApplicable} n/a in ${formatDuration(result.durationMs)} (${result.connections} connections)\n`);
  if (options.json !== undefined) writeFileSync(options.json, `${JSON.stringify(json, null, 2)}\n`);
  return result.report.exitCode();
}
