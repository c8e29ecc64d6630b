/**
 * The documented HA set-up (docs/HUB.md §13.5): a primary with a synchronous
 * streaming-replication standby. The hub with requireSynchronousReplication
 * starts against it, devices rotate, the primary crashes and the standby is
 * promoted: every rotation the hub acted on is on the new primary, and the
 * devices are in sync with it. (Without a synchronous standby the hub
 * refuses to start: tests/hub-postgres-store.test.ts.)
 */
import { Keyring } from '../tools/hub/kek';
import { ThrowawayCluster } from '../tools/hub/postgres/cluster';
import { PgLockstepHub } from '../tools/hub/postgres/hub';
import { PgHubStore } from '../tools/hub/postgres/store';
import { provisionSimulatedDevice, SimulatedDevice } from '../tools/demo/fleet';
import { syncProblem } from '../tools/demo/sync-check';

const keyring = Keyring.ephemeral();

async function until(predicate: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test('synchronous standby: after the primary crashes and the standby is promoted, every rotation is there and the devices are in sync', async () => {
  const primary = await ThrowawayCluster.start();
  let standby: ThrowawayCluster | undefined;
  const devices: SimulatedDevice[] = [];
  let hub: PgLockstepHub | undefined;
  try {
    standby = await primary.startStandby('standby1');
    primary.psql('lockstep', "ALTER SYSTEM SET synchronous_standby_names = 'standby1'");
    primary.psql('lockstep', 'SELECT pg_reload_conf()');
    hub = await PgLockstepHub.start({ database: primary.url, store: { keyring, poolSize: 2 }, tcp: { port: 0 }, tickMs: 50, controlPollMs: 100, requireSynchronousReplication: true });
    const durability = await hub.store.durability();
    expect(durability.synchronousStandbyNames).toBe('standby1');
    for (let i = 0; i < 3; i++) {
      const provisioned = provisionSimulatedDevice();
      await hub.provision(provisioned.record);
      const device = new SimulatedDevice(provisioned, { endpoint: () => ({ host: '127.0.0.1', port: hub!.addresses[0]?.port as number }), host: { reconnectInitialMs: 20, reconnectMaxMs: 200 } });
      devices.push(device);
      device.start();
    }
    await until(() => devices.every((d) => d.host.online), 'online');
    for (let round = 2; round <= 4; round++) {
      for (const d of devices) await hub.rotate(d.deviceId);
      await until(() => devices.every((d) => d.host.keys.active.id === round && d.host.keys.future === undefined), `round ${round}`);
    }
    // The primary dies; the synchronous standby becomes the primary.
    for (const d of devices) d.stop();
    primary.stopServer('immediate');
    standby.promote();
    const promoted = await PgHubStore.open(standby.url, { keyring, poolSize: 1 });
    try {
      const rows = new Map((await promoted.loadDevices()).map((row) => [row.deviceId, row]));
      for (const d of devices) {
        const row = rows.get(d.deviceId);
        expect(row?.active.id).toBe(4);
        expect(syncProblem(d.host.keys, row!)).toBeUndefined();
      }
    } finally {
      await promoted.close();
    }
  } finally {
    for (const d of devices) d.stop();
    await hub?.close().catch(() => {});
    standby?.stop();
    primary.stop();
  }
}, 120_000);
