/**
 * `npm run bench -- fleet`: N devices connected at once to a tier of hub
 * instances on PostgreSQL on this machine (issue 16: 100,000, goal ≤ 10 KiB
 * of hub RSS per connected device), against a baseline measured the same
 * way in the same run: one SQLite hub process with 10,000 devices.
 *
 * One process cannot hold 100,000 connections here (20,000 open files per
 * process, ≈ 28,000 ports per source address), so the plan
 * (tools/bench/fleet-plan.ts) takes k hub instances (processes of
 * tools/hub/postgres/instance-main.ts on one throwaway PostgreSQL cluster),
 * s swarm processes (tools/bench/fleet-swarm.ts: the real device loop per
 * device) and a 127.x source address per (swarm, instance) pair. There is no
 * balancer: one would hold two descriptors per connection itself, so every
 * device dials its instance straight, by the plan's deterministic
 * assignment (what DNS round robin or a client-side instance list does).
 *
 * Per phase (the baseline, then the fleet):
 * 1. provision (the store's batch insert; timed, not part of the figures);
 * 2. start the instances, let them load the table, collect garbage, read
 *    each one's RSS (/proc) and heap: "before";
 * 3. start the swarms; together they keep at most LOCKSTEP_BENCH_FLEET_RAMP
 *    handshakes in flight (each its share): more only lengthens every
 *    handshake on 2 busy cores until the 10 s handshake timeouts make
 *    devices retry (a congestion collapse: 336 in flight gave 35/s here); wait until the instances' own counters
 *    say every device is authenticated (the connect time);
 * 4. collect garbage, read RSS and heap again: per connected device
 *    Σ(after − before) / N, and Σ after / N; PostgreSQL's memory as the sum
 *    of its processes' PSS (shared buffers counted once);
 * 5. hold for LOCKSTEP_BENCH_FLEET_HOLD_S with the protocol's keep-alives
 *    running (every device PINGs after 15 s without sending) and
 *    LOCKSTEP_BENCH_FLEET_ROTATIONS durable rotation requests (the CLI's
 *    `rotate` path: a row the serving instance's poll picks up): CPU % of
 *    the instances, of PostgreSQL and of the swarms over the hold, the
 *    fewest devices online, disconnections, keys promoted.
 * Every child (instances, swarms) has a stdin lifeline and is stopped on
 * exit, error, SIGINT or SIGTERM; the cluster and the temporary folder are
 * removed.
 *
 * Environment: LOCKSTEP_BENCH_FLEET_DEVICES (100000), _INSTANCES and _SWARMS
 * (from the plan), _BASELINE (10000; 0 skips it), _HOLD_S (60),
 * _ROTATIONS (1000), _RAMP (96 in all), _TIMEOUT_S (1800), _KEEPALIVE_S
 * (15, the protocol's; longer is outside protocol 1.1 and stretches both
 * sides' idle timeouts to 3× it: only for simulating more devices than the
 * 2 cores can keep alive at 15 s, said so in the output), _PROFILE (a
 * folder: every instance and swarm writes a V8 CPU profile there on exit).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { bundleProgram, childEnv } from '../demo/hub-process';
import { environmentKeyringSource, Keyring } from '../hub/kek';
import { ThrowawayCluster } from '../hub/postgres/cluster';
import { InstanceProcess } from '../hub/postgres/tier';
import { newDeviceRecord, toHubRecordJson, type DeviceRecord } from '../hub/records';
import { openStorage } from '../hub/storage';
import { assign, planFleet, type FleetPlan } from './fleet-plan';
import type { FleetSwarmConfig, FleetSwarmDevice } from './fleet-swarm';
import { readLimits } from './limits';
import { IDLE_TIMEOUT_MS, KEEPALIVE_INTERVAL_MAX_MS, KEEPALIVE_INTERVAL_MS } from '../../modules/protocol/constants';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const KiB = 1024;
const MiB = 2 ** 20;
const TICKS = 100; // USER_HZ
/**
 * The ramp counts as stalled when fewer than this share of the devices authenticated in the last
 * window (0.5 %: 500 in 2 minutes for 100,000). 1 % a minute stopped a run at the protocol's
 * keep-alive at 97,469 that was still gaining 997 a minute.
 */
const STALL_SHARE = 0.005;
const STALL_WINDOW_MS = 120_000;

interface SwarmState {
  online: number;
  established: number;
  disconnects: number;
  promoted: number;
  started: number;
  cpuUs: number;
  rssBytes: number;
  connected: boolean;
  error: string | undefined;
  exited: boolean;
}

interface PhaseFigures {
  readonly label: string;
  readonly devices: number;
  readonly instances: number;
  readonly swarms: number;
  readonly sources: number;
  readonly provisionS: number;
  readonly loadS: number;
  readonly connected: number;
  readonly connectS: number;
  readonly rssBefore: number[];
  readonly rssAfter: number[];
  readonly heapBefore: number[];
  readonly heapAfter: number[];
  readonly rssEnd: number[];
  /** The control instance's RSS and heap with the others' connections up (the tier only). */
  readonly control: { readonly rss: number; readonly heap: number } | undefined;
  readonly swarmRss: number;
  readonly postgresPss: number | undefined;
  readonly hold: HoldFigures | undefined;
  readonly stopped: string | undefined;
  readonly leaseRefused: number;
  readonly leaseFailures: number;
}

interface HoldFigures {
  readonly seconds: number;
  readonly hubCpuPct: number;
  readonly postgresCpuPct: number | undefined;
  readonly swarmCpuPct: number;
  readonly minOnline: number;
  readonly disconnects: number;
  readonly requested: number;
  readonly promoted: number;
}

/** Things to undo, last first; run once on success, error, SIGINT or SIGTERM. */
class Cleanup {
  readonly #steps: (() => void | Promise<void>)[] = [];
  #ran: Promise<void> | undefined;
  add(step: () => void | Promise<void>): void {
    this.#steps.push(step);
  }
  run(): Promise<void> {
    this.#ran ??= (async () => {
      for (const step of this.#steps.reverse()) {
        try {
          await step();
        } catch (error) {
          console.error(`bench fleet: cleanup step failed: ${error instanceof Error ? error.message : String(error)}`);
        }
      }
    })();
    return this.#ran;
  }
}

export async function run(): Promise<void> {
  const env = process.env;
  const devices = Number(env.LOCKSTEP_BENCH_FLEET_DEVICES ?? 100_000);
  const baselineDevices = Number(env.LOCKSTEP_BENCH_FLEET_BASELINE ?? 10_000);
  let holdMs = Number(env.LOCKSTEP_BENCH_FLEET_HOLD_S ?? 60) * 1000;
  const rotations = Number(env.LOCKSTEP_BENCH_FLEET_ROTATIONS ?? 1000);
  const ramp = Number(env.LOCKSTEP_BENCH_FLEET_RAMP ?? 96);
  const timeoutMs = Number(env.LOCKSTEP_BENCH_FLEET_TIMEOUT_S ?? 1800) * 1000;
  const keepaliveS = Number(env.LOCKSTEP_BENCH_FLEET_KEEPALIVE_S ?? KEEPALIVE_INTERVAL_MS / 1000);
  if (!Number.isSafeInteger(keepaliveS) || keepaliveS < 1 || keepaliveS > 3600) {
    console.error(`bench fleet: LOCKSTEP_BENCH_FLEET_KEEPALIVE_S must be a whole number of seconds from 1 to 3600 (got ${JSON.stringify(env.LOCKSTEP_BENCH_FLEET_KEEPALIVE_S)})`);
    process.exitCode = 2;
    return;
  }
  const optional = (name: string) => (env[name] === undefined || env[name] === '' ? undefined : Number(env[name]));
  const limits = readLimits();
  // Up front, before anything starts: a plan that cannot work stops here with what to change.
  const plan = planFleet({ devices, instances: optional('LOCKSTEP_BENCH_FLEET_INSTANCES'), swarms: optional('LOCKSTEP_BENCH_FLEET_SWARMS') }, limits);
  const baselinePlan = baselineDevices > 0 ? planFleet({ devices: baselineDevices, instances: 1, swarms: 1 }, limits, 'LOCKSTEP_BENCH_FLEET_BASELINE') : undefined;
  for (const p of [plan, baselinePlan]) {
    if (typeof p === 'string') {
      console.error(`bench fleet: ${p}`);
      process.exitCode = 2;
      return;
    }
  }
  const fleet = plan as FleetPlan;
  console.log(
    `\n== Fleet: ${devices.toLocaleString('en')} devices connected at once to ${fleet.instances} hub instances on PostgreSQL, from ${fleet.swarms} swarm processes ` +
      `and ${fleet.instances * fleet.swarms * fleet.addressesPerPair} loopback source addresses (no balancer: each device dials its instance); ` +
      `baseline: ${baselineDevices.toLocaleString('en')} on one SQLite hub process; goal <= 10 KiB hub RSS per connected device ==`,
  );
  console.log(
    `limits here: ${limits.openFiles.toLocaleString('en')} open files per process, ${limits.ephemeralPorts.toLocaleString('en')} ports per source address; ` +
      `plan: <= ${fleet.perInstance.toLocaleString('en')} connections per instance and ${fleet.perSwarm.toLocaleString('en')} per swarm (capacity ${fleet.processCapacity.toLocaleString('en')}), ` +
      `<= ${fleet.perSource.toLocaleString('en')} per source address (capacity ${fleet.sourceCapacity.toLocaleString('en')})`,
  );

  const keepalive = keepaliveTiming(keepaliveS);
  // A hold shorter than two keep-alive intervals would carry too few of them to price one.
  if (holdMs > 0 && holdMs < 2 * keepaliveS * 1000) holdMs = 2 * keepaliveS * 1000;
  if (keepalive.outsideSpec) {
    console.log(
      `keep-alive: every ${keepaliveS} s per device — OUTSIDE protocol 1.1 (D-TIMER-1: at most ${KEEPALIVE_INTERVAL_MAX_MS / 1000} s), both sides' idle timeout ${keepalive.idleTimeoutMs / 1000} s (3×; the hubs' H-TIMER-1 holds). ` +
        'Only the number of keep-alives changes: what a connection holds in memory does not; the hold below prints the CPU per keep-alive and what the protocol\'s rate would take.',
    );
  }
  const cleanup = new Cleanup();
  const onSignal = (signal: NodeJS.Signals): void => {
    console.error(`bench fleet: ${signal}: stopping the swarms and instances, removing the cluster`);
    void cleanup.run().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-bench-fleet-'));
  cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
  const kek = `1:${randomBytes(32).toString('hex')}`;
  const keyring = new Keyring(environmentKeyringSource(kek));
  const results: PhaseFigures[] = [];
  try {
    if (baselinePlan !== undefined) {
      const path = join(dir, 'baseline.db');
      results.push(await phase('SQLite, 1 process', path, baselinePlan as FleetPlan, { dir, kek, keyring, cleanup, holdMs, rotations, ramp, timeoutMs, keepalive, cluster: undefined }));
    }
    const cluster = await ThrowawayCluster.start({ settings: ['shared_buffers = 128MB', 'max_connections = 300'] });
    cleanup.add(() => cluster.stop());
    results.push(await phase(`PostgreSQL, ${fleet.instances} instances`, cluster.url, fleet, { dir, kek, keyring, cleanup, holdMs, rotations, ramp, timeoutMs, keepalive, cluster }));
    report(results, keepalive);
  } catch (error) {
    console.error(`bench fleet: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  } finally {
    await cleanup.run();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

interface PhaseContext {
  readonly dir: string;
  readonly kek: string;
  readonly keyring: Keyring;
  readonly cleanup: Cleanup;
  readonly holdMs: number;
  readonly rotations: number;
  readonly ramp: number;
  readonly timeoutMs: number;
  readonly keepalive: KeepaliveTiming;
  readonly cluster: ThrowawayCluster | undefined;
}

interface KeepaliveTiming {
  readonly seconds: number;
  /** Longer than protocol 1.1 lets a device wait (D-TIMER-1). */
  readonly outsideSpec: boolean;
  /** Both sides' idle timeout: 3 × the keep-alive when stretched (H-TIMER-1's ratio), else the default. */
  readonly idleTimeoutMs: number;
}

function keepaliveTiming(seconds: number): KeepaliveTiming {
  const outsideSpec = seconds * 1000 > KEEPALIVE_INTERVAL_MAX_MS;
  return { seconds, outsideSpec, idleTimeoutMs: outsideSpec ? 3 * seconds * 1000 : IDLE_TIMEOUT_MS };
}

async function phase(label: string, url: string, plan: FleetPlan, context: PhaseContext): Promise<PhaseFigures> {
  const { dir, kek, keyring, cleanup, cluster } = context;
  const name = label.split(',')[0]!.toLowerCase();
  console.log(`-- ${label}: ${plan.devices.toLocaleString('en')} devices`);

  // ---- 1. Provision (the store's batch insert) ----
  const records: DeviceRecord[] = Array.from({ length: plan.devices }, () => newDeviceRecord());
  const t0 = performance.now();
  const storage = await openStorage(url, { keyring, statementTimeoutMs: 120_000 }); // (statements on a saturated machine)
  let storageOpen = true;
  const closeStorage = async () => {
    if (storageOpen) await storage.close();
    storageOpen = false;
  };
  cleanup.add(closeStorage);
  for (let from = 0; from < records.length; from += 20_000) await storage.insertDevices(records.slice(from, from + 20_000), Date.now());
  const provisionS = (performance.now() - t0) / 1000;
  console.log(`   provisioned in ${provisionS.toFixed(1)} s`);

  // ---- 2. Instances: load, then memory before any connection ----
  const t1 = performance.now();
  const instances: InstanceProcess[] = [];
  let control: InstanceProcess | undefined;
  const withControl = () => (control === undefined ? instances : [...instances, control]);
  const stopInstances = async () => {
    await Promise.all(withControl().map((i) => i.terminate()));
  };
  cleanup.add(stopInstances);
  const startInstance = (run: number) =>
      new InstanceProcess(
        run,
        {
          url,
          kek,
          poolSize: 4,
          // Each instance loads the whole table in one statement at start (100,000 rows, 7 instances at once on 2 cores):
          // instance-main's 3 s statement timeout cancels that; 30 s (the store's default is 10 s).
          statementTimeoutMs: 30_000,
          // The hub's defaults (instance-main's own are shorter, for the chaos test's pace).
          tickMs: 200,
          controlPollMs: 1000,
          lastSeenFlushMs: 5000,
          maxConnections: plan.processCapacity + 1000,
          maxLeasesInFlight: 256,
          ...(context.keepalive.outsideSpec ? { idleTimeoutMs: context.keepalive.idleTimeoutMs } : {}),
          execArgv: ['--expose-gc', '--max-old-space-size=4096', ...profileFlags()],
          lifeline: true,
        },
        () => {},
      );
  for (let i = 0; i < plan.instances; i++) instances.push(startInstance(i + 1));
  // On the tier, one more instance with the same table that no device dials: its RSS beside the others' is the part a connection adds.
  // (An instance's own RSS before and after does not tell: the garbage of loading the table leaves pages that connections then reuse.)
  if (cluster !== undefined) control = startInstance(plan.instances + 1);
  await Promise.all(withControl().map((i) => i.ready()));
  const loadS = (performance.now() - t1) / 1000;
  await sleep(2000);
  const heapBefore = await collectHeaps(instances);
  const rssBefore = instances.map((i) => rssOf(i.child.pid));
  if (control !== undefined) await collectHeaps([control]);
  if (process.env.LOCKSTEP_BENCH_FLEET_DETAIL === '1') {
    for (const i of instances) console.log(`   #${i.run} before: ${JSON.stringify({ rss: mib(rssOf(i.child.pid)), heapTotal: mib(i.stats.heapTotalBytes ?? 0), heapUsed: mib(i.stats.heapUsedBytes ?? 0), external: mib(i.stats.externalBytes ?? 0), arrayBuffers: mib(i.stats.arrayBuffersBytes ?? 0), anon: mib(anonOf(i.child.pid)) })}`);
  }
  console.log(`   ${instances.length} instance(s) ready in ${loadS.toFixed(1)} s; RSS ${mib(sum(rssBefore))} MiB, heap ${mib(sum(heapBefore))} MiB before connecting`);

  // ---- 3. Swarms: ramp up, wait until every device is authenticated ----
  const files = Array.from({ length: plan.swarms }, () => [] as string[]);
  for (let i = 0; i < records.length; i++) {
    const a = assign(plan, i);
    const line: FleetSwarmDevice = { ...toHubRecordJson(records[i] as DeviceRecord), port: instances[a.instance]!.port, source: a.source };
    files[a.swarm]!.push(JSON.stringify(line));
  }
  const ids = records.map((r) => r.deviceId);
  records.length = 0;
  const swarms: { child: ChildProcess; state: SwarmState }[] = [];
  const stopSwarms = async () => {
    await Promise.all(
      swarms.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (s.state.exited) return resolve();
            const force = setTimeout(() => s.child.kill('SIGKILL'), 10_000);
            s.child.once('exit', () => {
              clearTimeout(force);
              resolve();
            });
            s.child.kill('SIGTERM');
          }),
      ),
    );
  };
  cleanup.add(stopSwarms);
  const connectStart = performance.now();
  const connectCpu0 = { hub: instances.reduce((n, i) => n + cpuOf(i.child.pid), 0), pg: cluster === undefined ? 0 : postgresCpu(cluster) };
  for (let s = 0; s < plan.swarms; s++) {
    const devicesPath = join(dir, `${name}-swarm-${s}.jsonl`);
    writeFileSync(devicesPath, files[s]!.join('\n'));
    files[s] = [];
    const config: FleetSwarmConfig = { devicesPath, host: '127.0.0.1', maxConnecting: Math.max(1, Math.ceil(context.ramp / plan.swarms)), keepaliveMs: context.keepalive.seconds * 1000, idleTimeoutMs: context.keepalive.idleTimeoutMs };
    const child = spawn(process.execPath, ['--max-old-space-size=4096', ...profileFlags(), bundleProgram('tools/bench/fleet-swarm.ts'), JSON.stringify(config)], {
      stdio: ['pipe', 'pipe', 'inherit'],
      env: childEnv(),
    });
    const state: SwarmState = { online: 0, established: 0, disconnects: 0, promoted: 0, started: 0, cpuUs: 0, rssBytes: 0, connected: false, error: undefined, exited: false };
    child.once('exit', (code, signal) => {
      state.exited = true;
      state.error ??= code === 0 ? undefined : `exited (${code ?? signal})`;
    });
    createInterface({ input: child.stdout! }).on('line', (text) => {
      const message = JSON.parse(text) as { type: string; message?: string } & Partial<SwarmState>;
      if (message.type === 'stats') Object.assign(state, message, { type: undefined });
      else if (message.type === 'connected') state.connected = true;
      else if (message.type === 'error') state.error = message.message;
    });
    swarms.push({ child, state });
  }
  const authenticated = () => instances.reduce((n, i) => n + (i.stats.devicesOnline ?? 0), 0);
  let stopped: string | undefined;
  let lastProgress = performance.now();
  let best = 0;
  let bestAt = performance.now();
  let stalled = false;
  const history: { at: number; online: number }[] = [];
  for (;;) {
    await sleep(250);
    const online = authenticated();
    if (online > best) {
      best = online;
      bestAt = performance.now();
    }
    if (online >= plan.devices) break;
    history.push({ at: performance.now(), online });
    while (history.length > 0 && (history[0] as { at: number }).at < performance.now() - STALL_WINDOW_MS) history.shift();
    const gained = online - (history[0]?.online ?? 0);
    if (performance.now() - connectStart > 2 * STALL_WINDOW_MS && gained < Math.max(10, plan.devices * STALL_SHARE)) {
      // The tier has stopped taking devices (on 2 shared cores: the keep-alives of those connected use what CPU is left).
      stalled = true;
      stopped = `stalled: ${gained} more authenticated in the last ${STALL_WINDOW_MS / 1000} s at ${online.toLocaleString('en')}`;
      break;
    }
    const failed = swarms.find((s) => s.state.error !== undefined) ?? undefined;
    const gone = instances.find((i) => i.exited);
    if (failed !== undefined) stopped = `a swarm stopped: ${failed.state.error}`;
    else if (gone !== undefined) stopped = `hub instance ${gone.run} exited`;
    else if (performance.now() - connectStart > context.timeoutMs) stopped = `not all connected within ${context.timeoutMs / 1000} s`;
    else if (performance.now() - bestAt > 120_000) stopped = `no progress for 120 s at ${best.toLocaleString('en')}`;
    if (stopped !== undefined) break;
    if (performance.now() - lastProgress > 10_000) {
      lastProgress = performance.now();
      const started = swarms.reduce((n, s) => n + s.state.started, 0);
      console.log(`   ${((performance.now() - connectStart) / 1000).toFixed(0)} s: ${online.toLocaleString('en')} authenticated (hubs' count), ${started.toLocaleString('en')} started`);
    }
  }
  const connected = authenticated();
  const connectCpu = {
    hub: instances.reduce((n, i) => n + cpuOf(i.child.pid), 0) - connectCpu0.hub,
    pg: cluster === undefined ? 0 : postgresCpu(cluster) - connectCpu0.pg,
    swarm: swarms.reduce((n, s) => n + s.state.cpuUs / 1e6, 0),
  };
  const connectS = (Math.min(performance.now(), bestAt) - connectStart) / 1000;
  const leaseRefused = instances.reduce((n, i) => n + (i.stats.leaseRefused ?? 0), 0);
  const leaseFailures = instances.reduce((n, i) => n + (i.stats.leaseFailures ?? 0), 0);
  console.log(
    `   ${connected.toLocaleString('en')} / ${plan.devices.toLocaleString('en')} authenticated in ${connectS.toFixed(1)} s` +
      (stopped === undefined ? '' : ` — stopped: ${stopped}`) +
      (cluster === undefined ? '' : ` (leases refused ${leaseRefused}, failed ${leaseFailures}: those devices retried)`) +
      `; CPU per connection: hubs ${((connectCpu.hub * 1000) / Math.max(connected, 1)).toFixed(2)} ms, PostgreSQL ${((connectCpu.pg * 1000) / Math.max(connected, 1)).toFixed(2)} ms, swarms ${((connectCpu.swarm * 1000) / Math.max(connected, 1)).toFixed(2)} ms`,
  );

  // ---- 4. Memory with every device connected ----
  await sleep(3000);
  const heapAfter = await collectHeaps(instances);
  const rssAfter = instances.map((i) => rssOf(i.child.pid));
  const controlAfter = control === undefined ? undefined : { heap: (await collectHeaps([control]))[0] as number, rss: rssOf(control.child.pid) };
  if (process.env.LOCKSTEP_BENCH_FLEET_DETAIL === '1') {
    for (const i of instances) console.log(`   #${i.run} after: ${JSON.stringify({ rss: mib(rssOf(i.child.pid)), heapTotal: mib(i.stats.heapTotalBytes ?? 0), heapUsed: mib(i.stats.heapUsedBytes ?? 0), external: mib(i.stats.externalBytes ?? 0), arrayBuffers: mib(i.stats.arrayBuffersBytes ?? 0), anon: mib(anonOf(i.child.pid)) })}`);
  }
  const postgresPss = cluster === undefined ? undefined : postgresProcesses(cluster).reduce((n, pid) => n + pssOf(pid), 0);
  const swarmRss = swarms.reduce((n, s) => n + rssOf(s.child.pid), 0);
  console.log(
    `   with ${connected.toLocaleString('en')} connected: hub RSS ${mib(sum(rssBefore))} → ${mib(sum(rssAfter))} MiB, heap ${mib(sum(heapBefore))} → ${mib(sum(heapAfter))} MiB ` +
      `(Δ ${((sum(rssAfter) - sum(rssBefore)) / Math.max(connected, 1) / KiB).toFixed(2)} KiB RSS, ${((sum(heapAfter) - sum(heapBefore)) / Math.max(connected, 1) / KiB).toFixed(2)} KiB heap per device)` +
      (postgresPss === undefined ? '' : `; PostgreSQL PSS ${mib(postgresPss)} MiB`) + `; swarms RSS ${mib(swarmRss)} MiB`,
  );
  if (controlAfter !== undefined) {
    const vsControl = beyondControl(rssAfter, heapAfter, controlAfter, connected);
    console.log(
      `   beside the control instance (same table, no connection: RSS ${mib(controlAfter.rss)} MiB, heap ${mib(controlAfter.heap)} MiB): ` +
        `${vsControl.rssKiB.toFixed(2)} KiB RSS, ${vsControl.heapKiB.toFixed(2)} KiB heap per connected device`,
    );
  }

  // ---- 5. Hold: keep-alives, a few rotations, CPU of the tier at idle ----
  let hold: HoldFigures | undefined;
  // Held also when the ramp stalled: the CPU of the tier with that many connected says what stopped it.
  if ((stopped === undefined || stalled) && context.holdMs > 0) {
    const cpu0 = { hub: instances.reduce((n, i) => n + cpuOf(i.child.pid), 0), pg: cluster === undefined ? 0 : postgresCpu(cluster), swarm: swarms.reduce((n, s) => n + s.state.cpuUs / 1e6, 0) };
    const promoted0 = swarms.reduce((n, s) => n + s.state.promoted, 0);
    const disconnects0 = swarms.reduce((n, s) => n + s.state.disconnects, 0);
    const h0 = performance.now();
    // Durable rotation requests, as `npm run hub -- rotate` makes them: the serving instance's poll carries them out.
    const step = Math.max(1, Math.floor(ids.length / Math.max(context.rotations, 1)));
    let requested = 0;
    for (let i = 0; i < ids.length && requested < context.rotations; i += step) {
      if (await storage.requestRotation(ids[i] as string, Date.now())) requested++;
    }
    let minOnline = authenticated();
    while (performance.now() - h0 < context.holdMs) {
      await sleep(1000);
      minOnline = Math.min(minOnline, authenticated());
    }
    await sleep(1200); // one more STATS from every swarm
    const seconds = (performance.now() - h0) / 1000;
    hold = {
      seconds,
      hubCpuPct: ((instances.reduce((n, i) => n + cpuOf(i.child.pid), 0) - cpu0.hub) / seconds) * 100,
      postgresCpuPct: cluster === undefined ? undefined : ((postgresCpu(cluster) - cpu0.pg) / seconds) * 100,
      swarmCpuPct: ((swarms.reduce((n, s) => n + s.state.cpuUs / 1e6, 0) - cpu0.swarm) / seconds) * 100,
      minOnline,
      disconnects: swarms.reduce((n, s) => n + s.state.disconnects, 0) - disconnects0,
      requested,
      promoted: swarms.reduce((n, s) => n + s.state.promoted, 0) - promoted0,
    };
  }
  const rssEnd = instances.map((i) => rssOf(i.child.pid));
  await stopSwarms();
  await stopInstances();
  await closeStorage();
  return {
    label,
    devices: plan.devices,
    instances: plan.instances,
    swarms: plan.swarms,
    sources: plan.instances * plan.swarms * plan.addressesPerPair,
    provisionS,
    loadS,
    connected,
    connectS,
    rssBefore,
    rssAfter,
    heapBefore,
    heapAfter,
    rssEnd,
    control: controlAfter,
    swarmRss,
    postgresPss,
    hold,
    stopped,
    leaseRefused,
    leaseFailures,
  };
}

function report(results: readonly PhaseFigures[], keepalive: KeepaliveTiming): void {
  console.log('');
  console.log(
    'tier                        devices  connected  connect s  per s   hub RSS before  after MiB   Δ KiB/device  total KiB/device  heap Δ KiB/device  PostgreSQL PSS MiB  swarm RSS MiB',
  );
  const perDevice = (r: PhaseFigures) => ({
    delta: (sum(r.rssAfter) - sum(r.rssBefore)) / Math.max(r.connected, 1) / KiB,
    total: sum(r.rssAfter) / Math.max(r.connected, 1) / KiB,
    heap: (sum(r.heapAfter) - sum(r.heapBefore)) / Math.max(r.connected, 1) / KiB,
  });
  for (const r of results) {
    const p = perDevice(r);
    console.log(
      `${r.label.padEnd(26)} ${String(r.devices).padStart(8)} ${String(r.connected).padStart(10)} ${r.connectS.toFixed(1).padStart(10)} ${(r.connected / Math.max(r.connectS, 0.001)).toFixed(0).padStart(6)}` +
        `   ${mib(sum(r.rssBefore)).padStart(14)} ${mib(sum(r.rssAfter)).padStart(10)}   ${p.delta.toFixed(2).padStart(12)} ${p.total.toFixed(2).padStart(17)} ${p.heap.toFixed(2).padStart(18)}` +
        `   ${(r.postgresPss === undefined ? '-' : mib(r.postgresPss)).padStart(18)} ${mib(r.swarmRss).padStart(14)}`,
    );
  }
  console.log('per instance (RSS before → after → end of hold, MiB; heap before → after, MiB):');
  for (const r of results) {
    const parts = r.rssBefore.map(
      (b, i) => `#${i + 1} ${mib(b)}→${mib(r.rssAfter[i] as number)}→${mib(r.rssEnd[i] as number)} (heap ${mib(r.heapBefore[i] as number)}→${mib(r.heapAfter[i] as number)})`,
    );
    console.log(`  ${r.label}: ${parts.join(', ')}`);
  }
  console.log(`hold with every device connected (a keep-alive every ${keepalive.seconds} s per device${keepalive.outsideSpec ? ', outside protocol 1.1' : ''}, durable rotation requests):`);
  console.log(
    'tier                        seconds  hub CPU %  PostgreSQL CPU %  swarm CPU %  hub CPU µs/device/s  hub µs/keep-alive  devices µs/keep-alive  fewest online  disconnects  rotations requested  promoted',
  );
  for (const r of results) {
    const h = r.hold;
    if (h === undefined) {
      console.log(`${r.label.padEnd(26)} (not held: ${r.stopped ?? 'hold 0 s'})`);
      continue;
    }
    if (r.stopped !== undefined) console.log(`${r.label.padEnd(26)} (held with ${r.connected.toLocaleString('en')} of ${r.devices.toLocaleString('en')}: ${r.stopped})`);
    console.log(
      `${r.label.padEnd(26)} ${h.seconds.toFixed(0).padStart(8)} ${h.hubCpuPct.toFixed(1).padStart(10)} ${(h.postgresCpuPct === undefined ? '-' : h.postgresCpuPct.toFixed(1)).padStart(17)} ${h.swarmCpuPct.toFixed(1).padStart(12)}` +
        ` ${((h.hubCpuPct * 1e4) / Math.max(r.connected, 1)).toFixed(2).padStart(20)} ${perKeepalive(h.hubCpuPct, r.connected, keepalive).toFixed(0).padStart(18)} ${perKeepalive(h.swarmCpuPct, r.connected, keepalive).toFixed(0).padStart(22)} ${String(h.minOnline).padStart(14)} ${String(h.disconnects).padStart(12)} ${String(h.requested).padStart(20)} ${String(h.promoted).padStart(9)}`,
    );
  }
  const [base, tier] = results.length === 2 ? results : [undefined, results[0]];
  if (tier !== undefined) {
    const t = perDevice(tier);
    // The control instance's figure where there is one (the tier): an instance's own before/after understates a connection there.
    const measured = tier.control === undefined ? { kib: t.delta, how: 'Σ(after − before) / N' } : { kib: beyondControl(tier.rssAfter, tier.heapAfter, tier.control, tier.connected).rssKiB, how: 'Σ(instance − control instance) / N' };
    const goal = measured.kib <= 10 ? 'met' : 'NOT met';
    const line = [`goal (<= 10 KiB hub RSS per connected device, ${measured.how}): ${goal} at ${tier.connected.toLocaleString('en')} devices: ${measured.kib.toFixed(2)} KiB`];
    if (base !== undefined) {
      const b = perDevice(base);
      line.push(
        `vs the SQLite baseline (${base.connected.toLocaleString('en')} on 1 process, same run): RSS per connected device ×${(measured.kib / b.delta).toFixed(2)}, heap Δ/device ×${(t.heap / b.heap).toFixed(2)}, ` +
          `total RSS/device ×${(t.total / b.total).toFixed(2)}, connections/s ×${(tier.connected / tier.connectS / (base.connected / base.connectS)).toFixed(2)}` +
          (tier.hold !== undefined && base.hold !== undefined
            ? `, hub CPU per connected device at idle ×${((tier.hold.hubCpuPct / tier.connected) / (base.hold.hubCpuPct / base.connected)).toFixed(2)}`
            : ''),
      );
    }
    if (tier.hold !== undefined) {
      // What the protocol's keep-alive rate costs this many devices, from this run's CPU per keep-alive (the hold's idle load is almost all keep-alives).
      const atSpec = (pct: number) => (perKeepalive(pct, tier.connected, keepalive) * tier.devices) / (KEEPALIVE_INTERVAL_MAX_MS / 1000) / 1e6;
      line.push(
        `keep-alives at the protocol's ${KEEPALIVE_INTERVAL_MAX_MS / 1000} s for ${tier.devices.toLocaleString('en')} devices would take ≈ ${atSpec(tier.hold.hubCpuPct).toFixed(2)} cores of the hub tier ` +
          `and ≈ ${atSpec(tier.hold.swarmCpuPct).toFixed(2)} of the simulated devices (this machine has 2 for both, and for the handshakes)`,
      );
    }
    if (tier.connected < tier.devices) line.push(`only ${tier.connected.toLocaleString('en')} of ${tier.devices.toLocaleString('en')} connected: ${tier.stopped ?? 'unknown'}`);
    for (const l of line) console.log(l);
    console.log(
      '  Before connecting, every instance holds the whole device table in its core (each may be handed any device), so the total per device grows with the instances; ' +
        'the Δ is what a connection costs. Everything here — the instances, PostgreSQL and the swarms running every device — shares the 2 cores.',
    );
  }
}

/** Asks each instance (started with --expose-gc) to collect garbage and report; its heap in use afterwards. */
async function collectHeaps(instances: readonly InstanceProcess[]): Promise<number[]> {
  const before = instances.map((i) => i.stats.gcs ?? 0);
  for (const instance of instances) instance.signal('SIGHUP');
  const deadline = Date.now() + 30_000;
  while (instances.some((i, n) => (i.stats.gcs ?? 0) <= (before[n] as number)) && Date.now() < deadline) await sleep(50);
  return instances.map((i) => i.stats.heapUsedBytes ?? Number.NaN);
}

function rssOf(pid: number | undefined): number {
  try {
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? 0 : Number(kb) * KiB;
  } catch {
    return 0;
  }
}

function anonOf(pid: number | undefined): number {
  try {
    const kb = /^RssAnon:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? 0 : Number(kb) * KiB;
  } catch {
    return 0;
  }
}

/** Proportional set size: shared pages (PostgreSQL's shared buffers) split among the processes mapping them. */
function pssOf(pid: number): number {
  try {
    const kb = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1];
    return kb === undefined ? 0 : Number(kb) * KiB;
  } catch {
    return 0;
  }
}

/** CPU seconds (user + system) of a process so far. */
function cpuOf(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS;
  } catch {
    return 0;
  }
}

/** The cluster's postmaster and its children. */
function postgresProcesses(cluster: ThrowawayCluster): number[] {
  let postmaster: number;
  try {
    postmaster = Number(readFileSync(join(cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return [];
  }
  const pids = [postmaster];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === postmaster) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** CPU seconds of the cluster's processes, including exited backends (the postmaster's cutime/cstime). */
function postgresCpu(cluster: ThrowawayCluster): number {
  let total = 0;
  for (const pid of postgresProcesses(cluster)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / TICKS;
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

/** V8 CPU profiles of the instances and swarms (NODE_OPTIONS refuses --cpu-prof). */
function profileFlags(): string[] {
  const dir = process.env.LOCKSTEP_BENCH_FLEET_PROFILE;
  return dir === undefined || dir === '' ? [] : ['--cpu-prof', `--cpu-prof-dir=${dir}`];
}

/** What the connections add: each instance's RSS and heap beyond the control instance's, per connected device, in KiB. */
function beyondControl(rss: readonly number[], heap: readonly number[], control: { rss: number; heap: number }, connected: number): { rssKiB: number; heapKiB: number } {
  const n = Math.max(connected, 1);
  return { rssKiB: (sum(rss) - rss.length * control.rss) / n / KiB, heapKiB: (sum(heap) - heap.length * control.heap) / n / KiB };
}

/** CPU µs per keep-alive exchange (a PING and its PONG) during the hold: the hold's load over the keep-alives it carried. */
function perKeepalive(cpuPct: number, connected: number, keepalive: KeepaliveTiming): number {
  const perSecond = connected / keepalive.seconds;
  return perSecond === 0 ? 0 : ((cpuPct / 100) * 1e6) / perSecond;
}

const sum = (values: readonly number[]) => values.reduce((a, b) => a + b, 0);
const mib = (bytes: number) => (bytes / MiB).toFixed(0);
