/**
 * Hub instances on one PostgreSQL database behind a balancer that picks an
 * instance at random per connection (docs/HUB.md §13): devices rotate while
 * their connections land on any instance; the lease follows the newest
 * authenticated connection and the instance that lost it closes its
 * connection; a rotation asked of any instance reaches the one serving the
 * device through the durable request; a HELLO that does not authenticate
 * moves no lease; terminated database sessions and a PostgreSQL restart
 * lose no rotation.
 */
import { Keyring } from '../tools/hub/kek';
import { TcpBalancer } from '../tools/hub/postgres/balancer';
import { PgLockstepHub } from '../tools/hub/postgres/hub';
import { PgHubStore } from '../tools/hub/postgres/store';
import type { ThrowawayCluster } from '../tools/hub/postgres/cluster';
import { provisionSimulatedDevice, SimulatedDevice } from '../tools/demo/fleet';
import { syncProblem } from '../tools/demo/sync-check';
import { fromHex } from '../modules/bytes';
import { Keystore } from '../modules/keystore/keystore';
import { memoryFlash } from '../hosts/node/flash-memory';
import { newDeviceRecord, toHubRecordJson } from '../tools/hub/records';
import { CuttableFlash } from '../tools/testing/cuttable-flash';
import { forgedHello, freshDatabase, sql, startCluster } from './support/postgres';

let cluster: ThrowawayCluster;
const hubs: PgLockstepHub[] = [];
const devices: SimulatedDevice[] = [];
const balancers: TcpBalancer[] = [];
const keyring = Keyring.ephemeral();

beforeAll(async () => {
  cluster = await startCluster();
}, 60_000);
afterAll(() => cluster?.stop());
afterEach(async () => {
  for (const device of devices.splice(0)) device.stop();
  for (const balancer of balancers.splice(0)) await balancer.close();
  for (const hub of hubs.splice(0)) await hub.close();
});

async function startHub(url: string, options: Partial<Parameters<typeof PgLockstepHub.start>[0]> = {}): Promise<PgLockstepHub> {
  const hub = await PgLockstepHub.start({ database: url, store: { keyring, poolSize: 4 }, tcp: { port: 0 }, tickMs: 50, controlPollMs: 100, ...options });
  hubs.push(hub);
  return hub;
}

async function tier(url: string, count: number, options: Partial<Parameters<typeof PgLockstepHub.start>[0]> = {}): Promise<{ instances: PgLockstepHub[]; balancer: TcpBalancer }> {
  const instances: PgLockstepHub[] = [];
  for (let i = 0; i < count; i++) instances.push(await startHub(url, options));
  const balancer = await TcpBalancer.start(instances.map((hub) => ({ host: '127.0.0.1', port: hub.addresses[0]?.port as number })));
  balancers.push(balancer);
  return { instances, balancer };
}

async function addDevice(hub: PgLockstepHub, port: () => number): Promise<SimulatedDevice> {
  const provisioned = provisionSimulatedDevice();
  await hub.provision(provisioned.record);
  const device = new SimulatedDevice(provisioned, {
    endpoint: () => ({ host: '127.0.0.1', port: port() }),
    host: { reconnectInitialMs: 20, reconnectMaxMs: 200 },
  });
  devices.push(device);
  device.start();
  return device;
}

/** Whether `hub` has the device online (false while it does not know the device yet: it learns it by its poll or at the lease). */
function onlineAt(hub: PgLockstepHub, deviceId: string): boolean {
  return hub.deviceIds.includes(deviceId) && hub.deviceState(deviceId).connected;
}

async function until(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function outOfSync(url: string, fleet: SimulatedDevice[]): Promise<string[]> {
  const reader = await PgHubStore.open(url, { keyring, poolSize: 1 });
  try {
    const views = fleet.map((d) => ({ d, keys: d.host.keys }));
    const rows = new Map((await reader.loadDevices()).map((row) => [row.deviceId, row]));
    return views.flatMap(({ d, keys }) => {
      const row = rows.get(d.deviceId);
      const problem = row === undefined ? 'missing' : syncProblem(keys, row);
      return problem === undefined ? [] : [`${d.deviceId}: ${problem}`];
    });
  } finally {
    await reader.close();
  }
}

test('rotations while every reconnection lands on a random instance: the lease moves, all in sync', async () => {
  const url = await freshDatabase(cluster);
  const { instances, balancer } = await tier(url, 3);
  const fleet: SimulatedDevice[] = [];
  for (let i = 0; i < 6; i++) fleet.push(await addDevice(instances[i % 3] as PgLockstepHub, () => balancer.port));
  await until(() => fleet.every((d) => d.host.online), 'devices online');
  for (let round = 0; round < 4; round++) {
    for (const d of fleet) await instances[round % 3]!.rotate(d.deviceId);
    await until(async () => (await outOfSync(url, fleet)).length === 0 && fleet.every((d) => d.host.keys.active.id >= round + 2 && d.host.keys.future === undefined), `round ${round}`, 15_000);
    const leasesBefore = instances.reduce((n, hub) => n + hub.stats().leasesTaken, 0);
    balancer.dropAll(); // every device reconnects, to a random instance, and takes a new lease there
    await until(() => instances.reduce((n, hub) => n + hub.stats().leasesTaken, 0) >= leasesBefore + fleet.length && fleet.every((d) => d.host.online), 'devices back online');
  }
  expect(await outOfSync(url, fleet)).toEqual([]);
  const leased = instances.flatMap((hub) => hub.leasedDevices);
  expect(new Set(leased).size).toBe(leased.length); // one holder per device at a time
  expect(instances.reduce((n, hub) => n + hub.stats().leasesTaken, 0)).toBeGreaterThanOrEqual(fleet.length * 5);
}, 60_000);

test('the newest authenticated connection wins: the instance that lost the lease closes its connection and writes nothing', async () => {
  const url = await freshDatabase(cluster);
  const a = await startHub(url);
  const b = await startHub(url);
  let target = a;
  const device = await addDevice(a, () => target.addresses[0]?.port as number);
  await until(() => onlineAt(a, device.deviceId), 'on a');
  expect(a.leasedDevices).toEqual([device.deviceId]);
  // A second connection of the same device via B (the device re-dials there).
  target = b;
  device.powerCycle();
  await until(() => onlineAt(b, device.deviceId), 'on b');
  await until(() => !onlineAt(a, device.deviceId) && a.leasedDevices.length === 0, 'a gave up the lease');
  // A is asked to rotate: it does not serve the device, so the request goes to the row and B carries it out.
  expect(await a.rotate(device.deviceId)).toBe('queued');
  await until(() => device.host.keys.active.id === 2 && device.host.keys.future === undefined, 'b rotated');
  expect(a.stats().commitOps).toBe(0);
  expect(await outOfSync(url, [device])).toEqual([]);
}, 30_000);

test('a HELLO that does not authenticate (or of another session) moves no lease', async () => {
  const url = await freshDatabase(cluster);
  const a = await startHub(url);
  const b = await startHub(url);
  const device = await addDevice(a, () => a.addresses[0]?.port as number);
  await until(() => onlineAt(a, device.deviceId), 'on a');
  const before = (await sql(url, 'SELECT epoch FROM devices')).rows[0].epoch;
  // A forged HELLO naming the device on B: header right, tag wrong.
  await forgedHello(b.addresses[0]?.port as number, device.deviceId);
  expect(b.stats().leaseRefused).toBeGreaterThanOrEqual(1);
  expect((await sql(url, 'SELECT epoch FROM devices')).rows[0].epoch).toBe(before);
  expect(a.deviceState(device.deviceId).connected).toBe(true);
}, 30_000);

test('database sessions terminated and PostgreSQL restarted mid-rotation: no rotation lost, all in sync afterwards', async () => {
  const url = await freshDatabase(cluster);
  const { instances, balancer } = await tier(url, 2, { rotation: { intervalMs: 300, jitterMs: 0 } });
  const fleet: SimulatedDevice[] = [];
  for (let i = 0; i < 8; i++) fleet.push(await addDevice(instances[i % 2] as PgLockstepHub, () => balancer.port));
  await until(() => fleet.every((d) => d.host.keys.active.id >= 2), 'first rotations', 20_000);
  await sql(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()");
  await until(() => fleet.every((d) => d.host.keys.active.id >= 3), 'rotations after terminate', 20_000);
  const rotationsBefore = await sql(url, 'SELECT device_id, rotations FROM devices');
  cluster.restart();
  await until(() => fleet.every((d) => d.host.keys.active.id >= 5), 'rotations after the restart', 30_000);
  const after = new Map((await sql(url, 'SELECT device_id, rotations FROM devices')).rows.map((r: { device_id: string; rotations: number }) => [r.device_id, Number(r.rotations)]));
  for (const row of rotationsBefore.rows as { device_id: string; rotations: string }[]) expect(after.get(row.device_id)).toBeGreaterThanOrEqual(Number(row.rotations));
  for (const hub of instances) hub.setRotationPolicy({ intervalMs: 0 });
  await until(async () => (await outOfSync(url, fleet)).length === 0, 'in sync', 15_000);
}, 90_000);

test('dh rekey mode across instances: every reconnection on a random instance, rotations derive the same keys, all in sync', async () => {
  const url = await freshDatabase(cluster);
  const { instances, balancer } = await tier(url, 2);
  const fleet: SimulatedDevice[] = [];
  for (let i = 0; i < 4; i++) {
    const record = newDeviceRecord(1, 'dh');
    const flash = memoryFlash();
    new Keystore(flash).format(fromHex(record.deviceId), record.active, 'dh');
    await instances[i % 2]!.provision(record);
    const device = new SimulatedDevice(
      { record, recordJson: toHubRecordJson(record), flash: new CuttableFlash(flash) },
      { endpoint: () => ({ host: '127.0.0.1', port: balancer.port }), host: { reconnectInitialMs: 20, reconnectMaxMs: 200 } },
    );
    devices.push(device);
    device.start();
    fleet.push(device);
  }
  await until(() => fleet.every((d) => d.host.online), 'online');
  for (let round = 0; round < 3; round++) {
    for (const d of fleet) await instances[round % 2]!.rotate(d.deviceId);
    await until(async () => (await outOfSync(url, fleet)).length === 0 && fleet.every((d) => d.host.keys.active.id >= round + 2 && d.host.keys.future === undefined), `dh round ${round}`, 15_000);
    const leasesBefore = instances.reduce((n, hub) => n + hub.stats().leasesTaken, 0);
    balancer.dropAll();
    await until(() => instances.reduce((n, hub) => n + hub.stats().leasesTaken, 0) >= leasesBefore + fleet.length && fleet.every((d) => d.host.online), 'back online');
  }
  expect(fleet.every((d) => d.host.keys.mode === 'dh')).toBe(true);
  expect(await outOfSync(url, fleet)).toEqual([]);
}, 60_000);

test('a revocation on one instance reaches the others: the serving one closes the connection, and no instance leases the device again', async () => {
  const url = await freshDatabase(cluster);
  const { instances, balancer } = await tier(url, 3);
  const [a, b] = instances as [PgLockstepHub, PgLockstepHub, PgLockstepHub];
  let target = b;
  const device = await addDevice(a, () => target.addresses[0]?.port as number);
  const bystander = await addDevice(a, () => balancer.port);
  await until(() => onlineAt(b, device.deviceId) && bystander.host.online, 'the device on b');
  await until(() => instances.every((hub) => hub.deviceIds.includes(device.deviceId)), 'every instance knows the device');
  const revoked: string[] = [];
  for (const hub of instances) hub.on('deviceRevoked', ({ deviceId }) => revoked.push(deviceId));
  // Revoked through a (the device is served by b).
  expect(await a.revoke(device.deviceId, 'test:admin', 'stolen')).toMatchObject({ deviceId: device.deviceId });
  await until(() => instances.every((hub) => !hub.hasDevice(device.deviceId)) && !device.host.online, 'every instance dropped it');
  expect(revoked.sort()).toEqual([device.deviceId, device.deviceId, device.deviceId]);
  expect(b.leasedDevices).not.toContain(device.deviceId);
  // It keeps dialling, now to a third instance: every HELLO is refused, no lease taken.
  target = instances[2] as PgLockstepHub;
  const leases = instances.reduce((n, hub) => n + hub.stats().leasesTaken, 0);
  const refused = instances.reduce((n, hub) => n + hub.stats().leaseRefused, 0);
  await until(() => instances.reduce((n, hub) => n + hub.stats().leaseRefused, 0) >= refused + 3, 'reconnections refused');
  expect(device.host.online).toBe(false);
  expect(instances.reduce((n, hub) => n + hub.stats().leasesTaken, 0)).toBe(leases);
  expect(bystander.host.online).toBe(true);
  expect((await sql(url, "SELECT action, actor FROM audit_log WHERE action = 'device.revoke'")).rows).toEqual([{ action: 'device.revoke', actor: 'test:admin' }]);
  await expect(a.provision({ ...newDeviceRecord(), deviceId: device.deviceId })).rejects.toThrow(/revoked/);
}, 30_000);

test('broken variant: an instance that does not follow revocations made elsewhere keeps the revoked device and its keys', async () => {
  const url = await freshDatabase(cluster);
  const a = await startHub(url);
  const b = await startHub(url, { followRevocations: false, leaseSweepMs: 100 });
  const device = await addDevice(a, () => b.addresses[0]?.port as number);
  await until(() => onlineAt(b, device.deviceId), 'the device on b');
  await a.revoke(device.deviceId, 'test:admin');
  await until(() => !a.hasDevice(device.deviceId), 'a dropped it');
  // The lease still protects the connection (the row is gone, so b's lease sweep drops it and no lease is taken again)...
  await until(() => !device.host.online, 'disconnected by the lost lease');
  await new Promise((resolve) => setTimeout(resolve, 500)); // (several control polls of b)
  // ...but b keeps serving the device in its core: the revoked device's keys stay in memory, and send() still queues for it.
  expect(b.hasDevice(device.deviceId)).toBe(true);
  expect(b.deviceKeys(device.deviceId).active.key).toEqual(device.host.keys.active.key);
  expect(() => b.send(device.deviceId, Buffer.from('to a revoked device'))).not.toThrow();
  expect(() => a.send(device.deviceId, Buffer.from('to a revoked device'))).toThrow(expect.objectContaining({ code: 'UNKNOWN_DEVICE' }));
}, 30_000);
