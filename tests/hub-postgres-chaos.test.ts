/**
 * The multi-instance chaos test (issue 16): 3 hub instances (child
 * processes) on one PostgreSQL database behind a balancer that picks an
 * instance at random per connection; 100 devices rotating and sending
 * telemetry, with connection cuts. During the run: instances killed with
 * SIGKILL and replaced, one instance stopped with SIGSTOP while its devices
 * re-home and rotate elsewhere, then resumed with SIGCONT (it must commit
 * nothing stale: its leases are lost and its writes fenced), every database
 * session terminated (pg_terminate_backend), PostgreSQL itself crashed and
 * restarted. At the end: 0 devices out of sync, every device rotated, and
 * the telemetry ledger holds with the guarantees of one hub — an instance
 * run is a receiver epoch (its dedup memory is its own, as a restarted
 * hub's), so: no duplicate within one instance run, nothing lost.
 */
import { randomBytes } from 'node:crypto';
import { environmentKeyringSource, Keyring } from '../tools/hub/kek';
import { PgHubStore } from '../tools/hub/postgres/store';
import { HubTier } from '../tools/hub/postgres/tier';
import type { ThrowawayCluster } from '../tools/hub/postgres/cluster';
import { Ledger } from '../tools/demo/ledger';
import { provisionFleet, SimulatedDevice } from '../tools/demo/fleet';
import { syncProblem } from '../tools/demo/sync-check';
import { freshDatabase, sql, startCluster } from './support/postgres';

const DEVICES = 100;
let cluster: ThrowawayCluster;

beforeAll(async () => {
  cluster = await startCluster();
}, 60_000);
afterAll(() => cluster?.stop());

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(100);
  }
}

test('3 instances, 100 devices: SIGKILL, SIGSTOP/SIGCONT, pg_terminate_backend, PostgreSQL restart — 0 out of sync, data as on one hub', async () => {
  const url = await freshDatabase(cluster);
  const kek = `1:${randomBytes(32).toString('hex')}`;
  const keyring = new Keyring(environmentKeyringSource(kek));
  const provisioned = provisionFleet(DEVICES);
  const setup = await PgHubStore.open(url, { keyring, poolSize: 1 });
  await setup.insertDevices(provisioned.map((p) => p.record), Date.now());
  await setup.close();

  const ledger = new Ledger();
  const tier = await HubTier.start(3, { url, kek, rotationIntervalMs: 1500, rotationJitterMs: 1000, statementTimeoutMs: 2000 }, (run, line) => {
    if (!line.startsWith('U ')) return;
    const [, deviceId, text] = line.split(' ') as [string, string, string];
    ledger.delivered('up', deviceId, text.startsWith('u:') ? text.slice(2) : `?${text}`, run);
  });
  const devices = provisioned.map(
    (p) =>
      new SimulatedDevice(p, {
        endpoint: () => ({ host: '127.0.0.1', port: tier.port }),
        chaos: { cutProbability: 0.1, cutMaxBytes: 600, powerCutProbability: 0 },
        ledger,
        telemetryEveryMs: 1500,
        host: { reconnectInitialMs: 50, reconnectMaxMs: 500 },
      }),
  );
  const stopped: { leasesLost: number; fencedOut: number; commitOpsBefore: number; commitOpsAfter: number } = { leasesLost: 0, fencedOut: 0, commitOpsBefore: 0, commitOpsAfter: 0 };
  try {
    for (const device of devices) device.start();
    await until(() => devices.filter((d) => d.host.online).length >= DEVICES * 0.9, 'devices online', 30_000);
    await sleep(3000);

    await tier.killAndReplace(Math.floor(Math.random() * 3));
    await sleep(3000);

    // SIGSTOP past its leases: its devices re-dial, land on the others, take new leases and rotate.
    const paused = tier.pause(0)!;
    const pausedStats = { ...paused.stats };
    await sleep(5000);
    tier.resume(paused);
    await sleep(1500);
    stopped.leasesLost = (paused.stats.leasesLost ?? 0) - (pausedStats.leasesLost ?? 0);
    stopped.fencedOut = paused.stats.fencedOut ?? 0;

    await sql(url, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
    await sleep(3000);
    await tier.killAndReplace(Math.floor(Math.random() * 3));
    await sleep(2000);
    cluster.restart();
    await sleep(4000);
    await tier.killAndReplace(Math.floor(Math.random() * 3));
    await sleep(3000);

    // Quiesce: no more cuts, rotations or telemetry; everything in flight settles.
    for (const device of devices) {
      device.chaos = { cutProbability: 0, cutMaxBytes: 0, powerCutProbability: 0 };
      device.stopTelemetry();
    }
    tier.signalAll('SIGUSR2');
    const reader = await PgHubStore.open(url, { keyring, poolSize: 1 });
    let problems: string[] = [];
    try {
      await until(
        async () => {
          const views = devices.map((d) => ({ d, keys: d.host.keys }));
          const rows = new Map((await reader.loadDevices()).map((row) => [row.deviceId, row]));
          problems = views.flatMap(({ d, keys }) => {
            const row = rows.get(d.deviceId);
            const problem = row === undefined ? 'missing' : syncProblem(keys, row);
            return problem === undefined ? [] : [`${d.deviceId}: ${problem}`];
          });
          return problems.length === 0 && devices.every((d) => d.host.online) && ledger.inFlight() === 0;
        },
        'all in sync, online, and every message delivered',
        60_000,
      ).catch((error: Error) => {
        throw new Error(`${error.message}: ${problems.slice(0, 5).join('; ')} (in flight ${ledger.inFlight()})`);
      });
      const rows = await reader.listDevices();
      expect(rows.every((row) => row.rotations >= 3)).toBe(true);
      const total = rows.reduce((n, row) => n + row.rotations, 0);
      const verdict = ledger.verdict('up');
      const fleetStats = tier.runs.map((run) => run.stats);
      const sum = (name: string) => fleetStats.reduce((n, s) => n + (s[name] ?? 0), 0);
      // eslint-disable-next-line no-console
      console.log(
        `chaos: ${DEVICES} devices, ${total} rotations, ${tier.runs.length} instance runs, leases taken ${sum('leasesTaken')}, lost ${sum('leasesLost')}, ` +
          `fenced out ${sum('fencedOut')}, failed transactions ${sum('failedTransactions')}; paused instance lost ${stopped.leasesLost} leases; ` +
          `telemetry ${verdict.sent} sent, ${verdict.delivered} delivered, ${verdict.redeliveredAfterCrash} again in another instance run, cuts ${devices.reduce((n, d) => n + d.cuts, 0)}`,
      );
      expect(verdict.violations).toEqual([]);
      expect(verdict.lost + verdict.duplicates + verdict.unknown).toBe(0);
      expect(verdict.delivered).toBeGreaterThan(DEVICES * 5);
      // The paused instance held leases when stopped; on SIGCONT it found them taken and let go.
      expect(stopped.leasesLost).toBeGreaterThan(0);
    } finally {
      await reader.close();
    }
  } finally {
    for (const device of devices) device.stop();
    await tier.close();
  }
}, 180_000);
