/**
 * `npm run bench -- recovery-fleet`: how long a fleet takes to come back in
 * sync after the hub's database is restored from a backup (docs/PROTOCOL.md
 * §12), on a real hub (tools/hub, SQLite, in this process) with a device
 * swarm in a separate process (tools/bench/recovery-swarm.ts: the real
 * device loop and core on real sockets, each device with its recovery
 * credential):
 *
 *  1. provision N dh devices with credentials; connect them all;
 *  2. rotate every device once; snapshot the database with SQLite's online
 *     backup (what `sqlite3 .backup` does) while the hub serves;
 *  3. rotate every device once more: every device now holds a key the
 *     snapshot does not;
 *  4. restore: stop the hub, copy the snapshot over the database (its -wal
 *     and -shm removed), start the hub on the same port;
 *  5. measure from the moment the restored hub serves to the moment every device
 *     is in sync again (the hub holds the device's key as its active key, no
 *     pending slot, the device connected: its HELLO under the recovered key
 *     promoted it, HK5), with percentiles of the per-device times.
 *
 * The limits are the reference hub's defaults and are printed: per device 3
 * accepted recoveries per hour (counted in the database), per source address
 * a token bucket of 10 (NO_KEY answers and RECOVER_INIT checks) refilled at
 * 10 a minute; on the device, attempts spaced from 30 s doubling to 1 h.
 * Each device connects from its own loopback address (127.0.x.y), as a fleet
 * on the internet does; LOCKSTEP_BENCH_RECOVERY_SOURCES=n puts the fleet
 * behind n addresses instead (n = 1: one NAT, where the per-source bucket
 * paces the whole fleet at 10 a minute — see the printed estimate).
 *
 * Environment: LOCKSTEP_BENCH_RECOVERY_FLEET (default 1000),
 * LOCKSTEP_BENCH_RECOVERY_SOURCES (default: one per device),
 * LOCKSTEP_BENCH_RECOVERY_TIMEOUT_S (default 300). Figures only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { toHex } from '../../modules/bytes';
import { nodeKeyAgreement } from '../../hosts/node/key-agreement';
import { bundleProgram, childEnv } from '../demo/hub-process';
import { newDeviceRecord, type DeviceRecord } from '../hub/records';
import { DEFAULT_RECOVERY_POLICY } from '../hub/recovery';
import { LockstepHub } from '../hub/server';
import { newStaticPair, type HubStaticKeys } from '../hub/static-keys';
import type { HubOptions } from '../hub/options';
import type { RecoverySwarmConfig, RecoverySwarmDevice } from './recovery-swarm';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The i-th loopback source address of `sources` (127.0.0.1 is left to the hub's other clients). */
function sourceAddress(i: number, sources: number): string {
  const n = (i % sources) + 2;
  return `127.0.${Math.floor(n / 250)}.${(n % 250) + 1}`;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

export async function run(): Promise<void> {
  const count = Number(process.env.LOCKSTEP_BENCH_RECOVERY_FLEET ?? 1000);
  const sources = Number(process.env.LOCKSTEP_BENCH_RECOVERY_SOURCES ?? count);
  const timeoutMs = Number(process.env.LOCKSTEP_BENCH_RECOVERY_TIMEOUT_S ?? 300) * 1000;
  const policy = DEFAULT_RECOVERY_POLICY;
  console.log(`\n== A fleet of ${count} devices recovering after the hub's database is restored from a backup (docs/PROTOCOL.md §12) ==`);
  console.log(
    `limits: recovery ${policy.mode}; per device ${policy.perDeviceLimit} accepted per ${policy.windowMs / 60_000} min (in the database); ` +
      `per source address a bucket of ${policy.perSource.burst} refilled at ${policy.perSource.perMinute}/min (before authentication); ` +
      `device attempts spaced 30 s doubling to 1 h; ${sources === count ? 'one source address per device' : `${sources} source addresses`}`,
  );
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-bench-recovery-fleet-'));
  const database = join(dir, 'hub.db');
  const snapshot = join(dir, 'backup.db');
  let swarm: ChildProcess | undefined;
  let hub: LockstepHub | undefined;
  try {
    const staticKeys: HubStaticKeys = { current: 1, keys: [newStaticPair(1, Date.now())] };
    const hubPublic = staticKeys.keys[0]!.publicKey;
    const records: DeviceRecord[] = [];
    const swarmDevices: RecoverySwarmDevice[] = [];
    for (let i = 0; i < count; i++) {
      const pair = nodeKeyAgreement.x25519GenerateKeyPair!();
      const record: DeviceRecord = { ...newDeviceRecord(1, 'dh'), devicePublicKey: pair.publicKey, hubStaticId: 1 };
      records.push(record);
      swarmDevices.push({
        deviceId: record.deviceId,
        keyId: record.active.id,
        key: toHex(record.active.key),
        mode: record.mode,
        devicePrivate: toHex(pair.privateKey),
        devicePublic: toHex(pair.publicKey),
        hubStaticId: 1,
        hubPublic: toHex(hubPublic),
        source: sourceAddress(i, sources),
      });
    }
    const options = (port: number): HubOptions => ({
      database,
      tcp: { port },
      staticKeys,
      rotation: { intervalMs: 0 },
      limits: { maxConnections: count + 100 },
      recovery: {},
    });
    hub = await LockstepHub.start(options(0));
    const port = hub.addresses[0]?.port as number;
    for (const record of records) hub.provision(record);
    const devicesPath = join(dir, 'devices.jsonl');
    writeFileSync(devicesPath, swarmDevices.map((d) => JSON.stringify(d)).join('\n'), { mode: 0o600 });
    const config: RecoverySwarmConfig = { devicesPath, host: '127.0.0.1', port, maxConnecting: 200 };
    let connected = false;
    let swarmCpuUs = 0;
    swarm = spawn(process.execPath, [bundleProgram('tools/bench/recovery-swarm.ts'), JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'inherit'], env: childEnv() });
    let buffer = '';
    swarm.stdout?.setEncoding('utf8');
    swarm.stdout?.on('data', (text: string) => {
      buffer += text;
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const line = JSON.parse(buffer.slice(0, newline)) as { type: string; cpuUs?: number };
        buffer = buffer.slice(newline + 1);
        if (line.type === 'connected') connected = true;
        if (line.cpuUs !== undefined) swarmCpuUs = line.cpuUs;
      }
    });
    const connectDeadline = Date.now() + 120_000;
    while (!connected && Date.now() < connectDeadline) await sleep(100);
    if (!connected) throw new Error(`recovery-fleet bench: only ${hub.stats().devicesOnline} of ${count} devices connected in 120 s`);

    const ids = records.map((r) => r.deviceId);
    const rotateAll = async (live: LockstepHub, round: number): Promise<number> => {
      const t0 = performance.now();
      const done = new Set<string>();
      const onConfirmed = (event: { deviceId: string }) => done.add(event.deviceId);
      live.on('keyConfirmed', onConfirmed);
      const deadline = Date.now() + 120_000;
      let next = 0;
      while (done.size < ids.length && Date.now() < deadline) {
        let inFlight = 0;
        for (const id of ids) if (!done.has(id) && live.deviceState(id).pendingKeyId !== undefined) inFlight++;
        for (let tries = 0; tries < ids.length && inFlight < 256; tries++) {
          const id = ids[next++ % ids.length] as string;
          if (done.has(id)) continue;
          const state = live.deviceState(id);
          if (!state.connected || state.pendingKeyId !== undefined || state.persisting) continue;
          if (live.rotate(id) === 'started') inFlight++;
        }
        await sleep(50);
      }
      live.off('keyConfirmed', onConfirmed);
      if (done.size < ids.length) throw new Error(`recovery-fleet bench: rotation ${round} confirmed for ${done.size} of ${ids.length} devices in 120 s`);
      return performance.now() - t0;
    };
    const firstRotation = await rotateAll(hub, 1);
    {
      const db = new Database(database, { readonly: true, fileMustExist: true });
      await db.backup(snapshot);
      db.close();
    }
    const secondRotation = await rotateAll(hub, 2);
    console.log(`setup: ${count} devices online; every device rotated once (${(firstRotation / 1000).toFixed(1)} s), backup taken, rotated again (${(secondRotation / 1000).toFixed(1)} s)`);

    // ---- The restore ----
    const keyAfterSecond = new Map(ids.map((id) => [id, hub!.deviceState(id).activeKeyId]));
    const stopped = performance.now();
    await hub.close();
    hub = undefined;
    copyFileSync(snapshot, database);
    rmSync(`${database}-wal`, { force: true });
    rmSync(`${database}-shm`, { force: true });
    const restarting = performance.now();
    const hubCpu0 = process.cpuUsage();
    const swarmCpu0 = swarmCpuUs;
    // The backup carries the serving hub's lease (pid, heartbeat). A hub in a new process takes it at
    // once (the old pid is dead); this bench restarts in the same process, so it waits for the
    // lease to go stale (10 s after the backup's heartbeat), and the wait is printed apart.
    let leaseWaitMs = 0;
    for (;;) {
      try {
        hub = await LockstepHub.start(options(port));
        break;
      } catch (error) {
        if ((error as { code?: string }).code !== 'LOCAL_DATABASE_LOCKED' || performance.now() - restarting > 30_000) throw error;
        await sleep(200);
        leaseWaitMs = performance.now() - restarting;
      }
    }
    const live = hub;
    const restarted = performance.now();
    // When the hub decided each recovery (tag3 verified, the policy applied), apart from when the device was back in sync.
    const decidedAt: number[] = [];
    live.on('recoveryDecided', () => decidedAt.push(performance.now() - restarted));
    // The deciding transaction (tools/hub/store.ts decideRecovery) runs synchronously on the hub's
    // event loop; its wall time is measured here by wrapping it (instrumentation only).
    const decideWall = { ms: 0, calls: 0 };
    const store = live.store as unknown as { decideRecovery: (...args: unknown[]) => unknown };
    const decide = store.decideRecovery.bind(live.store);
    store.decideRecovery = (...args: unknown[]) => {
      const t = performance.now();
      try {
        return decide(...args);
      } finally {
        decideWall.ms += performance.now() - t;
        decideWall.calls++;
      }
    };
    const restoredKeys = new Map(ids.map((id) => [id, live.deviceState(id).activeKeyId]));
    const behind = ids.filter((id) => (restoredKeys.get(id) ?? 0) < (keyAfterSecond.get(id) ?? 0)).length;
    const inSyncAt = new Map<string, number>();
    const deadline = Date.now() + timeoutMs;
    while (inSyncAt.size < ids.length && Date.now() < deadline) {
      const at = performance.now() - restarted;
      for (const id of ids) {
        if (inSyncAt.has(id)) continue;
        const state = live.deviceState(id);
        if (state.connected && state.pendingKeyId === undefined && (state.activeKeyId ?? 0) > (keyAfterSecond.get(id) ?? Infinity)) inSyncAt.set(id, at);
      }
      await sleep(100);
    }
    const hubCpu = process.cpuUsage(hubCpu0);
    await sleep(600);
    const swarmCpu = swarmCpuUs - swarmCpu0;
    const times = [...inSyncAt.values()].sort((a, b) => a - b);
    const counters = live.recoveryCounters;
    decidedAt.sort((a, b) => a - b);
    console.log(`restore: hub stopped, backup copied back, hub started in ${((restarted - stopped - leaseWaitMs) / 1000).toFixed(2)} s (not counting ${(leaseWaitMs / 1000).toFixed(1)} s waiting for the backup's lease, an artifact of restarting in the bench's own process); ${behind} of ${count} devices hold a key the restored database does not`);
    console.log(
      `back in sync: ${inSyncAt.size} of ${count} devices in ${((times[times.length - 1] ?? NaN) / 1000).toFixed(2)} s after the restart ` +
        `(per device: p50 ${(percentile(times, 50) / 1000).toFixed(2)} s, p90 ${(percentile(times, 90) / 1000).toFixed(2)} s, p99 ${(percentile(times, 99) / 1000).toFixed(2)} s)` +
        (inSyncAt.size < count ? `; NOT all within ${timeoutMs / 1000} s` : ''),
    );
    console.log(
      `recoveries decided by the hub: ${decidedAt.length}, from ${((decidedAt[0] ?? NaN) / 1000).toFixed(2)} s to ${((decidedAt[decidedAt.length - 1] ?? NaN) / 1000).toFixed(2)} s after the restart ` +
        `(p50 ${(percentile(decidedAt, 50) / 1000).toFixed(2)} s, p90 ${(percentile(decidedAt, 90) / 1000).toFixed(2)} s); ` +
        `the deciding transactions took ${(decideWall.ms / Math.max(1, decideWall.calls)).toFixed(1)} ms of wall time each, ${(decideWall.ms / 1000).toFixed(1)} s in all, with the hub's event loop blocked (synchronous=FULL: one fsync each)`,
    );
    console.log(
      `hub: decisions ${JSON.stringify(counters.decided)}, episodes ${JSON.stringify(counters.needed)}, unauthenticated failures ${JSON.stringify(counters.unauthenticated)}, ` +
        `source-limited ${counters.sourceLimited}; hub CPU ${(hubCpu.user + hubCpu.system) / 1000 / Math.max(1, inSyncAt.size) > 0 ? ((hubCpu.user + hubCpu.system) / 1000 / Math.max(1, inSyncAt.size)).toFixed(2) : 'n/a'} ms per recovered device ` +
        `(the whole hub: handshake, decision transaction, persist, reconnect, promotion), swarm CPU ${(swarmCpu / 1000 / Math.max(1, inSyncAt.size)).toFixed(2)} ms per device`,
    );
    const perSourceMinutes = Math.max(0, Math.ceil(count / Math.max(1, sources)) - policy.perSource.burst) / policy.perSource.perMinute;
    console.log(
      `  behind fewer addresses the per-source bucket paces it: ${count} devices behind one address need ~${((count - policy.perSource.burst) / policy.perSource.perMinute).toFixed(0)} min ` +
        `(${policy.perSource.burst} at once, then ${policy.perSource.perMinute}/min); with ${sources} addresses here the bucket adds ~${perSourceMinutes.toFixed(1)} min. ` +
        `A hub serving fleets behind NAT raises perSource (docs/HUB.md §14)`,
    );
  } finally {
    swarm?.kill('SIGTERM');
    await hub?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && /tools[\\/]bench[\\/]recovery-fleet\.ts$/.test(process.argv[1])) {
  run().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : String(error));
    process.exitCode = 1;
  });
}
