/**
 * `npm start -- --postgres [url]`: the main job on a tier of hub instances
 * (tools/hub/postgres/tier.ts: child processes behind a random TCP
 * balancer) sharing one PostgreSQL database — a throwaway cluster started
 * here (initdb into a temporary folder, loopback only, removed afterwards)
 * when no URL is given. Chaos: connection cuts and device power cuts as in
 * the one-hub job, instance SIGKILLs (replaced by a fresh instance), an
 * instance stopped with SIGSTOP while its devices re-home and resumed with
 * SIGCONT, database sessions terminated. Every second each device is
 * checked against the database; at the end the run settles and the
 * telemetry ledger is judged (an instance run is a receiver epoch, docs/HUB.md §13.7).
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { environmentKeyringSource, Keyring } from '../hub/kek';
import { ThrowawayCluster } from '../hub/postgres/cluster';
import { PgHubStore } from '../hub/postgres/store';
import { HubTier } from '../hub/postgres/tier';
import { provisionFleet, SimulatedDevice, type ChaosSettings } from './fleet';
import { Ledger } from './ledger';
import type { SimulationStatus, SimulationSummary } from './simulation';
import { settled, syncProblem } from './sync-check';

export interface PostgresSimulationOptions {
  readonly devices: number;
  readonly instances: number;
  readonly durationMs: number;
  readonly rotateEveryMs: number;
  /** postgres://…; a throwaway cluster when absent. */
  readonly url?: string;
  readonly chaosSettings?: ChaosSettings;
  /** [min, max] between instance kills; undefined: none. */
  readonly instanceKillEveryMs?: readonly [number, number];
  readonly statusEveryMs?: number;
  readonly onStatus?: (status: SimulationStatus) => void;
  readonly log?: (line: string) => void;
}

export async function runPostgresSimulation(options: PostgresSimulationOptions): Promise<SimulationSummary> {
  const log = options.log ?? (() => {});
  const cluster = options.url === undefined ? await ThrowawayCluster.start() : undefined;
  if (cluster !== undefined) log(`throwaway PostgreSQL cluster in ${cluster.dir} (127.0.0.1:${cluster.port}), removed at the end\n`);
  const url = options.url ?? (cluster as ThrowawayCluster).url;
  const kek = `1:${randomBytes(32).toString('hex')}`;
  const keyring = new Keyring(environmentKeyringSource(kek));
  const problems: string[] = [];
  const ledger = new Ledger();
  const started = Date.now();
  let tier: HubTier | undefined;
  const devices: SimulatedDevice[] = [];
  const reader = await PgHubStore.open(url, { keyring, poolSize: 1 });
  try {
    const provisioned = provisionFleet(options.devices);
    await reader.insertDevices(provisioned.map((p) => p.record), Date.now());
    const instanceRuns = { kills: 0, pauses: 0, terminations: 0 };
    tier = await HubTier.start(options.instances, { url, kek, rotationIntervalMs: options.rotateEveryMs, rotationJitterMs: Math.floor(options.rotateEveryMs / 2), statementTimeoutMs: 2000 }, (run, line) => {
      if (!line.startsWith('U ')) return;
      const [, deviceId, text] = line.split(' ') as [string, string, string];
      ledger.delivered('up', deviceId, text.startsWith('u:') ? text.slice(2) : `?${text}`, run);
    });
    const chaos = options.chaosSettings;
    for (const p of provisioned) {
      const device = new SimulatedDevice(p, {
        endpoint: () => ({ host: '127.0.0.1', port: (tier as HubTier).port }),
        ledger,
        telemetryEveryMs: 1000,
        host: { reconnectInitialMs: 50, reconnectMaxMs: 1000 },
        ...(chaos ? { chaos } : {}),
      });
      devices.push(device);
      device.start();
    }
    let syncChecks = 0;
    const everOutOfSync = new Set<string>();
    let outOfSync = 0;
    const check = async (): Promise<void> => {
      const views = devices.filter((d) => d.host.powered).map((d) => ({ d, keys: d.host.keys }));
      const rows = new Map((await reader.loadDevices()).map((row) => [row.deviceId, row]));
      syncChecks++;
      outOfSync = 0;
      for (const { d, keys } of views) {
        const row = rows.get(d.deviceId);
        const problem = row === undefined ? 'missing from the database' : syncProblem(keys, row);
        if (problem === undefined) continue;
        outOfSync++;
        if (!everOutOfSync.has(d.deviceId)) problems.push(`device ${d.deviceId} out of sync: ${problem}`);
        everOutOfSync.add(d.deviceId);
      }
    };
    const rotations = async (): Promise<number> => (await reader.listDevices()).reduce((n, d) => n + d.rotations, 0);
    let rotationCount = 0;
    const status = (phase: SimulationStatus['phase']): SimulationStatus => ({
      phase,
      elapsedMs: Date.now() - started,
      devices: devices.length,
      online: devices.filter((d) => d.host.online).length,
      rotations: rotationCount,
      cuts: devices.reduce((n, d) => n + d.cuts, 0),
      powerCutsDuringWrite: devices.reduce((n, d) => n + d.epoch, 0),
      powerCycles: 0,
      hubKills: instanceRuns.kills,
      outOfSync,
      up: ledger.counts('up'),
      down: ledger.counts('down'),
    });
    const tick = async (phase: SimulationStatus['phase']) => {
      await check().catch((error: Error) => problems.push(`sync check failed: ${error.message}`));
      rotationCount = await rotations().catch(() => rotationCount);
      options.onStatus?.(status(phase));
    };
    const random = (min: number, max: number) => min + Math.random() * (max - min);
    let nextKill = options.instanceKillEveryMs ? Date.now() + random(...options.instanceKillEveryMs) : Infinity;
    const end = started + options.durationMs;
    let step = 0;
    while (Date.now() < end) {
      await new Promise((resolve) => setTimeout(resolve, options.statusEveryMs ?? 1000));
      await tick('running');
      if (Date.now() >= nextKill && options.instanceKillEveryMs) {
        nextKill = Date.now() + random(...options.instanceKillEveryMs);
        const action = step++ % 3;
        const index = Math.floor(Math.random() * tier.instances.length);
        if (action === 0 || action === 2) {
          instanceRuns.kills++;
          await tier.killAndReplace(index);
        } else {
          instanceRuns.pauses++;
          const paused = tier.pause(index);
          await new Promise((resolve) => setTimeout(resolve, 3000));
          if (paused) tier.resume(paused);
          const client = new pg.Client({ connectionString: url });
          await client.connect();
          await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()').catch(() => {});
          await client.end();
          instanceRuns.terminations++;
        }
      }
    }
    // Settle: no faults, no new rotations, no telemetry; every device converges on one key.
    for (const device of devices) {
      device.chaos = { cutProbability: 0, cutMaxBytes: 0, powerCutProbability: 0 };
      device.stopTelemetry();
    }
    tier.signalAll('SIGUSR2');
    const settleBy = Date.now() + 60_000;
    let isSettled = false;
    while (Date.now() < settleBy) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      await tick('settling');
      const rows = new Map((await reader.loadDevices()).map((row) => [row.deviceId, row]));
      isSettled = devices.every((d) => d.host.online && rows.has(d.deviceId) && settled(d.host.keys, rows.get(d.deviceId)!)) && ledger.inFlight() === 0;
      if (isSettled) break;
    }
    if (!isSettled) problems.push('the fleet did not settle within 60 s');
    const upVerdict = ledger.verdict('up');
    const downVerdict = ledger.verdict('down');
    problems.push(...upVerdict.violations);
    const ids = (await reader.listDevices()).map((d) => d.activeKeyId);
    const final = status('done');
    return {
      ...final,
      ok: problems.length === 0 && everOutOfSync.size === 0,
      problems,
      syncChecks,
      everOutOfSync: everOutOfSync.size,
      settled: isSettled,
      upVerdict,
      downVerdict,
      keyIds: { min: Math.min(...ids), max: Math.max(...ids) },
      dir: cluster?.dir ?? url,
    };
  } finally {
    for (const device of devices) device.stop();
    await tier?.close();
    await reader.close();
    cluster?.stop();
  }
}
