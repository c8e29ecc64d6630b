/**
 * The hub's library API over real loopback sockets: provisioning, data both
 * ways with delivery ids, rotation results, sends deferred across a commit,
 * count-based rotation, requests from the CLI, a write that does not apply,
 * the exclusive lock, restart from the database, the connection cap.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isLockstepError } from '../modules/errors';
import { LockstepHub } from '../tools/hub/server';
import { HubStore } from '../tools/hub/store';
import { newDeviceRecord, parseHubRecord } from '../tools/hub/records';
import { provisionDevice } from '../tools/provision/provision';
import { CuttableFlash } from '../tools/testing/cuttable-flash';
import { FileFlash } from '../hosts/node/flash-file';
import { Keystore } from '../modules/keystore/keystore';
import { provisionSimulatedDevice, SimulatedDevice } from '../tools/demo/fleet';

let dir: string;
const hubs: LockstepHub[] = [];
const devices: SimulatedDevice[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-hub-'));
});
afterEach(async () => {
  for (const device of devices.splice(0)) device.stop();
  for (const hub of hubs.splice(0)) await hub.close();
  rmSync(dir, { recursive: true, force: true });
});

async function startHub(options: Partial<Parameters<typeof LockstepHub.start>[0]> = {}): Promise<LockstepHub> {
  const hub = await LockstepHub.start({ database: join(dir, 'hub.db'), tcp: { port: 0 }, tickMs: 50, controlPollMs: 100, ...options });
  hubs.push(hub);
  return hub;
}

function addDevice(hub: LockstepHub): SimulatedDevice {
  const provisioned = provisionSimulatedDevice();
  hub.provision(provisioned.record);
  const device = new SimulatedDevice(provisioned, {
    endpoint: () => ({ host: '127.0.0.1', port: hub.addresses[0]?.port as number }),
    host: { reconnectInitialMs: 20, reconnectMaxMs: 200 },
  });
  devices.push(device);
  device.start();
  return device;
}

async function until(predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test('data both ways; send() ids match delivered events', async () => {
  const hub = await startHub();
  const device = addDevice(hub);
  const up: string[] = [];
  const down: string[] = [];
  const delivered: number[] = [];
  hub.on('data', ({ deviceId, payload }) => deviceId === device.deviceId && up.push(Buffer.from(payload).toString()));
  hub.on('delivered', ({ messageId }) => delivered.push(messageId));
  device.host.on('data', ({ payload }) => down.push(Buffer.from(payload).toString()));
  await until(() => device.host.online, 'device online');
  const ids = [hub.send(device.deviceId, Buffer.from('a')), hub.send(device.deviceId, Buffer.from('b'))];
  device.host.send(Buffer.from('x'));
  await until(() => down.length === 2 && up.length === 1 && delivered.length === 2, 'delivery');
  expect(down).toEqual(['a', 'b']);
  expect(up).toEqual(['x']);
  expect(delivered).toEqual(ids);
  expect(hub.deviceState(device.deviceId)).toMatchObject({ connected: true, activeKeyId: 1, pendingKeyId: undefined, outboxLength: 0 });
});

test('rotate(): started, or queued behind a rotation in flight (never replacing an unconfirmed key)', async () => {
  const hub = await startHub();
  const device = addDevice(hub);
  await until(() => device.host.online, 'device online');
  const confirmed: number[] = [];
  hub.on('keyConfirmed', ({ keyId }) => confirmed.push(keyId));
  expect(hub.rotate(device.deviceId)).toBe('started');
  expect(hub.rotate(device.deviceId)).toBe('queued'); // starts once key 2 is confirmed
  await until(() => confirmed.length === 2, 'two rotations');
  expect(confirmed).toEqual([2, 3]);
  await until(() => device.host.keys.active.id === 3, 'the device promotes on the CONFIRM');
  // Offline: the pending key waits for the device, and is never replaced meanwhile.
  device.host.stop();
  await until(() => !hub.deviceState(device.deviceId).connected, 'device offline');
  expect(hub.rotate(device.deviceId)).toBe('started');
  await until(() => hub.deviceState(device.deviceId).pendingKeyId === 4, 'pending durable');
  // A dh pending slot (the default mode): the hub's ephemeral pair, which must not change either.
  const pending = hub.store.getDevice(device.deviceId)?.pending;
  expect(pending?.id).toBe(4);
  expect(pending?.dh?.publicKey).toHaveLength(32);
  expect(hub.rotate(device.deviceId)).toBe('queued');
  await new Promise((resolve) => setTimeout(resolve, 200));
  expect(hub.store.getDevice(device.deviceId)?.pending).toEqual(pending);
  device.host.start();
  await until(() => confirmed.length === 4, 'the pending and the queued rotation after reconnect');
  expect(confirmed).toEqual([2, 3, 4, 5]);
  expect(hub.store.getDevice(device.deviceId)?.active.id).toBe(5);
});

test('data sent while a commit is outstanding goes out as soon as it completes', async () => {
  const hub = await startHub();
  const device = addDevice(hub);
  const down: string[] = [];
  device.host.on('data', ({ payload }) => down.push(Buffer.from(payload).toString()));
  await until(() => device.host.online, 'device online');
  hub.rotate(device.deviceId);
  hub.send(device.deviceId, Buffer.from('during commit'));
  await until(() => down.length === 1, 'the deferred message', 2000);
  expect(down).toEqual(['during commit']);
});

test('unknown devices and a full outbox are typed errors', async () => {
  const hub = await startHub();
  expect(() => hub.send('0000000000000000', new Uint8Array(1))).toThrow(expect.objectContaining({ code: 'UNKNOWN_DEVICE' }));
  const record = hub.provision();
  for (let i = 0; i < 8; i++) hub.send(record.deviceId, new Uint8Array([i]));
  let error: unknown;
  try {
    hub.send(record.deviceId, new Uint8Array([9]));
  } catch (caught) {
    error = caught;
  }
  expect(isLockstepError(error, 'LOCAL_OUTBOX_FULL')).toBe(true);
});

test('rotation after N application messages', async () => {
  const hub = await startHub({ rotation: { maxMessages: 5 } });
  const device = addDevice(hub);
  await until(() => device.host.online, 'device online');
  for (let i = 0; i < 5; i++) device.host.send(Buffer.from([i]));
  await until(() => hub.deviceState(device.deviceId).activeKeyId === 2, 'count-based rotation');
});

test('the serving hub picks up devices provisioned and rotations requested by another process', async () => {
  const hub = await startHub();
  const device = addDevice(hub);
  await until(() => device.host.online, 'device online');
  const cli = new HubStore(join(dir, 'hub.db'));
  const added = newDeviceRecord();
  cli.insertDevice(added, Date.now());
  cli.requestRotation(device.deviceId, Date.now());
  cli.close();
  await until(() => hub.deviceIds.includes(added.deviceId), 'new device registered');
  await until(() => device.host.keys.active.id === 2, 'requested rotation confirmed');
  expect(hub.store.getDevice(device.deviceId)?.rotateRequestedAt).toBeUndefined();
});

test('a commit that does not apply reloads the device from the database', async () => {
  const hub = await startHub();
  const record = hub.provision();
  // Another writer (say, a second hub on the same file) stored a pending key behind this hub's back.
  // (Through a second store: keys are stored wrapped under the database's KEK.)
  const other = new HubStore(join(dir, 'hub.db'));
  expect(other.commit([{ kind: 'storePending', deviceId: record.deviceId, id: 2, key: new Uint8Array(64).fill(7) }], Date.now())).toEqual([true]);
  other.close();
  const errors: string[] = [];
  hub.on('storageError', ({ deviceId }) => errors.push(deviceId));
  expect(hub.rotate(record.deviceId)).toBe('started');
  await until(() => errors.length === 1, 'storage error');
  const keys = hub.deviceKeys(record.deviceId);
  expect(keys.pending?.id).toBe(2);
  expect(keys.pending?.key).toEqual(new Uint8Array(64).fill(7));
});

test('one hub per database; a restarted hub serves the same devices from the database', async () => {
  const hub = await startHub();
  const device = addDevice(hub);
  await until(() => device.host.online, 'device online');
  hub.rotate(device.deviceId);
  await until(() => device.host.keys.active.id === 2, 'rotation');
  await expect(LockstepHub.start({ database: join(dir, 'hub.db'), tcp: { port: 0 } })).rejects.toMatchObject({ code: 'LOCAL_DATABASE_LOCKED' });
  const port = hub.addresses[0]?.port as number;
  await hub.close();
  hubs.splice(hubs.indexOf(hub), 1);
  const restarted = await startHub({ tcp: { port } });
  expect(restarted.deviceKeys(device.deviceId).active.id).toBe(2);
  await until(() => restarted.deviceState(device.deviceId).connected, 'device reconnected');
  restarted.rotate(device.deviceId);
  await until(() => device.host.keys.active.id === 3, 'rotation after restart');
});

test('at the connection cap a pre-authentication connection gives way to the new one', async () => {
  const hub = await startHub({ limits: { maxConnections: 3 } });
  const port = hub.addresses[0]?.port as number;
  const sockets = Array.from({ length: 5 }, () => connect({ host: '127.0.0.1', port }));
  const closed = sockets.map((s) => new Promise<boolean>((resolve) => s.once('close', () => resolve(true))));
  for (const s of sockets) s.on('error', () => {});
  await until(() => hub.stats().evicted === 2, 'two evicted');
  expect(hub.stats().refused).toBe(0);
  expect(hub.stats().connections).toBe(3);
  for (const s of sockets) s.destroy();
  await Promise.all(closed);
});

test('a device whose keystore image is key-wrapped (provision --key-wrap) rotates and keeps its keys across reboots', async () => {
  const hub = await startHub();
  const result = provisionDevice({ outDir: join(dir, 'wrapped'), keyWrap: true });
  const record = hub.provision(parseHubRecord(result.record));
  const keyWrapImage = new Uint8Array(readFileSync(join(dir, 'wrapped', 'keywrap.bin')));
  const flash = new CuttableFlash(new FileFlash(result.imagePath, { create: false }));
  const device = new SimulatedDevice({ record, recordJson: result.record, flash }, {
    endpoint: () => ({ host: '127.0.0.1', port: hub.addresses[0]?.port as number }),
    host: { reconnectInitialMs: 20, reconnectMaxMs: 200 },
    keyWrapImage,
  });
  devices.push(device);
  device.start();
  await until(() => device.host.online, 'device online');
  hub.rotate(device.deviceId);
  await until(() => device.host.keys.active.id === 2, 'rotation');
  device.host.powerCycle();
  await until(() => device.host.online, 'back online after the reboot');
  expect(device.host.keys.active.id).toBe(2);
  // The journal holds the key wrapped: read without the KWK it is not the key the hub shares.
  const plain = new Keystore(flash).mount();
  if (!plain.provisioned) throw new Error('the journal does not mount');
  expect(plain.keys.active.id).toBe(2);
  expect(plain.keys.active.key).not.toEqual(hub.deviceKeys(device.deviceId).active.key);
  device.stop();
  device.close();
  devices.splice(devices.indexOf(device), 1);
});
