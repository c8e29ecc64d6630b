/**
 * The same suite on both backends (docs/HUB.md §13): the storage interface
 * (tools/hub/storage.ts) and the hub started by `startHub` from a SQLite
 * path or a postgres:// URL. Storage: devices in and out, all-or-none
 * inserts, the conditional key-slot writes, the durable rotation request,
 * last-seen, KEK versions in use. Hub: data both ways with delivery ids,
 * rotate results, a rotation asked through the database, a restart from
 * the database with the device still in sync.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Keyring } from '../tools/hub/kek';
import type { ThrowawayCluster } from '../tools/hub/postgres/cluster';
import type { PgHubStore } from '../tools/hub/postgres/store';
import { newDeviceRecord } from '../tools/hub/records';
import { openStorage, startHub, type AnyHub, type Backend, type HubStorage } from '../tools/hub/storage';
import { provisionSimulatedDevice, SimulatedDevice } from '../tools/demo/fleet';
import { syncProblem } from '../tools/demo/sync-check';
import { freshDatabase, startCluster } from './support/postgres';

let cluster: ThrowawayCluster;
let dir: string;
const keyring = Keyring.ephemeral();
const cleanup: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  cluster = await startCluster();
}, 60_000);
afterAll(() => cluster?.stop());
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-backends-'));
});
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
  rmSync(dir, { recursive: true, force: true });
});

async function database(backend: Backend): Promise<string> {
  return backend === 'sqlite' ? join(dir, 'hub.db') : freshDatabase(cluster);
}

/** SQLite: the default keyring file next to the database (created with it); PostgreSQL: the test's keyring. */
function keyringFor(url: string): { keyring?: Keyring } {
  return url.startsWith('postgres') ? { keyring } : {};
}

async function storage(url: string): Promise<HubStorage> {
  const opened = await openStorage(url, { ...keyringFor(url), poolSize: 2 });
  cleanup.push(() => opened.close());
  return opened;
}

async function hubOn(url: string): Promise<AnyHub> {
  const hub = await startHub({ database: url, store: { ...keyringFor(url), poolSize: 4 }, tcp: { port: 0 }, tickMs: 50, controlPollMs: 100 });
  cleanup.push(() => hub.close());
  return hub;
}

function deviceFor(hub: () => AnyHub, provisioned = provisionSimulatedDevice()): SimulatedDevice {
  const device = new SimulatedDevice(provisioned, {
    endpoint: () => ({ host: '127.0.0.1', port: hub().addresses[0]?.port as number }),
    host: { reconnectInitialMs: 20, reconnectMaxMs: 200 },
  });
  cleanup.push(() => device.stop());
  return device;
}

async function until(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const key = (fill: number) => new Uint8Array(64).fill(fill);

describe.each(['sqlite', 'postgres'] as const)('%s', (backend) => {
  test('storage: devices, all-or-none inserts, conditional key-slot writes, rotation requests, last seen, KEK versions', async () => {
    const store = await storage(await database(backend));
    expect(store.backend).toBe(backend);
    const [a, b] = [newDeviceRecord(), newDeviceRecord()];
    await store.insertDevices([a], 1);
    await expect(store.insertDevices([b, a], 2)).rejects.toMatchObject({ code: 'LOCAL_BAD_ARGUMENT' });
    expect((await store.listDevices()).map((d) => d.deviceId)).toEqual([a.deviceId]);
    expect(Buffer.from((await store.getDevice(a.deviceId))!.active.key)).toEqual(Buffer.from(a.active.key));

    // On PostgreSQL a write needs the lease's fence; SQLite's one hub holds every lease.
    let fences = new Map();
    if (backend === 'postgres') {
      const lease = await (store as unknown as { store: PgHubStore }).store.lease(a.deviceId);
      fences = new Map([[a.deviceId, lease!.fence]]);
    }
    expect(await store.commit([{ kind: 'storePending', deviceId: a.deviceId, id: 3, key: key(3) }], 3, fences)).toEqual([false]); // not active + 1
    expect(await store.commit([{ kind: 'storePending', deviceId: a.deviceId, id: 2, key: key(2) }], 3, fences)).toEqual([true]);
    expect(await store.commit([{ kind: 'storePending', deviceId: a.deviceId, id: 2, key: key(9) }], 4, fences)).toEqual([false]); // never replaced
    expect(await store.commit([{ kind: 'promote', deviceId: a.deviceId, id: 5 }], 5, fences)).toEqual([false]);
    expect(await store.commit([{ kind: 'promote', deviceId: a.deviceId, id: 2 }], 5, fences)).toEqual([true]);
    const row = (await store.getDevice(a.deviceId))!;
    expect([row.active.id, row.pending, row.rotations]).toEqual([2, undefined, 1]);
    expect(Buffer.from(row.active.key)).toEqual(Buffer.from(key(2)));

    expect(await store.requestRotation(a.deviceId, 6)).toBe(true);
    expect(await store.requestRotation('00000000000000ff', 6)).toBe(false);
    expect(await store.rotationRequests()).toEqual([a.deviceId]);
    await store.touch(new Map([[a.deviceId, 77]]));
    expect((await store.listDevices())[0]?.lastSeenAt).toBe(77);
    expect(await store.kekVersionsInUse()).toEqual([1]);
  });

  test('hub: data both ways with delivery ids; rotate; a rotation asked through the database; restart from the database in sync', async () => {
    const url = await database(backend);
    let hub = await hubOn(url);
    const provisioned = provisionSimulatedDevice();
    await hub.provision(provisioned.record);
    const device = deviceFor(() => hub, provisioned);
    const received: string[] = [];
    hub.on('data', ({ payload }) => received.push(Buffer.from(payload).toString()));
    const delivered: number[] = [];
    hub.on('delivered', ({ messageId }) => delivered.push(messageId));
    device.start();
    await until(() => hub.deviceState(device.deviceId).connected, 'connected');
    device.host.send(Buffer.from('up-1'));
    const id = hub.send(device.deviceId, Buffer.from('down-1'));
    await until(() => received.includes('up-1') && delivered.includes(id), 'data both ways');

    expect(await hub.rotate(device.deviceId)).toBe('started');
    await until(() => device.host.keys.active.id === 2 && device.host.keys.future === undefined, 'rotated');

    const store = await storage(url);
    expect(await store.requestRotation(device.deviceId, Date.now())).toBe(true);
    await until(() => device.host.keys.active.id === 3 && device.host.keys.future === undefined, 'rotated on request');
    await until(async () => (await store.rotationRequests()).length === 0, 'request cleared');

    await hub.close();
    hub = await hubOn(url);
    await until(() => hub.deviceState(device.deviceId).connected, 'reconnected after the restart');
    expect(await hub.rotate(device.deviceId)).toBe('started');
    await until(() => device.host.keys.active.id === 4 && device.host.keys.future === undefined, 'rotated after the restart');
    const row = (await store.getDevice(device.deviceId))!;
    expect(syncProblem(device.host.keys, row)).toBeUndefined();
  }, 30_000);
});
