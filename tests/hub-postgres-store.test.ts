/**
 * The PostgreSQL store's fencing (docs/HUB.md §13.2): two instances on one
 * database, each with its own pool. A lease moves the epoch and reloads the
 * row in one step; a write under a fence that moved applies nowhere; the
 * broken variant without the fence lets a stale instance clobber the row
 * (the test that shows fencing matters). Also: migrations are idempotent
 * and concurrent, the durable rotation request, crypto-shredding inputs.
 */
import { randomBytes } from 'node:crypto';
import { Keyring } from '../tools/hub/kek';
import { PgHubStore } from '../tools/hub/postgres/store';
import { PG_SCHEMA_VERSION } from '../tools/hub/postgres/schema';
import { newDeviceRecord } from '../tools/hub/records';
import { syncProblem } from '../tools/demo/sync-check';
import type { ThrowawayCluster } from '../tools/hub/postgres/cluster';
import { freshDatabase, sql, startCluster } from './support/postgres';

let cluster: ThrowawayCluster;
const stores: PgHubStore[] = [];
const keyring = Keyring.ephemeral();

beforeAll(async () => {
  cluster = await startCluster();
}, 60_000);
afterAll(() => cluster?.stop());
afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
});

async function open(url: string, instance: string, fenced = true): Promise<PgHubStore> {
  const store = await PgHubStore.open(url, { keyring, instance, fenced, poolSize: 2 });
  stores.push(store);
  return store;
}

function key(fill: number): Uint8Array {
  return new Uint8Array(64).fill(fill);
}

test('two instances migrate one database concurrently; the schema has the fence columns; synchronous_commit is on', async () => {
  const url = await freshDatabase(cluster);
  const [a, b] = await Promise.all([open(url, 'a'), open(url, 'b')]);
  expect(a).toBeDefined();
  expect(b).toBeDefined();
  const columns = await sql(url, "SELECT column_name FROM information_schema.columns WHERE table_name = 'devices'");
  expect(columns.rows.map((r: { column_name: string }) => r.column_name)).toEqual(expect.arrayContaining(['epoch', 'lease_owner', 'row_version']));
  const version = await sql(url, 'SELECT version FROM lockstep_schema');
  expect(version.rows[0].version).toBe(PG_SCHEMA_VERSION);
  expect(columns.rows.map((r: { column_name: string }) => r.column_name)).toEqual(expect.arrayContaining(['mode', 'pending_dh']));
  expect(await a.durability()).toMatchObject({ synchronousCommit: 'on', fsync: 'on' });
  // The audit trail has the SQLite schema's rule: append-only.
  await sql(url, "INSERT INTO audit_log (at, actor, action, outcome) VALUES (1, 'test', 'device.provision', 'ok')");
  await expect(sql(url, "UPDATE audit_log SET outcome = 'changed'")).rejects.toThrow(/append-only/);
  await expect(sql(url, 'DELETE FROM audit_log')).rejects.toThrow(/append-only/);
});

test('a lease takes a new epoch and reloads the row; the old holder can no longer commit (fenced)', async () => {
  const url = await freshDatabase(cluster);
  const a = await open(url, 'a');
  const b = await open(url, 'b');
  const record = newDeviceRecord();
  await a.insertDevice(record, 1);
  const leaseA = await a.lease(record.deviceId);
  expect(leaseA?.fence.epoch).toBe(1);
  const fencesA = new Map([[record.deviceId, leaseA!.fence]]);
  expect(await a.commit([{ kind: 'storePending', deviceId: record.deviceId, id: 2, key: key(2) }], 2, fencesA)).toEqual([true]);
  expect(leaseA!.fence.rowVersion).toBe(1);

  // B takes the lease (the newest authenticated connection) and sees A's pending key 2 in the reloaded row.
  const leaseB = await b.lease(record.deviceId);
  expect(leaseB?.fence.epoch).toBe(2);
  expect(leaseB?.device.pending?.id).toBe(2);
  expect(Buffer.from(leaseB!.device.pending!.key!)).toEqual(Buffer.from(key(2)));

  // A, stale (paused past B's lease), tries to promote: refused by the database.
  expect(await a.commit([{ kind: 'promote', deviceId: record.deviceId, id: 2 }], 3, fencesA)).toEqual([false]);
  const row = await b.getDevice(record.deviceId);
  expect(row?.active.id).toBe(1);
  expect(row?.pending?.id).toBe(2);

  // B promotes under its own fence.
  const fencesB = new Map([[record.deviceId, leaseB!.fence]]);
  expect(await b.commit([{ kind: 'promote', deviceId: record.deviceId, id: 2 }], 4, fencesB)).toEqual([true]);
  expect((await b.getDevice(record.deviceId))?.active.id).toBe(2);
  // A without any lease of the device commits nothing.
  expect(await a.commit([{ kind: 'storePending', deviceId: record.deviceId, id: 3, key: key(3) }], 5, new Map())).toEqual([false]);
  expect(await b.epochs([record.deviceId])).toEqual(new Map([[record.deviceId, 2]]));
});

test('a stale row version is refused even under the current epoch (a write this instance did not see)', async () => {
  const url = await freshDatabase(cluster);
  const a = await open(url, 'a');
  const record = newDeviceRecord();
  await a.insertDevice(record, 1);
  const lease = await a.lease(record.deviceId);
  const stale = { epoch: lease!.fence.epoch, rowVersion: lease!.fence.rowVersion };
  expect(await a.commit([{ kind: 'storePending', deviceId: record.deviceId, id: 2, key: key(2) }], 2, new Map([[record.deviceId, lease!.fence]]))).toEqual([true]);
  expect(await a.commit([{ kind: 'promote', deviceId: record.deviceId, id: 2 }], 3, new Map([[record.deviceId, stale]]))).toEqual([false]);
});

/**
 * The scenario fencing exists for (issue 16, docs/model/fencing.pml): A
 * decides a rotation (pending key 2 = kA) and is paused before its write
 * reaches the database; the device reconnects through B, which stores its
 * own pending key 2 = kB and offers it; the device stores kB as its future
 * key. A resumes and its write lands. Fenced, it applies nowhere; in the
 * broken variant (unconditional writes) it replaces kB by kA, and the
 * device, sealing with kB, is out of sync with the database.
 */
async function delayedWriteScenario(fenced: boolean): Promise<{ aApplied: boolean[]; problem: string | undefined }> {
  const url = await freshDatabase(cluster);
  const a = await open(url, 'a', fenced);
  const b = await open(url, 'b', fenced);
  const record = newDeviceRecord();
  await a.insertDevice(record, 1);
  const leaseA = await a.lease(record.deviceId);
  const fencesA = new Map([[record.deviceId, leaseA!.fence]]);
  // A's write is in flight (A paused). B serves the device now.
  const leaseB = await b.lease(record.deviceId);
  const fencesB = new Map([[record.deviceId, leaseB!.fence]]);
  expect(await b.commit([{ kind: 'storePending', deviceId: record.deviceId, id: 2, key: key(0xb2) }], 2, fencesB)).toEqual([true]);
  const device = { mode: 'classic' as const, active: record.active, future: { id: 2, key: key(0xb2) } }; // offered by B, stored (D1)
  const aApplied = await a.commit([{ kind: 'storePending', deviceId: record.deviceId, id: 2, key: key(0xa2) }], 3, fencesA);
  const row = (await b.getDevice(record.deviceId))!;
  return { aApplied, problem: syncProblem(device, row) };
}

test('fenced: the late write of a stale instance applies nowhere; device and database stay in sync', async () => {
  const outcome = await delayedWriteScenario(true);
  expect(outcome).toEqual({ aApplied: [false], problem: undefined });
});

test('broken variant without the fence: the late write replaces the key the device holds (out of sync)', async () => {
  const outcome = await delayedWriteScenario(false);
  expect(outcome.aApplied).toEqual([true]);
  expect(outcome.problem).toMatch(/key id 2 names different keys|device seals with key 2/);
});

test('the rotation request is durable in the row (survives any instance), cleared by the next pending key', async () => {
  const url = await freshDatabase(cluster);
  const a = await open(url, 'a');
  const record = newDeviceRecord();
  await a.insertDevice(record, 1);
  expect(await a.requestRotation(record.deviceId, 10)).toBe(true);
  expect(await a.requestRotation('0000000000000000', 10)).toBe(false);
  await a.close();
  stores.splice(stores.indexOf(a), 1);
  const b = await open(url, 'b');
  expect(await b.rotationRequests()).toEqual([record.deviceId]);
  expect(await b.attention()).toEqual([]); // not b's to serve before its lease
  const lease = await b.lease(record.deviceId);
  expect(lease?.device.rotateRequestedAt).toBe(10);
  expect(await b.attention()).toEqual([{ deviceId: record.deviceId, epoch: lease!.fence.epoch, mode: record.mode, recordChanged: false, rotateRequested: true }]);
  await b.commit([{ kind: 'storePending', deviceId: record.deviceId, id: 2, key: key(2) }], 11, new Map([[record.deviceId, lease!.fence]]));
  expect(await b.rotationRequests()).toEqual([]);
  expect(await b.attention()).toEqual([]); // served: the row leaves the index
});

test('keys are wrapped under the KEK; a store without the keyring that wrapped them refuses to open', async () => {
  const url = await freshDatabase(cluster);
  const a = await open(url, 'a');
  const record = newDeviceRecord();
  await a.insertDevice(record, 1);
  const forms = await a.wrappedForms(record.deviceId);
  expect(forms?.active.bytes.length).toBe(113);
  expect(forms?.active.bytes.includes(Buffer.from(record.active.key))).toBe(false);
  expect(await a.kekVersionsInUse()).toEqual([1]);
  await expect(PgHubStore.open(url, { keyring: Keyring.ephemeral() })).rejects.toThrow(/KEK_MISMATCH/);
  await expect(PgHubStore.open(url, { env: {} })).rejects.toThrow(/--kek-file/);
});

test('a bad database URL or an unreachable server is a clear error, not a hang', async () => {
  await expect(PgHubStore.open('postgres://lockstep:x@127.0.0.1:1/none', { keyring, connectTimeoutMs: 1000 })).rejects.toThrow(/ECONNREFUSED|connect/);
});

test('insertDevices is all or none; a duplicate is LOCAL_BAD_ARGUMENT', async () => {
  const url = await freshDatabase(cluster);
  const a = await open(url, 'a');
  const first = newDeviceRecord();
  await a.insertDevice(first, 1);
  await expect(a.insertDevices([newDeviceRecord(), first], 2)).rejects.toMatchObject({ code: 'LOCAL_BAD_ARGUMENT' });
  expect((await a.listDevices()).length).toBe(1);
});

test('crypto-shredding: after a KEK rotation no row needs the old version; once it is destroyed, an old copy of a row (dead tuple, WAL, backup) opens no key', async () => {
  const url = await freshDatabase(cluster);
  const v1 = randomBytes(32);
  const v2 = randomBytes(32);
  const both = new Keyring(new Map([[1, v1], [2, v2]]));
  const first = await PgHubStore.open(url, { keyring: new Keyring(new Map([[1, v1]])), instance: 'a', poolSize: 2 });
  stores.push(first);
  const records = Array.from({ length: 300 }, () => newDeviceRecord()); // more than one re-wrap batch
  await first.insertDevices(records, 1);
  const target = records[0]!;
  const lease = await first.lease(target.deviceId);
  await first.commit([{ kind: 'storePending', deviceId: target.deviceId, id: 2, key: key(2) }], 2, new Map([[target.deviceId, lease!.fence]]));
  // The operator adds version 2 to the keyring of every instance, then rotates.
  const a = await PgHubStore.open(url, { keyring: both, instance: 'a', poolSize: 2 });
  stores.push(a);
  // What an attacker with the WAL, a dead tuple or a base backup has: the rows as wrapped under version 1.
  const oldCopy = (await a.wrappedForms(target.deviceId))!;
  expect(oldCopy.active.kek).toBe(1);

  const rotation = await a.rotateKek(2);
  expect(rotation).toMatchObject({ from: [1], to: 2, rewrapped: 300, transactions: 2 });
  expect(await a.kekVersionsInUse()).toEqual([2]);
  // The serving instance's fence is untouched by the re-wrap: its promotion still applies.
  expect(await a.commit([{ kind: 'promote', deviceId: target.deviceId, id: 2 }], 3, new Map([[target.deviceId, lease!.fence]]))).toEqual([true]);

  // Version 1 destroyed: the hub opens with version 2 alone, and the old copy is unreadable.
  const only2 = new Keyring(new Map([[2, v2]]));
  const b = await PgHubStore.open(url, { keyring: only2, instance: 'b', poolSize: 1 });
  stores.push(b);
  expect(Buffer.from((await b.getDevice(target.deviceId))!.active.key)).toEqual(Buffer.from(key(2)));
  expect(() => only2.unwrap(1, target.deviceId, target.active.id, oldCopy.active.bytes)).toThrow(/KEK/);
  expect(() => both.unwrap(1, target.deviceId, target.active.id, oldCopy.active.bytes)).not.toThrow(); // (it was a real copy)
});

test('requireSynchronousReplication refuses a server without a synchronous standby', async () => {
  const url = await freshDatabase(cluster);
  const { PgLockstepHub } = await import('../tools/hub/postgres/hub');
  await expect(PgLockstepHub.start({ database: url, store: { keyring }, tcp: { port: 0 }, requireSynchronousReplication: true })).rejects.toThrow(/synchronous_standby_names/);
});
