/**
 * The PostgreSQL store's fencing (docs/HUB.md §10.2): two instances on one
 * database, each with its own pool. A lease moves the epoch and reloads the
 * row in one step; a write under a fence that moved applies nowhere; the
 * broken variant without the fence lets a stale instance clobber the row
 * (the test that shows fencing matters). Also: migrations are idempotent
 * and concurrent, the durable rotation request, crypto-shredding inputs.
 */
import { Keyring } from '../tools/hub/kek';
import { PgHubStore } from '../tools/hub/postgres/store';
import { newDeviceRecord } from '../tools/hub/records';
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
  expect(version.rows[0].version).toBe(2);
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
  expect(Buffer.from(leaseB!.device.pending!.key)).toEqual(Buffer.from(key(2)));

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
 * The scenario fencing exists for (issue 16): A stores pending key 2 (k2),
 * is paused; the device reconnects through B, which reloads k2, offers it,
 * the device confirms, B promotes k2 and stores pending 3 (k3). A resumes
 * with its cached (active 1, pending 2) view and, being behind, acts on it:
 * it promotes 2 again or stores its own pending key. With the fence, none
 * of A's writes apply; without it (the broken variant), A's write lands and
 * the database no longer matches what the device was given.
 */
async function staleInstanceScenario(fenced: boolean): Promise<{ active: number; pending: number | undefined; pendingKey: string | undefined; aApplied: boolean[] }> {
  const url = await freshDatabase(cluster);
  const a = await open(url, 'a', fenced);
  const b = await open(url, 'b', fenced);
  const record = newDeviceRecord();
  await a.insertDevice(record, 1);
  const leaseA = await a.lease(record.deviceId);
  const fencesA = new Map([[record.deviceId, leaseA!.fence]]);
  await a.commit([{ kind: 'storePending', deviceId: record.deviceId, id: 2, key: key(2) }], 2, fencesA);
  // A is paused here. B serves the device.
  const leaseB = await b.lease(record.deviceId);
  const fencesB = new Map([[record.deviceId, leaseB!.fence]]);
  await b.commit([{ kind: 'promote', deviceId: record.deviceId, id: 2 }], 3, fencesB);
  await b.commit([{ kind: 'storePending', deviceId: record.deviceId, id: 3, key: key(3) }], 4, fencesB);
  // The device now holds active 2 and future 3 = k3 (B offered it). A resumes with its stale view:
  // a promotion of the pending key it knows (id 3 arrives in a frame relayed late) and a fresh pending key 3 of its own.
  const aApplied = await a.commit(
    [
      { kind: 'promote', deviceId: record.deviceId, id: 3 },
      { kind: 'storePending', deviceId: record.deviceId, id: 4, key: key(0xa4) },
    ],
    5,
    fencesA,
  );
  const row = (await b.getDevice(record.deviceId))!;
  return { active: row.active.id, pending: row.pending?.id, pendingKey: row.pending ? Buffer.from(row.pending.key).toString('hex') : undefined, aApplied };
}

test('fenced: a stale instance changes nothing; the row is what B gave the device', async () => {
  const outcome = await staleInstanceScenario(true);
  expect(outcome.aApplied).toEqual([false, false]);
  expect(outcome).toMatchObject({ active: 2, pending: 3, pendingKey: Buffer.from(key(3)).toString('hex') });
});

test('broken variant without the fence: the stale instance clobbers the row (so the fence is what keeps sync)', async () => {
  const outcome = await staleInstanceScenario(false);
  // The stale promotion applies: the hub now seals under key 3 before the device ever proved it holds it,
  // and a pending key 4 the device was never offered by the instance serving it.
  expect(outcome.aApplied).toEqual([true, true]);
  expect(outcome.active).toBe(3);
  expect(outcome.pending).toBe(4);
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
  expect(await b.rotationRequests([record.deviceId])).toEqual([record.deviceId]);
  const lease = await b.lease(record.deviceId);
  expect(lease?.device.rotateRequestedAt).toBe(10);
  await b.commit([{ kind: 'storePending', deviceId: record.deviceId, id: 2, key: key(2) }], 11, new Map([[record.deviceId, lease!.fence]]));
  expect(await b.rotationRequests()).toEqual([]);
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
