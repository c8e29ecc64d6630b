/**
 * The hub's library API over real loopback sockets, on both backends (a
 * SQLite hub, and one PostgreSQL instance: tools/hub/storage.ts startHub):
 * provisioning, data both ways with delivery ids, rotation results, sends
 * deferred across a commit, count-based rotation, devices and requests from
 * another process, a write that does not apply, restart from the database,
 * the connection cap, a key-wrapped keystore, revocation and the audit
 * trail. Where the backends differ by design the test says how:
 * - rotate() of a device that is offline: SQLite's one hub starts it (the
 *   pending key waits for the device); a PostgreSQL instance does not hold
 *   the device's lease while it is offline, so the request is durable in
 *   the row (`queued`) and the instance that serves it next carries it out;
 * - a write that does not apply: on SQLite another writer on the file, on
 *   PostgreSQL another instance that took the lease;
 * - the serving-hub lock exists on SQLite only (PostgreSQL runs many
 *   instances: tests/hub-postgres-server.test.ts).
 */
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fromHex } from '../modules/bytes';
import { isLockstepError } from '../modules/errors';
import { Keystore } from '../modules/keystore/keystore';
import { memoryFlash } from '../hosts/node/flash-memory';
import { FileFlash } from '../hosts/node/flash-file';
import { LockstepHub } from '../tools/hub/server';
import { PgHubStore } from '../tools/hub/postgres/store';
import { newDeviceRecord, parseHubRecord, toHubRecordJson, type DeviceRecord } from '../tools/hub/records';
import type { AnyHub, Backend } from '../tools/hub/storage';
import { provisionDevice } from '../tools/provision/provision';
import { CuttableFlash } from '../tools/testing/cuttable-flash';
import { provisionSimulatedDevice, SimulatedDevice, type ProvisionedDevice } from '../tools/demo/fleet';
import { syncProblem } from '../tools/demo/sync-check';
import { BACKENDS, useBackends } from './support/backends';

const both = useBackends();

function deviceOn(hub: () => AnyHub, provisioned: ProvisionedDevice = provisionSimulatedDevice(), start = true): SimulatedDevice {
  const device = new SimulatedDevice(provisioned, {
    endpoint: () => ({ host: '127.0.0.1', port: hub().addresses[0]?.port as number }),
    host: { reconnectInitialMs: 20, reconnectMaxMs: 200 },
  });
  both.later(() => device.stop());
  if (start) device.start();
  return device;
}

async function addDevice(hub: AnyHub): Promise<SimulatedDevice> {
  const provisioned = provisionSimulatedDevice();
  await hub.provision(provisioned.record);
  return deviceOn(() => hub, provisioned);
}

/** A device of the classic rekey mode (its keystore formatted so). */
function classicDevice(): ProvisionedDevice {
  const record = newDeviceRecord(1, 'classic');
  const flash = memoryFlash();
  new Keystore(flash).format(fromHex(record.deviceId), record.active, 'classic');
  return { record, recordJson: toHubRecordJson(record), flash: new CuttableFlash(flash) };
}

async function until(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe.each(BACKENDS)('%s', (backend: Backend) => {
  let url: string;
  beforeEach(async () => {
    url = await both.database(backend);
  });
  const startHub = (options: Record<string, unknown> = {}): Promise<AnyHub> => both.hub(url, options);

  test('data both ways; send() ids match delivered events', async () => {
    const hub = await startHub();
    const device = await addDevice(hub);
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

  test('rotate(): started, or queued behind a rotation in flight (never replacing an unconfirmed key); offline as each backend defines it', async () => {
    const hub = await startHub();
    const device = await addDevice(hub);
    const storage = await both.storage(url);
    await until(() => device.host.online && hub.deviceState(device.deviceId).connected, 'device online');
    const confirmed: number[] = [];
    hub.on('keyConfirmed', ({ keyId }) => confirmed.push(keyId));
    expect(await hub.rotate(device.deviceId)).toBe('started');
    expect(await hub.rotate(device.deviceId)).toBe('queued'); // starts once key 2 is confirmed
    await until(() => confirmed.length === 2, 'two rotations');
    expect(confirmed).toEqual([2, 3]);
    await until(() => device.host.keys.active.id === 3, 'the device promotes on the CONFIRM');
    device.host.stop();
    await until(() => !hub.deviceState(device.deviceId).connected, 'device offline');
    if (backend === 'sqlite') {
      // The pending key waits for the device, and is never replaced meanwhile.
      expect(await hub.rotate(device.deviceId)).toBe('started');
      await until(() => hub.deviceState(device.deviceId).pendingKeyId === 4, 'pending durable');
      // A dh pending slot (the default mode): the hub's ephemeral pair, which must not change either.
      const pending = (await storage.getDevice(device.deviceId))?.pending;
      expect(pending?.id).toBe(4);
      expect(pending?.dh?.publicKey).toHaveLength(32);
      expect(await hub.rotate(device.deviceId)).toBe('queued');
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect((await storage.getDevice(device.deviceId))?.pending).toEqual(pending);
      device.host.start();
      await until(() => confirmed.length === 4, 'the pending and the queued rotation after reconnect');
      expect(confirmed).toEqual([2, 3, 4, 5]);
      expect((await storage.getDevice(device.deviceId))?.active.id).toBe(5);
    } else {
      // No lease while offline: a durable request in the row, nothing stored or offered until a lease reloads it.
      expect(await hub.rotate(device.deviceId)).toBe('queued');
      expect(await hub.rotate(device.deviceId)).toBe('queued'); // the same request (one rotation)
      await new Promise((resolve) => setTimeout(resolve, 200));
      const row = await storage.getDevice(device.deviceId);
      expect([row?.pending, row?.rotateRequestedAt !== undefined]).toEqual([undefined, true]);
      device.host.start();
      await until(() => confirmed.length === 3 && device.host.keys.active.id === 4, 'the requested rotation after reconnect');
      expect(confirmed).toEqual([2, 3, 4]);
      expect((await storage.getDevice(device.deviceId))?.rotateRequestedAt).toBeUndefined();
    }
  });

  test('data sent while a commit is outstanding goes out as soon as it completes', async () => {
    const hub = await startHub();
    const device = await addDevice(hub);
    const down: string[] = [];
    device.host.on('data', ({ payload }) => down.push(Buffer.from(payload).toString()));
    await until(() => device.host.online && hub.deviceState(device.deviceId).connected, 'device online');
    await hub.rotate(device.deviceId);
    hub.send(device.deviceId, Buffer.from('during commit'));
    await until(() => down.length === 1, 'the deferred message', 5000);
    expect(down).toEqual(['during commit']);
  });

  test('unknown devices and a full outbox are typed errors', async () => {
    const hub = await startHub();
    expect(() => hub.send('0000000000000000', new Uint8Array(1))).toThrow(expect.objectContaining({ code: 'UNKNOWN_DEVICE' }));
    await expect(Promise.resolve().then(() => hub.rotate('0000000000000000'))).rejects.toMatchObject({ code: 'UNKNOWN_DEVICE' });
    const record = await hub.provision();
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
    const device = await addDevice(hub);
    await until(() => device.host.online && hub.deviceState(device.deviceId).connected, 'device online');
    for (let i = 0; i < 5; i++) device.host.send(Buffer.from([i]));
    await until(() => hub.deviceState(device.deviceId).activeKeyId === 2, 'count-based rotation');
  });

  test('the serving hub picks up devices provisioned and rotations requested by another process', async () => {
    const hub = await startHub();
    const device = await addDevice(hub);
    await until(() => device.host.online && hub.deviceState(device.deviceId).connected, 'device online');
    const cli = await both.storage(url);
    const added = newDeviceRecord();
    await cli.insertDevices([added], Date.now());
    await cli.requestRotation(device.deviceId, Date.now());
    await until(() => hub.deviceIds.includes(added.deviceId), 'new device registered');
    await until(() => device.host.keys.active.id === 2, 'requested rotation confirmed');
    await until(async () => (await cli.getDevice(device.deviceId))?.rotateRequestedAt === undefined, 'request cleared');
  });

  test('a write that does not apply: the hub reloads the device from the database', async () => {
    const other = newDeviceRecord().active.key.fill(7);
    if (backend === 'sqlite') {
      const hub = await startHub();
      const record = (await hub.provision()) as DeviceRecord;
      // Another writer (say, a second hub on the same file) stored a pending key behind this hub's back.
      // (Through a second store: keys are stored wrapped under the database's KEK.)
      const writer = await both.storage(url);
      expect(await writer.commit([{ kind: 'storePending', deviceId: record.deviceId, id: 2, key: other }], Date.now())).toEqual([true]);
      const errors: string[] = [];
      hub.on('storageError', ({ deviceId }) => errors.push(deviceId));
      expect(await hub.rotate(record.deviceId)).toBe('started');
      await until(() => errors.length === 1, 'storage error');
      const keys = hub.deviceKeys(record.deviceId);
      expect(keys.pending?.id).toBe(2);
      expect(keys.pending?.key).toEqual(other);
      return;
    }
    // PostgreSQL: another instance took the device's lease (a newer epoch) and stored its pending key 2.
    // This instance's writes no longer apply; it drops the device's connection (the lease's NOTIFY here:
    // the control poll is slowed down so that it does not get there first), and its next lease reloads
    // the row: it offers the other instance's key 2, which the device takes.
    const hub = await startHub({ controlPollMs: 60_000 });
    const provisioned = classicDevice();
    await hub.provision(provisioned.record);
    const device = deviceOn(() => hub, provisioned);
    await until(() => hub.deviceState(device.deviceId).connected, 'device online');
    const leasesBefore = (hub as { stats(): { leasesTaken: number } }).stats().leasesTaken;
    const writer = await PgHubStore.open(url, { ...both.keyringFor(url), instance: 'other', poolSize: 1 });
    both.later(() => writer.close());
    const lease = await writer.lease(device.deviceId);
    expect(await writer.commit([{ kind: 'storePending', deviceId: device.deviceId, id: 2, key: other }], Date.now(), new Map([[device.deviceId, lease!.fence]]))).toEqual([true]);
    await until(() => (hub as { stats(): { leasesTaken: number } }).stats().leasesTaken > leasesBefore, 'a new lease after the loss');
    await until(() => device.host.keys.active.id === 2 && device.host.keys.future === undefined, 'the reloaded pending key confirmed');
    expect(device.host.keys.active.key).toEqual(other);
    expect(hub.deviceKeys(device.deviceId).active).toEqual({ id: 2, key: other });
    const storage = await both.storage(url);
    expect(syncProblem(device.host.keys, (await storage.getDevice(device.deviceId))!)).toBeUndefined();
  });

  test('a restarted hub serves the same devices from the database (SQLite: one hub per database)', async () => {
    const hub = await startHub();
    const device = await addDevice(hub);
    await until(() => device.host.online && hub.deviceState(device.deviceId).connected, 'device online');
    await hub.rotate(device.deviceId);
    await until(() => device.host.keys.active.id === 2, 'rotation');
    // SQLite only: the serving-hub lock (PostgreSQL instances share the database by design).
    if (backend === 'sqlite') await expect(LockstepHub.start({ database: url, tcp: { port: 0 } })).rejects.toMatchObject({ code: 'LOCAL_DATABASE_LOCKED' });
    const port = hub.addresses[0]?.port as number;
    await hub.close();
    const restarted = await startHub({ tcp: { port } });
    expect(restarted.deviceKeys(device.deviceId).active.id).toBe(2);
    await until(() => restarted.deviceState(device.deviceId).connected, 'device reconnected');
    await restarted.rotate(device.deviceId);
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
    const result = provisionDevice({ outDir: join(both.dir, 'wrapped'), keyWrap: true });
    const record = await hub.provision(parseHubRecord(result.record));
    const keyWrapImage = new Uint8Array(readFileSync(join(both.dir, 'wrapped', 'keywrap.bin')));
    const flash = new CuttableFlash(new FileFlash(result.imagePath, { create: false }));
    const device = new SimulatedDevice({ record, recordJson: result.record, flash }, {
      endpoint: () => ({ host: '127.0.0.1', port: hub.addresses[0]?.port as number }),
      host: { reconnectInitialMs: 20, reconnectMaxMs: 200 },
      keyWrapImage,
    });
    both.later(() => {
      device.stop();
      device.close();
    });
    device.start();
    await until(() => device.host.online && hub.deviceState(device.deviceId).connected, 'device online');
    await hub.rotate(device.deviceId);
    await until(() => device.host.keys.active.id === 2, 'rotation');
    device.host.powerCycle();
    await until(() => device.host.online, 'back online after the reboot');
    expect(device.host.keys.active.id).toBe(2);
    // The journal holds the key wrapped: read without the KWK it is not the key the hub shares.
    const plain = new Keystore(flash).mount();
    if (!plain.provisioned) throw new Error('the journal does not mount');
    expect(plain.keys.active.id).toBe(2);
    expect(plain.keys.active.key).not.toEqual(hub.deviceKeys(device.deviceId).active.key);
  });

  test('revoke(): connections closed, reconnections refused, keys gone from the core and the database, the id refused; audited with the key events', async () => {
    const hub = await startHub();
    const provisioned = provisionSimulatedDevice();
    await hub.provision(provisioned.record);
    const device = deviceOn(() => hub, provisioned);
    const keep = await addDevice(hub);
    await until(() => [device, keep].every((d) => d.host.online && hub.deviceState(d.deviceId).connected), 'devices online');
    await hub.rotate(device.deviceId);
    await until(() => device.host.keys.active.id === 2 && device.host.keys.future === undefined, 'rotation');
    const revoked: string[] = [];
    hub.on('deviceRevoked', ({ deviceId }) => revoked.push(deviceId));
    const revocation = await hub.revoke(device.deviceId, 'test:admin', 'stolen');
    expect(revocation).toMatchObject({ deviceId: device.deviceId, actor: 'test:admin', reason: 'stolen', lastKeyId: 2 });
    expect(revoked).toEqual([device.deviceId]);
    expect(hub.hasDevice(device.deviceId)).toBe(false);
    expect(await hub.revoke(device.deviceId, 'test:admin')).toBeUndefined();
    await until(() => !device.host.online, 'the revoked device is disconnected');
    // It keeps dialling: every attempt is refused, and the other device is untouched.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(device.host.online).toBe(false);
    expect(keep.host.online && hub.deviceState(keep.deviceId).connected).toBe(true);
    const storage = await both.storage(url);
    expect(await storage.getDevice(device.deviceId)).toBeUndefined();
    await expect(Promise.resolve().then(() => hub.provision(provisioned.record))).rejects.toThrow(/revoked/);
    const trail = await storage.readAudit({ deviceId: device.deviceId });
    expect(trail.map((e) => [e.actor, e.action, e.outcome])).toEqual([
      ['test:admin', 'device.revoke', 'ok'],
      ['hub', 'rotation.confirm', 'ok'],
      ['hub', 'rotation.start', 'ok'],
    ]);
    await hub.audit({ actor: 'test:admin', action: 'device.rotate', deviceId: keep.deviceId, outcome: 'ok' });
    expect((await storage.readAudit({ deviceId: keep.deviceId, action: 'device.rotate' })).length).toBe(1);
  });

  test('revoke() while the device\'s rotation is being committed: no error, nothing left of it', async () => {
    const errors: string[] = [];
    const logger = { debug() {}, info() {}, warn() {}, error: (event: string) => errors.push(event), enabled: () => true };
    const hub = await startHub({ logger });
    const device = await addDevice(hub);
    await until(() => device.host.online && hub.deviceState(device.deviceId).connected, 'device online');
    expect(await hub.rotate(device.deviceId)).toBe('started');
    expect(hub.deviceState(device.deviceId).persisting).toBe(true);
    expect(await hub.revoke(device.deviceId, 'test:admin')).toBeDefined();
    await until(() => !device.host.online, 'disconnected');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(errors).toEqual([]);
    expect(hub.hasDevice(device.deviceId)).toBe(false);
    const storage = await both.storage(url);
    expect(await storage.getDevice(device.deviceId)).toBeUndefined();
    expect(await storage.listDevices()).toEqual([]);
  });

  test('a revocation written by another process (the CLI): the serving hub drops the device within a poll', async () => {
    const hub = await startHub();
    const device = await addDevice(hub);
    await until(() => device.host.online && hub.deviceState(device.deviceId).connected, 'device online');
    const cli = await both.storage(url);
    expect(await cli.revokeDevice(device.deviceId, 'cli:test', undefined, Date.now())).toBeDefined();
    await until(() => !hub.hasDevice(device.deviceId) && !device.host.online, 'dropped by the serving hub');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(device.host.online).toBe(false);
  });

  test('audit: false records no key events (administrative actions still are)', async () => {
    const hub = await startHub({ audit: false });
    const device = await addDevice(hub);
    await until(() => device.host.online && hub.deviceState(device.deviceId).connected, 'device online');
    await hub.rotate(device.deviceId);
    await until(() => device.host.keys.active.id === 2 && device.host.keys.future === undefined, 'rotation');
    await hub.revoke(device.deviceId, 'test:admin');
    const storage = await both.storage(url);
    expect((await storage.readAudit({ deviceId: device.deviceId })).map((e) => e.action)).toEqual(['device.revoke']);
  });
});
