/**
 * Hub on PostgreSQL, in the same run as its SQLite baseline (`npm run bench
 * -- hub`, after the one-process figures):
 * 1. commit latency p50/p99 of the stores themselves, SQLite (WAL,
 *    synchronous=FULL) vs PostgreSQL (synchronous_commit=on, fenced), one op
 *    per transaction and 64 per transaction (group commit);
 * 2. rotations/s and CPU per rotation through the whole path — devices in a
 *    swarm process → TCP balancer → hub instance processes → database — for
 *    SQLite with one instance and PostgreSQL with 1, 2 and 3 instances, every
 *    device rotating as fast as the hub tier lets it; CPU split into hub
 *    instances, PostgreSQL server processes and the swarm.
 * Everything shares the machine's 2 cores (devices, instances, PostgreSQL),
 * so more instances cannot add throughput here: the figures show the cost
 * of the tier, not its scaling on more machines.
 *
 * Environment: LOCKSTEP_BENCH_PG_DEVICES (default 2000), LOCKSTEP_BENCH_WINDOW_S.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleProgram, childEnv } from '../demo/hub-process';
import type { SwarmConfig } from '../demo/swarm';
import { environmentKeyringSource, Keyring } from '../hub/kek';
import { ThrowawayCluster } from '../hub/postgres/cluster';
import { PgHubStore, type Fence } from '../hub/postgres/store';
import { HubTier } from '../hub/postgres/tier';
import { newDeviceRecord, toHubRecordJson } from '../hub/records';
import { HubStore } from '../hub/store';
import { checkLoadLimits } from './limits';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

export async function run(): Promise<void> {
  const deviceCount = Number(process.env.LOCKSTEP_BENCH_PG_DEVICES ?? 2000);
  const windowMs = Number(process.env.LOCKSTEP_BENCH_WINDOW_S ?? 8) * 1000;
  const tooMany = checkLoadLimits(deviceCount, 'LOCKSTEP_BENCH_PG_DEVICES');
  if (tooMany !== undefined) {
    console.error(`bench hub (PostgreSQL): ${tooMany}`);
    process.exitCode = 2;
    return;
  }
  console.log(`\n== Hub on PostgreSQL vs SQLite: ${deviceCount} devices, instances as processes behind a TCP balancer (2 cores shared by all) ==`);
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-bench-pg-'));
  const cluster = await ThrowawayCluster.start();
  const kek = `1:${randomBytes(32).toString('hex')}`;
  const keyring = new Keyring(environmentKeyringSource(kek));
  try {
    // ---- 1. Commit latency of the stores ----
    console.log('commit latency (ms)            1 op/txn p50   p99     64 ops/txn p50   p99');
    const sqliteLatency = commitLatencySqlite(join(dir, 'latency.db'), keyring);
    const pgLatency = await commitLatencyPostgres(cluster.url, keyring);
    for (const [name, l] of [['SQLite (WAL, FULL)', sqliteLatency], ['PostgreSQL (sync commit, fenced)', pgLatency]] as const) {
      console.log(`${name.padEnd(32)} ${l.single.p50.toFixed(2).padStart(10)} ${l.single.p99.toFixed(2).padStart(6)} ${l.batch.p50.toFixed(2).padStart(16)} ${l.batch.p99.toFixed(2).padStart(6)}`);
    }
    console.log(`  PostgreSQL / SQLite p50: ${(pgLatency.single.p50 / sqliteLatency.single.p50).toFixed(1)}× (1 op), ${(pgLatency.batch.p50 / sqliteLatency.batch.p50).toFixed(1)}× (64 ops)`);
    // The audit trail's key events are rows inside the same commit (docs/HUB.md §13.10): their cost, same run.
    const pgNoAudit = await commitLatencyPostgres(cluster.url, keyring, false);
    console.log(
      `  PostgreSQL without key-event audit rows: p50 ${pgNoAudit.single.p50.toFixed(2)} / ${pgNoAudit.batch.p50.toFixed(2)} ms; ` +
        `with them ×${(pgLatency.single.p50 / pgNoAudit.single.p50).toFixed(2)} (1 op), ×${(pgLatency.batch.p50 / pgNoAudit.batch.p50).toFixed(2)} (64 ops)`,
    );

    // ---- 2. Rotations through the whole path ----
    const records = Array.from({ length: deviceCount }, () => newDeviceRecord());
    const recordsPath = join(dir, 'records.jsonl');
    writeFileSync(recordsPath, records.map((r) => JSON.stringify(toHubRecordJson(r))).join('\n'));
    console.log('backend      instances   rotations/s   hub CPU ms/rot   PostgreSQL CPU ms/rot   devices CPU ms/rot   vs SQLite');
    const configs: { backend: 'sqlite' | 'postgres'; instances: number }[] = [
      { backend: 'sqlite', instances: 1 },
      { backend: 'postgres', instances: 1 },
      { backend: 'postgres', instances: 2 },
      { backend: 'postgres', instances: 3 },
    ];
    let baseline = Number.NaN;
    let n = 0;
    for (const config of configs) {
      let url: string;
      if (config.backend === 'sqlite') {
        url = join(dir, `tier-${n++}.db`);
        const store = new HubStore(url, { keyring });
        store.insertDevices(records, Date.now());
        store.close();
      } else {
        url = await freshDatabase(cluster, `bench${n++}`);
        const store = await PgHubStore.open(url, { keyring, poolSize: 1 });
        await store.insertDevices(records, Date.now());
        await store.close();
      }
      const result = await measureTier(url, config.instances, kek, recordsPath, deviceCount, windowMs, cluster);
      if (config.backend === 'sqlite') baseline = result.rate;
      console.log(
        `${config.backend.padEnd(12)} ${String(config.instances).padStart(9)}   ${result.rate.toFixed(0).padStart(11)}   ${result.hubCpuMs.toFixed(3).padStart(14)}   ` +
          `${(config.backend === 'sqlite' ? '-' : result.pgCpuMs.toFixed(3)).padStart(21)}   ${result.swarmCpuMs.toFixed(3).padStart(18)}   ${(result.rate / baseline).toFixed(2).padStart(8)}×` +
          (result.online < deviceCount ? `   (only ${result.online} online)` : ''),
      );
    }
    console.log(
      '  Every process here shares 2 cores: the swarm, each instance and PostgreSQL compete, so 2 and 3 instances add coordination ' +
        '(leases, fenced commits, polls) but no CPU; on separate machines the instances scale with their cores and PostgreSQL becomes the limit.',
    );
  } finally {
    cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function commitLatencySqlite(path: string, keyring: Keyring): { single: { p50: number; p99: number }; batch: { p50: number; p99: number } } {
  const store = new HubStore(path, { keyring });
  try {
    const devices = Array.from({ length: 64 }, () => newDeviceRecord());
    store.insertDevices(devices, Date.now());
    const ids = new Map(devices.map((d) => [d.deviceId, d.active.id]));
    const single: number[] = [];
    const batch: number[] = [];
    const round = (group: typeof devices, into: number[]) => {
      for (const kind of ['storePending', 'promote'] as const) {
        const ops = group.map((d) => {
          const id = (ids.get(d.deviceId) as number) + 1;
          return kind === 'storePending' ? { kind, deviceId: d.deviceId, id, key: randomBytes(64) } : { kind, deviceId: d.deviceId, id };
        });
        const t0 = performance.now();
        store.commit(ops, Date.now());
        into.push(performance.now() - t0);
        if (kind === 'promote') for (const d of group) ids.set(d.deviceId, (ids.get(d.deviceId) as number) + 1);
      }
    };
    for (let i = 0; i < 200; i++) round([devices[i % 64]!], single);
    for (let i = 0; i < 50; i++) round(devices, batch);
    return { single: stats(single), batch: stats(batch) };
  } finally {
    store.close();
  }
}

export async function commitLatencyPostgres(url: string, keyring: Keyring, audit = true): Promise<{ single: { p50: number; p99: number }; batch: { p50: number; p99: number } }> {
  const store = await PgHubStore.open(url, { keyring, poolSize: 2 });
  store.auditKeyEvents = audit;
  try {
    const devices = Array.from({ length: 64 }, () => newDeviceRecord());
    await store.insertDevices(devices, Date.now());
    const fences = new Map<string, Fence>();
    for (const d of devices) fences.set(d.deviceId, (await store.lease(d.deviceId))!.fence);
    const ids = new Map(devices.map((d) => [d.deviceId, d.active.id]));
    const single: number[] = [];
    const batch: number[] = [];
    const round = async (group: typeof devices, into: number[]) => {
      for (const kind of ['storePending', 'promote'] as const) {
        const ops = group.map((d) => {
          const id = (ids.get(d.deviceId) as number) + 1;
          return kind === 'storePending' ? { kind, deviceId: d.deviceId, id, key: randomBytes(64) } : { kind, deviceId: d.deviceId, id };
        });
        const t0 = performance.now();
        const applied = await store.commit(ops, Date.now(), fences);
        into.push(performance.now() - t0);
        if (!applied.every(Boolean)) throw new Error('bench: a fenced commit did not apply');
        if (kind === 'promote') for (const d of group) ids.set(d.deviceId, (ids.get(d.deviceId) as number) + 1);
      }
    };
    for (let i = 0; i < 200; i++) await round([devices[i % 64]!], single);
    for (let i = 0; i < 50; i++) await round(devices, batch);
    return { single: stats(single), batch: stats(batch) };
  } finally {
    await store.close();
  }
}

function stats(samples: number[]): { p50: number; p99: number } {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99) };
}

async function freshDatabase(cluster: ThrowawayCluster, name: string): Promise<string> {
  cluster.psql('lockstep', `CREATE DATABASE ${name}`);
  const url = new URL(cluster.url);
  url.pathname = `/${name}`;
  return url.toString();
}

/** CPU seconds (user + system) of the cluster's server processes so far. */
function postgresCpuSeconds(cluster: ThrowawayCluster): number {
  const ticks = 100; // USER_HZ on Linux
  let postmaster: number;
  try {
    postmaster = Number(readFileSync(join(cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return Number.NaN;
  }
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const pid = Number(entry);
      const ppid = Number(fields[1]);
      if (pid !== postmaster && ppid !== postmaster) continue;
      // utime, stime, cutime, cstime (fields 14-17 of stat; here offset by the two before ')')
      total += (Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) / ticks;
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

async function measureTier(
  url: string,
  instances: number,
  kek: string,
  recordsPath: string,
  deviceCount: number,
  windowMs: number,
  cluster: ThrowawayCluster,
): Promise<{ rate: number; hubCpuMs: number; pgCpuMs: number; swarmCpuMs: number; online: number }> {
  const tier = await HubTier.start(instances, { url, kek, rotationIntervalMs: 1, rotationJitterMs: 0, poolSize: 8 });
  let swarm: ChildProcess | undefined;
  try {
    const last: { online: number; promoted: number; cpuUs: number } = { online: 0, promoted: 0, cpuUs: 0 };
    let connected = false;
    const config: SwarmConfig = { recordsPath, host: '127.0.0.1', port: tier.port, maxConnecting: 200 };
    swarm = spawn(process.execPath, [bundleProgram('tools/demo/swarm.ts'), JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'inherit'], env: childEnv() });
    let buffer = '';
    swarm.stdout?.setEncoding('utf8');
    swarm.stdout?.on('data', (text: string) => {
      buffer += text;
      let newline: number;
      while ((newline = buffer.indexOf('\n')) >= 0) {
        const message = JSON.parse(buffer.slice(0, newline)) as { type: string; online: number; promoted: number; cpuUserUs: number; cpuSystemUs: number };
        buffer = buffer.slice(newline + 1);
        if (message.type === 'connected') connected = true;
        if (message.type === 'stats') Object.assign(last, { online: message.online, promoted: message.promoted, cpuUs: message.cpuUserUs + message.cpuSystemUs });
      }
    });
    const deadline = Date.now() + 60_000;
    while (!connected && Date.now() < deadline) await sleep(100);
    await sleep(2000); // warm up
    const hubCpu = () => tier.instances.reduce((sum, i) => sum + (i.stats.cpuUs ?? 0), 0);
    const start = { promoted: last.promoted, swarm: last.cpuUs, hub: hubCpu(), pg: postgresCpuSeconds(cluster), at: performance.now() };
    await sleep(windowMs);
    await sleep(600); // one more STATS line from everyone
    const seconds = (performance.now() - start.at - 600) / 1000;
    const done = Math.max(last.promoted - start.promoted, 1);
    return {
      rate: (last.promoted - start.promoted) / (seconds + 0.6),
      hubCpuMs: (hubCpu() - start.hub) / 1000 / done,
      pgCpuMs: ((postgresCpuSeconds(cluster) - start.pg) * 1000) / done,
      swarmCpuMs: (last.cpuUs - start.swarm) / 1000 / done,
      online: last.online,
    };
  } finally {
    swarm?.kill('SIGTERM');
    await tier.close();
    void deviceCount;
  }
}
