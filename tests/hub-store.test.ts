/**
 * The hub's store on both backends (SQLite and PostgreSQL, tools/hub/storage.ts):
 * conditional key-slot updates (group commit), atomic batches, rotation
 * requests, the audit trail (append-only, key events inside the commit) and
 * revocation. SQLite only, because the mechanism exists only there: WAL
 * mode and the file's mode, SQLite's migrations (user_version), the
 * serving-hub lock (PostgreSQL has no single serving hub: fencing instead,
 * tests/hub-postgres-store.test.ts). PostgreSQL only: its own migrations
 * and their refusal of a newer schema. Also the hub record format shared
 * with tools/provision.
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
import { PgHubStore } from '../tools/hub/postgres/store';
import { PG_SCHEMA_VERSION } from '../tools/hub/postgres/schema';
import { BACKENDS, useBackends } from './support/backends';

const both = useBackends();

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

describe('PostgreSQL schema', () => {
  // (SQLite's equivalents, on user_version, are the 'schema' tests above.)
  test('a new database is migrated to the current version; a database from a newer hub is refused', async () => {
    const url = await both.database('postgres');
    const store = await both.storage(url);
    expect(store.backend).toBe('postgres');
    expect((await both.rawSql(url, 'SELECT version FROM lockstep_schema'))[0]).toEqual({ version: PG_SCHEMA_VERSION });
    await both.rawSql(url, `UPDATE lockstep_schema SET version = ${PG_SCHEMA_VERSION + 1}`);
    await expect(PgHubStore.open(url, { ...both.keyringFor(url), poolSize: 1 })).rejects.toThrow(/newer than this hub/);
  });
});

describe.each(BACKENDS)('key slots (%s)', (backend) => {
  test('storePending and promote apply only in order; a stale op changes nothing', async () => {
    const store = await both.storage(await both.database(backend));
    const record = newDeviceRecord();
    const id = record.deviceId;
    await store.insertDevices([record], 1000);
    const fences = await both.fencesFor(store, [id]);
    expect(await store.commit([{ kind: 'storePending', deviceId: id, id: 2, key: key(2) }], 2000, fences)).toEqual([true]);
    // A second pending is never stored over an unconfirmed one.
    expect(await store.commit([{ kind: 'storePending', deviceId: id, id: 2, key: key(9) }], 2001, fences)).toEqual([false]);
    expect(await store.commit([{ kind: 'promote', deviceId: id, id: 3 }], 2002, fences)).toEqual([false]);
    expect((await store.getDevice(id))?.pending?.key).toEqual(key(2));
    expect(await store.commit([{ kind: 'promote', deviceId: id, id: 2 }], 3000, fences)).toEqual([true]);
    const after = await store.getDevice(id);
    expect(after?.active).toEqual({ id: 2, key: key(2) });
    expect(after?.pending).toBeUndefined();
    expect(after?.rotations).toBe(1);
    expect(after?.activeSince).toBe(3000);
    // The op must follow the active id.
    expect(await store.commit([{ kind: 'storePending', deviceId: id, id: 5, key: key(5) }], 3001, fences)).toEqual([false]);
  });

  test('a failing batch is all-or-nothing', async () => {
    const store = await both.storage(await both.database(backend));
    const a = newDeviceRecord();
    const b = newDeviceRecord();
    await store.insertDevices([a, b], 1);
    const fences = await both.fencesFor(store, [a.deviceId, b.deviceId]);
    await expect(
      store.commit(
        [
          { kind: 'storePending', deviceId: a.deviceId, id: 2, key: key(2) },
          { kind: 'storePending', deviceId: b.deviceId, id: 2, key: new Uint8Array(3) }, // not a 64-byte key: the wrap refuses it
        ],
        2,
        fences,
      ),
    ).rejects.toThrow();
    expect((await store.getDevice(a.deviceId))?.pending).toBeUndefined();
    await expect(store.insertDevices([newDeviceRecord(), a], 3)).rejects.toThrow(/already provisioned/);
    expect(await store.listDevices()).toHaveLength(2);
  });

  test('rotation requests are cleared by the storePending that serves them', async () => {
    const store = await both.storage(await both.database(backend));
    const record = newDeviceRecord();
    await store.insertDevices([record], 1);
    expect(await store.requestRotation(record.deviceId.toUpperCase(), 5)).toBe(true);
    expect(await store.requestRotation('0000000000000000', 5)).toBe(false);
    expect(await store.rotationRequests()).toEqual([record.deviceId]);
    await store.commit([{ kind: 'storePending', deviceId: record.deviceId, id: 2, key: key(2) }], 6, await both.fencesFor(store, [record.deviceId]));
    expect(await store.rotationRequests()).toEqual([]);
  });

  test('last-seen times; the KEK versions in use; keys are stored wrapped', async () => {
    const url = await both.database(backend);
    const store = await both.storage(url);
    const record = newDeviceRecord();
    await store.insertDevices([record], 1);
    await store.touch(new Map([[record.deviceId, 77]]));
    expect((await store.listDevices())[0]?.lastSeenAt).toBe(77);
    expect(await store.kekVersionsInUse()).toEqual([1]);
    const [row] = (await both.rawSql(url, 'SELECT active_key FROM devices')) as { active_key: Buffer }[];
    expect(row?.active_key.length).toBe(113);
    expect(row?.active_key.includes(Buffer.from(record.active.key))).toBe(false);
  });
});

describe.each(BACKENDS)('audit trail and revocation (%s)', (backend) => {
  test('key events are recorded inside the commit, for the ops that applied only; administrative entries; filters and paging', async () => {
    const url = await both.database(backend);
    const store = await both.storage(url);
    const record = newDeviceRecord();
    await store.insertDevices([record], 1);
    const fences = await both.fencesFor(store, [record.deviceId]);
    await store.commit([{ kind: 'storePending', deviceId: record.deviceId, id: 2, key: key(2) }], 10, fences);
    await store.commit([{ kind: 'storePending', deviceId: record.deviceId, id: 2, key: key(9) }], 11, fences); // does not apply: no entry
    await store.commit([{ kind: 'promote', deviceId: record.deviceId, id: 2 }], 12, fences);
    await store.appendAudit([{ actor: 'cli:test', action: 'device.rotate', deviceId: record.deviceId.toUpperCase(), outcome: 'requested' }], 13);
    const entries = await store.readAudit({});
    expect(entries.map((e) => [e.at, e.actor, e.action, e.deviceId, e.outcome, e.detail])).toEqual([
      [13, 'cli:test', 'device.rotate', record.deviceId, 'requested', undefined],
      [12, 'hub', 'rotation.confirm', record.deviceId, 'ok', { keyId: 2 }],
      [10, 'hub', 'rotation.start', record.deviceId, 'ok', { keyId: 2, mode: 'classic' }],
    ]);
    expect((await store.readAudit({ action: 'rotation.confirm' })).map((e) => e.at)).toEqual([12]);
    expect((await store.readAudit({ deviceId: '0000000000000000' })).length).toBe(0);
    const [newest, second] = entries;
    expect((await store.readAudit({ before: newest!.seq, limit: 1 })).map((e) => e.seq)).toEqual([second!.seq]);
    // Never key material: a long string (a key is 128 hex digits) is refused before anything is written.
    await expect(store.appendAudit([{ actor: 'x', action: 'leak', outcome: 'ok', detail: { key: 'ab'.repeat(64) } }], 14)).rejects.toThrow(/longer than 64/);
    expect(await store.readAudit({ action: 'leak' })).toEqual([]);
  });

  test('the audit trail is append-only in the database itself (UPDATE and DELETE refused)', async () => {
    const url = await both.database(backend);
    const store = await both.storage(url);
    await store.appendAudit([{ actor: 'cli:test', action: 'device.provision', outcome: 'ok' }], 1);
    expect(await both.rawSql(url, 'SELECT outcome FROM audit_log')).toEqual([{ outcome: 'ok' }]); // (a row for the triggers to refuse)
    const outcome = (text: string) => both.rawSql(url, text).then((result) => `applied: ${JSON.stringify(result)}`, (error: unknown) => String((error as Error).message ?? error));
    expect(await outcome("UPDATE audit_log SET outcome = 'changed'")).toMatch(/append-only/);
    expect(await outcome('DELETE FROM audit_log')).toMatch(/append-only/);
    expect((await store.readAudit({}))[0]?.outcome).toBe('ok');
  });

  test('revocation deletes the row and both keys, records the revocation and its entry; the id is refused from then on', async () => {
    const url = await both.database(backend);
    const store = await both.storage(url);
    const [record, other] = [newDeviceRecord(), newDeviceRecord()];
    await store.insertDevices([record, other], 1);
    await store.commit([{ kind: 'storePending', deviceId: record.deviceId, id: 2, key: key(2) }], 2, await both.fencesFor(store, [record.deviceId]));
    const revocation = await store.revokeDevice(record.deviceId.toUpperCase(), 'cli:test', 'lost in transit', 5);
    expect(revocation).toMatchObject({ deviceId: record.deviceId, revokedAt: 5, actor: 'cli:test', reason: 'lost in transit', lastKeyId: 1 });
    expect(await store.getDevice(record.deviceId)).toBeUndefined();
    expect((await store.listDevices()).map((d) => d.deviceId)).toEqual([other.deviceId]);
    expect(await both.rawSql(url, `SELECT device_id FROM devices WHERE device_id = '${record.deviceId}'`)).toEqual([]);
    expect(await store.revokeDevice(record.deviceId, 'cli:test', undefined, 6)).toBeUndefined(); // nothing left to revoke
    expect(await store.revokeDevice('0000000000000000', 'cli:test', undefined, 6)).toBeUndefined();
    expect(await store.revocation(record.deviceId)).toEqual(revocation);
    expect(await store.revocationsAfter(0)).toEqual([revocation]);
    expect(await store.revocationsAfter(revocation!.seq)).toEqual([]);
    expect((await store.readAudit({ action: 'device.revoke' })).map((e) => [e.deviceId, e.actor, e.detail])).toEqual([[record.deviceId, 'cli:test', { lastKeyId: 1 }]]);
    // A copy of its old record must not come back, alone or in a batch (which then inserts nothing).
    await expect(store.insertDevices([record], 7)).rejects.toThrow(/revoked/);
    await expect(store.insertDevices([newDeviceRecord(), record], 7)).rejects.toThrow(/revoked/);
    expect(await store.listDevices()).toHaveLength(1);
    expect(await store.eraseRevoked()).toBe(true);
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
