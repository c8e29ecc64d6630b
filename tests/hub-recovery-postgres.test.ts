/**
 * Issue 14 on the PostgreSQL backend (PostgreSQL migration 5): two instances
 * deciding recoveries for one device concurrently share the per-device count
 * (the device's row is locked for the decision), and the recovery persist ops
 * apply under the fence like every key-slot write.
 */
import { Keyring } from '../tools/hub/kek';
import { PgHubStore } from '../tools/hub/postgres/store';
import { newDeviceRecord } from '../tools/hub/records';
import { recoveryPolicy } from '../tools/hub/recovery';
import { RecoveryStatus } from '../modules/protocol/constants';
import type { ThrowawayCluster } from '../tools/hub/postgres/cluster';
import { freshDatabase, startCluster } from './support/postgres';

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

async function open(url: string, instance: string): Promise<PgHubStore> {
  const store = await PgHubStore.open(url, { keyring, instance, poolSize: 4 });
  stores.push(store);
  return store;
}

test('two instances deciding at once accept no more than the per-device limit; approvals work across instances', async () => {
  const url = await freshDatabase(cluster);
  const [a, b] = await Promise.all([open(url, 'a'), open(url, 'b')]);
  const record = newDeviceRecord();
  await a.insertDevices([record], 1);
  const request = { deviceId: record.deviceId, newKeyId: 5, claimedActive: 3, claimedFuture: 4 };
  const auto = recoveryPolicy({ mode: 'auto', perDeviceLimit: 3 });
  const now = Date.now();
  const outcomes = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? a : b).decideRecovery(request, auto, now + i)));
  expect(outcomes.filter((d) => d.status === RecoveryStatus.ACCEPTED)).toHaveLength(3);
  expect(outcomes.filter((d) => d.status === RecoveryStatus.RATE_LIMITED)).toHaveLength(5);

  const other = newDeviceRecord();
  await a.insertDevices([other], 1);
  const approve = recoveryPolicy({ mode: 'approve' });
  expect((await a.decideRecovery({ ...request, deviceId: other.deviceId }, approve, now)).status).toBe(RecoveryStatus.AWAITING_APPROVAL);
  expect((await b.recoveryRequests()).map((r) => r.deviceId)).toEqual([other.deviceId]);
  expect(await b.approveRecovery(other.deviceId, 'cli:op', now + 1)).toBe('approved');
  expect((await a.decideRecovery({ ...request, deviceId: other.deviceId }, approve, now + 2)).status).toBe(RecoveryStatus.ACCEPTED);
  expect(await a.recoveryRequests()).toEqual([]);
}, 60_000);

test('storeRecovered, storeDeviceStatic and enrolmentReady apply under the lease, conditionally', async () => {
  const url = await freshDatabase(cluster);
  const a = await open(url, 'a');
  const record = newDeviceRecord();
  await a.insertDevices([record], 1);
  const id = record.deviceId;
  let lease = await a.lease(id);
  const fences = () => new Map([[id, lease!.fence]]);
  expect(await a.commit([{ kind: 'storeRecovered', deviceId: id, id: 1, key: new Uint8Array(64).fill(1) }], 2, fences())).toEqual([false]); // N = A
  expect(await a.commit([{ kind: 'storeRecovered', deviceId: id, id: 6, key: new Uint8Array(64).fill(6) }], 3, fences())).toEqual([true]);
  lease = await a.lease(id);
  expect(lease?.device.pending).toEqual({ id: 6, key: new Uint8Array(64).fill(6) });
  expect(await a.armEnrolment(id, 4)).toBe('armed');
  lease = await a.lease(id);
  expect(await a.commit([{ kind: 'promote', deviceId: id, id: 6, enrolmentReady: true }], 5, fences())).toEqual([true]);
  lease = await a.lease(id);
  expect(lease?.device.enrolment).toBe('ready');
  const sd = new Uint8Array(32).fill(9);
  expect(await a.commit([{ kind: 'storeDeviceStatic', deviceId: id, publicKey: sd, hubStaticId: 1 }], 6, fences())).toEqual([true]);
  lease = await a.lease(id);
  expect(lease?.device.devicePublicKey).toEqual(sd);
  expect(await a.commit([{ kind: 'storeDeviceStatic', deviceId: id, publicKey: new Uint8Array(32).fill(8), hubStaticId: 1 }], 7, fences())).toEqual([false]);
  expect(await a.staticKeyReferences()).toEqual(new Map([[1, 1]]));
}, 60_000);

async function interleaved(rowLock: boolean): Promise<number> {
  const url = await freshDatabase(cluster);
  const [a, b] = await Promise.all([open(url, 'a'), open(url, 'b')]);
  a.recoveryRowLock = rowLock;
  b.recoveryRowLock = rowLock;
  const record = newDeviceRecord();
  await a.insertDevices([record], 1);
  const request = { deviceId: record.deviceId, newKeyId: 5, claimedActive: 3, claimedFuture: 4 };
  const policy = recoveryPolicy({ mode: 'auto', perDeviceLimit: 1 });
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  a.beforeRecoveryCharge = () => held; // a has read the count (0) and waits before charging
  const first = a.decideRecovery(request, policy, 1000);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const second = b.decideRecovery(request, policy, 1001); // with the lock it waits for a; without, it reads 0 too
  await new Promise((resolve) => setTimeout(resolve, 500));
  release();
  const outcomes = await Promise.all([first, second]);
  return outcomes.filter((d) => d.status === RecoveryStatus.ACCEPTED).length;
}

test('the row lock is what makes the count shared: interleaved decisions accept one; the broken variant without it accepts two', async () => {
  expect(await interleaved(true)).toBe(1);
  expect(await interleaved(false)).toBe(2);
}, 60_000);
