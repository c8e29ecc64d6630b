/**
 * Device mode as a library call: listen on the address given, play the hub
 * for the device under test through every scenario that applies, and return
 * the report (one verdict per requirement, evidence for failures) with the
 * kit's own per-check verdicts. Bounded: the whole run has a deadline, every
 * wait its own, and the listener accepts a bounded number of connections.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import type { Report, ReportJson } from '../report';
import type { RequirementFeature } from '../requirements';
import { DeviceModeContext, ScenarioAbort, type DeviceTimers, type PowerControl } from './context';
import { KitListener } from './link';
import { CHECKS, Observer, type CheckName } from './observer';
import { saveRecords, type LoadedRecords } from './records';
import { SCENARIOS } from './scenarios';

/** The reference device's timers (docs/PROTOCOL.md §10) and the kit's tolerances. */
export const DEFAULT_TIMERS: DeviceTimers = {
  keepaliveMs: 15_000,
  idleMs: 45_000,
  handshakeMs: 10_000,
  slackMs: 2_000,
  quietMs: 600,
  connectWaitMs: 40_000,
  answerMs: 5_000,
};

/** The scenarios that exercise one optional feature only (PROTOCOL.md §15). */
const SCENARIO_FEATURES: Readonly<Record<string, RequirementFeature>> = {
  'rotation-dh': 'dh',
  'power-cut-after-ack-dh': 'dh',
  'mode-mismatch': 'dh',
  enrolment: 'recovery',
  recovery: 'recovery',
};

export interface DeviceModeOptions {
  readonly host: string;
  readonly port: number;
  readonly records: LoadedRecords;
  readonly timers?: Partial<DeviceTimers>;
  /** Power control for the power-cut scenarios (absent: they are n/a). */
  readonly power?: PowerControl;
  /** Called once listening (the port is known): start the device here, or with `startAtBeginning`. */
  readonly onListening?: (address: { host: string; port: number }) => void | Promise<void>;
  /** Run `power.start()` once listening (the device is not running yet). */
  readonly startAtBeginning?: boolean;
  /** Scenario names to run (default: all, in order). */
  readonly scenarios?: readonly string[];
  /** Optional features (PROTOCOL.md §15) the device under test declares absent: never exercised, their ids n/a. */
  readonly without?: readonly RequirementFeature[];
  /** The whole run's bound; default 15 minutes. */
  readonly timeoutMs?: number;
  /** Connections accepted in all; default 200. */
  readonly maxConnections?: number;
  /** Progress lines. */
  readonly log?: (line: string) => void;
  /** Rewrite the record file with the device's current key at the end (default true). */
  readonly saveRecords?: boolean;
}

export interface DeviceModeResult {
  readonly report: Report;
  readonly json: ReportJson & { readonly checks: Record<CheckName, 'pass' | 'fail' | 'n/a'> };
  readonly checks: Record<CheckName, 'pass' | 'fail' | 'n/a'>;
  readonly observer: Observer;
  readonly exitCode: number;
}

export async function runDeviceMode(options: DeviceModeOptions): Promise<DeviceModeResult> {
  const startedAt = new Date();
  const started = Date.now();
  const timers: DeviceTimers = { ...DEFAULT_TIMERS, ...options.timers };
  const observer = new Observer(options.log);
  const wanted = options.scenarios === undefined ? SCENARIOS : SCENARIOS.filter((s) => options.scenarios?.includes(s.name));
  const unknown = (options.scenarios ?? []).filter((name) => !SCENARIOS.some((s) => s.name === name));
  if (unknown.length > 0) throw new Error(`unknown scenario ${unknown.join(', ')} (known: ${SCENARIOS.map((s) => s.name).join(', ')})`);
  const listener = await KitListener.listen(options.host, options.port, { started, maxConnections: options.maxConnections ?? 200 });
  const deadline = started + (options.timeoutMs ?? 15 * 60_000);
  const ctx = new DeviceModeContext({ listener, book: options.records.book, observer, timers, deadline, ...(options.power === undefined ? {} : { power: options.power }) });
  try {
    observer.note(`device mode: listening on ${listener.address.host}:${listener.address.port} for device ${Buffer.from(options.records.book.deviceId).toString('hex')} (${options.records.book.mode})`);
    await options.onListening?.(listener.address);
    if (options.startAtBeginning === true) await options.power?.start();
    for (const scenario of SCENARIOS) {
      if (!wanted.includes(scenario)) {
        for (const check of scenario.checks) observer.notApplicable(check, `scenario ${scenario.name} not selected`);
        continue;
      }
      const feature = SCENARIO_FEATURES[scenario.name];
      const whyNot = feature !== undefined && (options.without ?? []).includes(feature) ? `the device declares no ${feature} feature (--without)` : scenario.whyNot(ctx);
      if (whyNot !== undefined) {
        for (const check of scenario.checks) observer.notApplicable(check, `${scenario.name}: ${whyNot}`);
        observer.note(`[${scenario.name}] n/a: ${whyNot}`);
        continue;
      }
      if (ctx.remaining() <= 0) {
        for (const check of scenario.checks) observer.notApplicable(check, `${scenario.name}: the run's time (--timeout) ran out`);
        continue;
      }
      const at = Date.now();
      observer.note(`[${scenario.name}] ${scenario.description}`);
      try {
        await scenario.run(ctx);
      } catch (error) {
        observer.note(`[${scenario.name}] ended early: ${error instanceof ScenarioAbort ? error.message : error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
        if (!(error instanceof ScenarioAbort)) throw error;
        // The device may be anywhere: start the next scenario on a fresh connection.
        ctx.closeCurrent();
      }
      observer.note(`[${scenario.name}] ${Date.now() - at} ms`);
    }
  } finally {
    ctx.closeCurrent();
    await listener.close();
    if (options.saveRecords !== false) saveRecords(options.records);
  }
  for (const check of Object.keys(CHECKS) as CheckName[]) observer.notApplicable(check, 'not exercised by the scenarios run');
  const report = observer.toReport();
  report.excludeFeatures(options.without ?? []);
  const checks = observer.verdicts();
  const json = { ...report.toJson({ mode: 'device', target: `${options.host}:${options.port}`, startedAt, durationMs: Date.now() - started }), checks };
  return { report, json, checks, observer, exitCode: report.exitCode() };
}

/**
 * Power control from shell commands (`--device-kill-cmd`, `--device-start-cmd`):
 * kill runs to completion (bounded); start is spawned and left running (it may
 * be the device itself), its output appended to `logFile` when given.
 */
export function shellPower(killCommand: string, startCommand: string, logFile?: string): PowerControl & { readonly started: ChildProcess[] } {
  const started: ChildProcess[] = [];
  return {
    started,
    kill: () =>
      new Promise((resolve, reject) => {
        const child = spawn('sh', ['-c', killCommand], { stdio: 'ignore' });
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`--device-kill-cmd did not finish within 20 s`));
        }, 20_000);
        child.on('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        child.on('error', (error) => {
          clearTimeout(timer);
          reject(error);
        });
      }),
    start: async () => {
      const fd = logFile === undefined ? undefined : openSync(logFile, 'a');
      const child = spawn('sh', ['-c', startCommand], { stdio: fd === undefined ? 'ignore' : ['ignore', fd, fd], detached: true });
      if (fd !== undefined) closeSync(fd);
      child.on('error', () => {});
      child.unref();
      if (started.length < 64) started.push(child);
    },
  };
}
