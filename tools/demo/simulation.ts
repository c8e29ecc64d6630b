/**
 * The main job (`npm start`) as a reusable run: a hub child process with its
 * SQLite file, N simulated devices with flash images, keys rotating every
 * few seconds, and faults injected throughout:
 * - connections cut at random byte positions (both directions),
 * - device power cuts in the middle of flash writes (restart from the image),
 * - device power cycles between writes,
 * - hub crashes: SIGKILL at random moments, restart from the database;
 * - issue 14: the hub restored from a backup taken T seconds ago (SIGKILL,
 *   the backup copied over the database, restart) and a device re-flashed
 *   with its provisioning image; both leave devices holding keys the hub
 *   does not (or the reverse) until recovery (docs/PROTOCOL.md §12) brings
 *   them back, which the run must show for every device by its end.
 * Every second the durable key state of every device is checked against the
 * hub's database (tools/demo/sync-check.ts). At the end the faults stop, the
 * run settles, and the verdict covers sync and application data (ledger.ts).
 */
import { closeSync, copyFileSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDevCertificate } from '../hub/cert';
import type { RecoveryPolicy } from '../hub/recovery';
import { createStaticKeyFile, readStaticKeyFile, staticKeyPath } from '../hub/static-keys';
import { HubStore } from '../hub/store';
import type { TokenConfig } from '../hub/http/options';
import { NO_CHAOS, provisionFleet, SimulatedDevice, type ChaosSettings } from './fleet';
import { HubProcess } from './hub-process';
import { Ledger, type LedgerVerdict } from './ledger';
import { settled, syncProblem } from './sync-check';

export interface SimulationOptions {
  readonly devices: number;
  readonly durationMs: number;
  readonly rotateEveryMs: number;
  /** Inject faults (cuts, power cuts, hub kills). */
  readonly chaos: boolean;
  readonly tls: boolean;
  /** Working directory (default: a fresh temporary one, removed afterwards unless `keep`). */
  readonly dir?: string;
  readonly keep?: boolean;
  readonly chaosSettings?: ChaosSettings;
  /** Hub kills happen every [min, max] ms while chaos is on; undefined disables them. */
  readonly hubKillEveryMs?: readonly [number, number] | undefined;
  /** A random device loses power (between writes) every this many ms while chaos is on; 0 = never. */
  readonly powerCycleEveryMs?: number;
  readonly telemetryEveryMs?: number;
  readonly commandEveryMs?: number;
  readonly settleTimeoutMs?: number;
  readonly statusEveryMs?: number;
  readonly onStatus?: (status: SimulationStatus) => void;
  /**
   * Issue 14, while chaos is on: the hub is restored from a backup taken
   * `backupAgeMs` earlier every [min, max] ms (undefined: never), and a
   * random device is re-flashed with its provisioning image every
   * `reflashEveryMs` (0: never).
   */
  readonly restoreEveryMs?: readonly [number, number] | undefined;
  readonly backupAgeMs?: number;
  readonly reflashEveryMs?: number;
  /** The hub's recovery limits for the run (default: sized for the fault rate, see DEMO_RECOVERY_LIMITS). */
  readonly recovery?: Partial<RecoveryPolicy>;
  /** The hub serves its operator API and dashboard on this port with these tokens (tools/hub/http/). */
  readonly http?: { readonly port: number; readonly tokens: readonly TokenConfig[] };
}

export interface SimulationStatus {
  readonly phase: 'running' | 'settling' | 'done';
  readonly elapsedMs: number;
  readonly devices: number;
  readonly online: number;
  readonly rotations: number;
  readonly cuts: number;
  readonly powerCutsDuringWrite: number;
  readonly powerCycles: number;
  readonly hubKills: number;
  /** Issue 14: hub restores from a backup, device re-flashes, and the devices waiting for recovery right now. */
  readonly hubRestores?: number;
  readonly reflashes?: number;
  readonly recovering?: number;
  readonly outOfSync: number;
  readonly up: { sent: number; delivered: number };
  readonly down: { sent: number; delivered: number };
}

export interface SimulationSummary extends SimulationStatus {
  readonly ok: boolean;
  readonly problems: string[];
  readonly syncChecks: number;
  readonly everOutOfSync: number;
  readonly settled: boolean;
  readonly upVerdict: LedgerVerdict;
  readonly downVerdict: LedgerVerdict;
  readonly keyIds: { min: number; max: number };
  readonly dir: string;
  /** Issue 14: rollback episodes (a device left by a restore or a re-flash) that ended back in sync, recoveries the hub accepted, the backup age and the limits used. */
  readonly recoveredEpisodes?: number;
  readonly recoveriesAccepted?: number;
  readonly backupAgeMs?: number;
  readonly recoveryLimits?: { readonly perDeviceLimit: number; readonly windowMs: number; readonly perSource: { readonly burst: number; readonly perMinute: number } };
}

/**
 * The demo's recovery limits: on, and sized for the fault rate (a restore
 * every ~20 s needs every device to recover each time, all from 127.0.0.1):
 * the reference defaults (3 per device per hour, a bucket of 10 per source
 * refilled at 10/min) would stop the fleet after the third restore.
 */
export function demoRecoveryLimits(devices: number): Pick<RecoveryPolicy, 'perDeviceLimit' | 'windowMs' | 'perSource'> {
  return { perDeviceLimit: 30, windowMs: 3_600_000, perSource: { burst: Math.max(10, 4 * devices), perMinute: Math.max(10, 60 * devices), maxSources: 4096 } };
}

export const DEFAULT_CHAOS: ChaosSettings = { cutProbability: 0.6, cutMaxBytes: 6000, powerCutProbability: 0.08 };

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function runSimulation(options: SimulationOptions): Promise<SimulationSummary> {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'lockstep-demo-'));
  const database = join(dir, 'hub.db');
  const ledgerPath = join(dir, 'hub-ledger.log');
  const problems: string[] = [];
  const started = Date.now();
  const chaosSettings = options.chaos ? (options.chaosSettings ?? DEFAULT_CHAOS) : NO_CHAOS;

  // ---- Provisioning: keystore images (tools/provision) + hub records ----
  // Issue 14: the hub's static key file beside the database (never in it), its public key in every device image.
  const staticFile = staticKeyPath(database);
  createStaticKeyFile(staticFile, Date.now());
  const hubStatic = readStaticKeyFile(staticFile);
  const hubStaticKey = hubStatic.keys.find((k) => k.id === hubStatic.current);
  if (hubStaticKey === undefined) throw new Error('the new static key file names no current key');
  const fleet = provisionFleet(options.devices, join(dir, 'devices'), { id: hubStaticKey.id, publicKey: hubStaticKey.publicKey });
  let store = new HubStore(database);
  store.insertDevices(
    fleet.map((d) => d.record),
    Date.now(),
  );
  writeFileSync(ledgerPath, '');
  let tls: { certPath: string; keyPath: string; ca: string } | undefined;
  if (options.tls) {
    const cert = await createDevCertificate();
    tls = { certPath: join(dir, 'hub-cert.pem'), keyPath: join(dir, 'hub-key.pem'), ca: cert.certPem };
    writeFileSync(tls.certPath, cert.certPem);
    writeFileSync(tls.keyPath, cert.keyPem, { mode: 0o600 });
  }

  // ---- The hub, as a child process ----
  const hub = new HubProcess({
    database,
    ...(tls ? { tls: { port: 0, certPath: tls.certPath, keyPath: tls.keyPath } } : {}),
    rotateEveryMs: options.rotateEveryMs,
    rotateJitterMs: Math.floor(options.rotateEveryMs / 2),
    commandEveryMs: options.commandEveryMs ?? 1000,
    ledgerPath,
    timing: { rekeyRetryInitialMs: 500, rekeyRetryMaxMs: 4000 },
    recovery: { ...demoRecoveryLimits(options.devices), ...options.recovery },
    ...(options.http ? { http: options.http } : {}),
  });
  let expectExit = false;
  hub.onExit = (code, signal) => {
    if (!expectExit && signal !== 'SIGKILL') problems.push(`hub exited unexpectedly (code ${code}, signal ${signal}): ${hub.stderr.slice(-500)}`);
  };
  await hub.start();
  const ledger = new Ledger();
  ledger.setEpoch('hub', 0);

  // ---- Devices ----
  const devices = fleet.map(
    (provisioned) =>
      new SimulatedDevice(provisioned, {
        endpoint: () => ({ host: '127.0.0.1', port: hub.port, ...(tls ? { tls: { ca: tls.ca } } : {}) }),
        chaos: chaosSettings,
        ledger,
        telemetryEveryMs: options.telemetryEveryMs ?? 1000,
      }),
  );
  let bricked = 0;
  for (const device of devices) {
    device.host.on('bootFailed', ({ message }) => {
      bricked++;
      problems.push(`device ${device.deviceId} did not boot from its flash image: ${message}`);
    });
    device.start();
  }

  // ---- Hub ledger file: tail it into the ledger ----
  const tail = ledgerTail(ledgerPath);
  let rotations = 0;
  let recoveriesAccepted = 0;
  const readLedger = (): void => {
    for (const line of tail.read()) {
      const [kind, deviceId, tag, epoch] = line.split(' ') as [string, string, string, string | undefined];
      if (kind === 'U') ledger.delivered('up', deviceId, tag, Number(epoch));
      else if (kind === 'S') ledger.sent('down', deviceId, tag, Number(epoch));
      else if (kind === 'X') ledger.cancelled('down', deviceId, tag);
      else if (kind === 'C') rotations++;
      else if (kind === 'R' && tag === 'accepted') recoveriesAccepted++;
    }
  };

  // ---- Sync checks against the database ----
  let syncChecks = 0;
  let outOfSync = 0;
  const everOutOfSync = new Set<string>();
  // Issue 14: devices a restore or a re-flash left out of step, until seen in sync again. A rollback
  // breaks S1/S2 on purpose; recovery restores them. These count as "recovering", not out of sync,
  // and the run's end requires every one of them back (settled below).
  const rolledBack = new Set<string>();
  let recovering = 0;
  let recoveredEpisodes = 0;
  const checkSync = (): void => {
    // Device states first, then the database: the hub can only have moved on
    // in response to what these devices already did (docs/HUB.md).
    const views = devices.filter((d) => d.host.powered).map((d) => ({ device: d, keys: d.host.keys }));
    const rows = new Map(store.loadDevices().map((row) => [row.deviceId, row]));
    syncChecks++;
    outOfSync = 0;
    recovering = 0;
    for (const { device, keys } of views) {
      const row = rows.get(device.deviceId);
      const problem = row === undefined ? 'missing from the hub database' : syncProblem(keys, row);
      if (rolledBack.has(device.deviceId)) {
        if (problem === undefined) {
          rolledBack.delete(device.deviceId);
          recoveredEpisodes++;
        } else {
          recovering++;
        }
        continue;
      }
      if (problem !== undefined) {
        outOfSync++;
        if (!everOutOfSync.has(device.deviceId)) problems.push(`device ${device.deviceId} out of sync: ${problem}`);
        everOutOfSync.add(device.deviceId);
      }
    }
    outOfSync += bricked;
  };

  const status = (phase: SimulationStatus['phase']): SimulationStatus => ({
    phase,
    elapsedMs: Date.now() - started,
    devices: devices.length,
    online: devices.filter((d) => d.host.online).length,
    rotations,
    cuts: sum(devices.map((d) => d.cuts)),
    powerCutsDuringWrite: sum(devices.map((d) => d.flash.cuts)),
    powerCycles: sum(devices.map((d) => d.host.counters.powerCuts)) - sum(devices.map((d) => d.flash.cuts)) - sum(devices.map((d) => d.reflashes)),
    hubKills: hub.kills - hubRestores,
    hubRestores,
    reflashes,
    recovering,
    outOfSync,
    up: ledger.counts('up'),
    down: ledger.counts('down'),
  });

  const timers: NodeJS.Timeout[] = [];
  const every = (ms: number, run: () => void) => timers.push(setInterval(run, ms));
  every(200, readLedger);
  every(1000, checkSync);
  if (options.onStatus) {
    const onStatus = options.onStatus;
    every(options.statusEveryMs ?? 250, () => onStatus(status(phase)));
  }
  let phase: SimulationStatus['phase'] = 'running';
  let hubRestores = 0;
  let reflashes = 0;

  // ---- Chaos: hub kills and power cycles ----
  // One hub lifecycle operation at a time (a kill and a restore never overlap).
  let hubQueue: Promise<void> = Promise.resolve();
  const hubExclusive = (run: () => Promise<void>): Promise<void> => (hubQueue = hubQueue.then(run));
  let chaosOn = options.chaos;
  const killer = (async () => {
    const range = options.hubKillEveryMs;
    if (!options.chaos || range === undefined) return;
    while (chaosOn) {
      const at = Date.now() + range[0] + Math.random() * (range[1] - range[0]);
      while (chaosOn && Date.now() < at) await sleep(Math.min(100, at - Date.now()));
      if (!chaosOn) break;
      await hubExclusive(async () => {
        await hub.kill();
        ledger.setEpoch('hub', hub.epoch);
        await sleep(100 + Math.random() * 400);
        await hub.start();
      });
    }
  })();
  if (options.chaos && (options.powerCycleEveryMs ?? 0) > 0) {
    every(options.powerCycleEveryMs as number, () => {
      if (!chaosOn) return;
      const device = devices[Math.floor(Math.random() * devices.length)];
      device?.powerCycle();
    });
  }

  // ---- Issue 14 chaos: backups, restores from a backup T seconds old, re-flashes ----
  const backupAgeMs = options.backupAgeMs ?? 5_000;
  const backupDir = join(dir, 'backups');
  mkdirSync(backupDir, { recursive: true });
  const backups: { at: number; path: string }[] = [];
  let backupSeq = 0;
  let restoring = false;
  const takeBackup = async (): Promise<void> => {
    if (restoring) return;
    const path = join(backupDir, `hub-${++backupSeq}.db`);
    const at = Date.now();
    // SQLite's online backup (what `sqlite3 hub.db .backup` does) while the hub serves.
    const source = new Database(database, { readonly: true, fileMustExist: true });
    try {
      await source.backup(path);
    } finally {
      source.close();
    }
    backups.push({ at, path });
    // Keep what a restore can still pick: the newest older than the age, and everything after it.
    while (backups.length > 2 && (backups[1] as { at: number }).at <= Date.now() - backupAgeMs) rmSync((backups.shift() as { path: string }).path, { force: true });
  };
  const restorer = (async () => {
    const range = options.restoreEveryMs;
    if (!options.chaos || range === undefined) return;
    const backupTimer = setInterval(() => void takeBackup().catch((error: unknown) => problems.push(`backup failed: ${String(error)}`)), 1000);
    timers.push(backupTimer);
    while (chaosOn) {
      const at = Date.now() + range[0] + Math.random() * (range[1] - range[0]);
      while (chaosOn && Date.now() < at) await sleep(Math.min(100, at - Date.now()));
      if (!chaosOn) break;
      const backup = [...backups].reverse().find((b) => b.at <= Date.now() - backupAgeMs);
      if (backup === undefined) continue;
      // The operator's procedure (docs/HUB.md): stop the hub, put the backup in place, start it. Nothing on any device.
      await hubExclusive(async () => {
        restoring = true;
        await hub.kill();
        ledger.setEpoch('hub', hub.epoch);
        store.close();
        copyFileSync(backup.path, database);
        rmSync(`${database}-wal`, { force: true });
        rmSync(`${database}-shm`, { force: true });
        store = new HubStore(database);
        for (const device of devices) rolledBack.add(device.deviceId);
        hubRestores++;
        restoring = false;
        await hub.start();
      });
    }
  })();
  if (options.chaos && (options.reflashEveryMs ?? 0) > 0) {
    every(options.reflashEveryMs as number, () => {
      if (!chaosOn) return;
      const index = Math.floor(Math.random() * devices.length);
      const device = devices[index];
      const image = (fleet[index] as { provisioningImage?: Uint8Array } | undefined)?.provisioningImage;
      if (device === undefined || image === undefined) return;
      rolledBack.add(device.deviceId);
      device.reflash(image);
      reflashes++;
    });
  }

  await sleep(options.durationMs);

  // ---- Settle: faults off, traffic off, everything must converge ----
  chaosOn = false;
  phase = 'settling';
  await killer;
  await restorer;
  for (const device of devices) {
    device.chaos = NO_CHAOS;
    device.stopTelemetry();
  }
  hub.settle();
  // A device whose recovery attempt was cut waits its own spacing (30 s, doubling) before the next: more time to settle.
  const settleDeadline = Date.now() + (options.settleTimeoutMs ?? (hubRestores + reflashes > 0 ? 100_000 : 30_000));
  let isSettled = false;
  while (Date.now() < settleDeadline) {
    await sleep(250);
    readLedger();
    const rows = new Map(store.loadDevices().map((row) => [row.deviceId, row]));
    const allSettled = devices.every((d) => {
      const row = rows.get(d.deviceId);
      return d.host.online && row !== undefined && settled(d.host.keys, row);
    });
    if (allSettled && ledger.inFlight() === 0) {
      isSettled = true;
      break;
    }
  }
  await sleep(300);
  readLedger();
  checkSync();
  for (const timer of timers) clearInterval(timer);

  // ---- Verdict ----
  const rows = new Map(store.loadDevices().map((row) => [row.deviceId, row]));
  const keyIds = { min: Infinity, max: 0 };
  for (const device of devices) {
    const row = rows.get(device.deviceId);
    if (row === undefined || !settled(device.host.keys, row)) {
      problems.push(`device ${device.deviceId} did not settle on one key with the hub (device ${describeKeyIds(device.host.keys)}, hub ${row ? describeKeyIds({ active: row.active, ...(row.pending ? { future: row.pending } : {}) }) : 'none'})`);
    } else {
      keyIds.min = Math.min(keyIds.min, row.active.id);
      keyIds.max = Math.max(keyIds.max, row.active.id);
    }
  }
  if (!isSettled) problems.push('the run did not settle in time (devices offline, rotations or messages still in flight)');
  const upVerdict = verdictOf(ledger, 'up');
  const downVerdict = verdictOf(ledger, 'down');
  for (const v of [...upVerdict.violations, ...downVerdict.violations]) problems.push(`application data: ${v}`);

  const final = status('done');
  expectExit = true;
  for (const device of devices) device.stop();
  await hub.stop();
  tail.close();
  store.close();
  for (const device of devices) device.close();
  if (options.dir === undefined && options.keep !== true) rmSync(dir, { recursive: true, force: true });

  return {
    ...final,
    ok: problems.length === 0,
    problems,
    syncChecks,
    everOutOfSync: everOutOfSync.size + bricked,
    settled: isSettled,
    upVerdict,
    downVerdict,
    keyIds: { min: keyIds.min === Infinity ? 0 : keyIds.min, max: keyIds.max },
    dir,
    recoveredEpisodes,
    recoveriesAccepted,
    backupAgeMs,
    recoveryLimits: { ...demoRecoveryLimits(options.devices), ...options.recovery },
  };
}

/** A per-direction verdict: the ledger keeps both; split by filtering. */
function verdictOf(ledger: Ledger, direction: 'up' | 'down'): LedgerVerdict {
  return ledger.verdict(direction);
}

function describeKeyIds(keys: { active: { id: number }; future?: { id: number } }): string {
  return keys.future === undefined ? `active ${keys.active.id}` : `active ${keys.active.id} + ${keys.future.id}`;
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** Reads whole lines appended to a file since the last call. */
function ledgerTail(path: string): { read(): string[]; close(): void } {
  const fd = openSync(path, 'r');
  let offset = 0;
  let rest = '';
  const chunk = Buffer.alloc(64 * 1024);
  return {
    read() {
      let text = rest;
      for (;;) {
        const n = readSync(fd, chunk, 0, chunk.length, offset);
        if (n === 0) break;
        offset += n;
        text += chunk.toString('utf8', 0, n);
      }
      const lines = text.split('\n');
      rest = lines.pop() ?? '';
      return lines.filter((line) => line !== '');
    },
    close() {
      closeSync(fd);
    },
  };
}
