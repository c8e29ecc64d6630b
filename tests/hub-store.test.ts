/**
 * The hub's SQLite store: migrations, conditional key-slot updates (group
 * commit), atomic batches, the serving-hub lock, and the hub record format
 * shared with tools/provision.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { isLockstepError } from '../modules/errors';
import { migrate, SCHEMA_VERSION } from '../tools/hub/migrations';
import { newDeviceRecord, parseHubRecord, parseHubRecords, toHubRecordJson } from '../tools/hub/records';
import { HubStore } from '../tools/hub/store';
import { provisionDevice } from '../tools/provision/provision';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-store-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const key = (fill: number) => new Uint8Array(64).fill(fill);

describe('schema', () => {
  test('a new database is migrated to the current version, owner-only, in WAL mode', () => {
    const store = new HubStore(join(dir, 'hub.db'));
    expect(store.schemaVersion).toBe(SCHEMA_VERSION);
    store.close();
    expect(statSync(join(dir, 'hub.db')).mode & 0o777).toBe(0o600);
    const db = new Database(join(dir, 'hub.db'));
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
  });

  test('migrating from version 1 keeps the devices', () => {
    const path = join(dir, 'old.db');
    const db = new Database(path);
    migrate(db, 1);
    db.prepare('INSERT INTO devices (device_id, active_id, active_key, created_at, active_since) VALUES (?, ?, ?, ?, ?)').run('0102030405060708', 7, Buffer.from(key(7)), 1, 1);
    expect(db.pragma('user_version', { simple: true })).toBe(1);
    db.close();
    const store = new HubStore(path);
    expect(store.schemaVersion).toBe(SCHEMA_VERSION);
    const device = store.getDevice('0102030405060708');
    expect(device?.active.id).toBe(7);
    expect(device?.rotateRequestedAt).toBeUndefined();
    store.close();
  });

  test('a database from a newer hub is refused', () => {
    const path = join(dir, 'new.db');
    const db = new Database(path);
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    expect(() => new HubStore(path)).toThrow(/newer than this hub/);
  });
});

describe('key slots', () => {
  test('storePending and promote apply only in order; a stale op changes nothing', () => {
    const store = new HubStore(join(dir, 'hub.db'));
    const record = newDeviceRecord();
    const id = record.deviceId;
    store.insertDevice(record, 1000);
    expect(store.commit([{ kind: 'storePending', deviceId: id, id: 2, key: key(2) }], 2000)).toEqual([true]);
    // A second pending is never stored over an unconfirmed one.
    expect(store.commit([{ kind: 'storePending', deviceId: id, id: 2, key: key(9) }], 2001)).toEqual([false]);
    expect(store.commit([{ kind: 'promote', deviceId: id, id: 3 }], 2002)).toEqual([false]);
    expect(store.getDevice(id)?.pending?.key).toEqual(key(2));
    expect(store.commit([{ kind: 'promote', deviceId: id, id: 2 }], 3000)).toEqual([true]);
    const after = store.getDevice(id);
    expect(after?.active).toEqual({ id: 2, key: key(2) });
    expect(after?.pending).toBeUndefined();
    expect(after?.rotations).toBe(1);
    expect(after?.activeSince).toBe(3000);
    // The op must follow the active id.
    expect(store.commit([{ kind: 'storePending', deviceId: id, id: 5, key: key(5) }], 3001)).toEqual([false]);
    store.close();
  });

  test('a failing batch is all-or-nothing', () => {
    const store = new HubStore(join(dir, 'hub.db'));
    const a = newDeviceRecord();
    const b = newDeviceRecord();
    store.insertDevices([a, b], 1);
    expect(() =>
      store.commit(
        [
          { kind: 'storePending', deviceId: a.deviceId, id: 2, key: key(2) },
          { kind: 'storePending', deviceId: b.deviceId, id: 2, key: new Uint8Array(3) }, // violates the CHECK
        ],
        2,
      ),
    ).toThrow();
    expect(store.getDevice(a.deviceId)?.pending).toBeUndefined();
    expect(() => store.insertDevices([newDeviceRecord(), a], 3)).toThrow(/already provisioned/);
    expect(store.loadDevices()).toHaveLength(2);
    store.close();
  });

  test('rotation requests are cleared by the storePending that serves them', () => {
    const store = new HubStore(join(dir, 'hub.db'));
    const record = newDeviceRecord();
    store.insertDevice(record, 1);
    expect(store.requestRotation(record.deviceId.toUpperCase(), 5)).toBe(true);
    expect(store.requestRotation('0000000000000000', 5)).toBe(false);
    expect(store.rotationRequests()).toEqual([record.deviceId]);
    store.commit([{ kind: 'storePending', deviceId: record.deviceId, id: 2, key: key(2) }], 6);
    expect(store.rotationRequests()).toEqual([]);
    store.close();
  });
});

describe('serving-hub lock', () => {
  test('a live holder keeps it; a dead or stale one is taken over', () => {
    const store = new HubStore(join(dir, 'hub.db'));
    expect(store.acquireLock('a', 1000, 10_000, () => true, 100)).toBeUndefined();
    expect(store.acquireLock('a', 1500, 10_000, () => true, 100)).toBeUndefined(); // the holder itself
    expect(store.acquireLock('b', 2000, 10_000, () => true, 100)?.instance).toBe('a'); // same process, another hub
    expect(store.acquireLock('b', 2000, 10_000, () => true, 200)?.pid).toBe(100);
    expect(store.acquireLock('b', 2000, 10_000, () => false, 200)).toBeUndefined(); // pid 100 is gone
    expect(store.readLock()).toMatchObject({ pid: 200, instance: 'b' });
    expect(store.acquireLock('c', 20_000, 10_000, () => true, 300)).toBeUndefined(); // heartbeat stale
    store.heartbeat('c', 21_000);
    expect(store.readLock()?.heartbeatAt).toBe(21_000);
    store.releaseLock('c');
    expect(store.readLock()).toBeUndefined();
    store.close();
  });
});

describe('hub records', () => {
  test('tools/provision writes records the hub imports', () => {
    const result = provisionDevice({ outDir: join(dir, 'dev') });
    const record = parseHubRecord(result.record);
    expect(toHubRecordJson(record)).toEqual(result.record);
    const store = new HubStore(join(dir, 'hub.db'));
    store.insertDevice(record, 1);
    expect(store.getDevice(result.record.deviceId)?.active.id).toBe(result.record.keyId);
    store.close();
  });

  test('one object, an array, or JSON lines', () => {
    const a = toHubRecordJson(newDeviceRecord());
    const b = toHubRecordJson(newDeviceRecord());
    expect(parseHubRecords(JSON.stringify(a))).toHaveLength(1);
    expect(parseHubRecords(JSON.stringify([a, b]))).toHaveLength(2);
    expect(parseHubRecords(`${JSON.stringify(a)}\n${JSON.stringify(b)}\n`)).toHaveLength(2);
  });

  test.each([
    ['not an object', 'x'],
    ['short id', { deviceId: '0102', keyId: 1, key: '00'.repeat(64) }],
    ['key id 0', { deviceId: '0102030405060708', keyId: 0, key: '00'.repeat(64) }],
    ['key id above u32', { deviceId: '0102030405060708', keyId: 2 ** 32, key: '00'.repeat(64) }],
    ['short key', { deviceId: '0102030405060708', keyId: 1, key: '00'.repeat(63) }],
    ['non-hex key', { deviceId: '0102030405060708', keyId: 1, key: 'zz'.repeat(64) }],
  ])('refuses %s', (_name, value) => {
    let error: unknown;
    try {
      parseHubRecord(value);
    } catch (caught) {
      error = caught;
    }
    expect(isLockstepError(error, 'LOCAL_BAD_ARGUMENT')).toBe(true);
  });
});
