/**
 * Issue 14 on the PostgreSQL backend (PostgreSQL migration 5): two instances
 * deciding recoveries for one device concurrently share the per-device count
 * (the device's row is locked for the decision), and the recovery persist ops
 * apply under the fence like every key-slot write. Then the tier itself on real
 * sockets (docs/HUB.md §13.11): the database restored to before two rotations,
 * the device's failing HELLO lands on instance 1, which recovers it; its
 * reconnect under the new key lands on instance 2, which promotes it. Two
 * copies of the device recovering on two instances at once: one is accepted.
 * Broken variant: an instance without static keys answers as 1.0 and the device
 * never comes back.
 */
import { Keyring } from '../tools/hub/kek';
import { PgHubStore } from '../tools/hub/postgres/store';
import { newDeviceRecord } from '../tools/hub/records';
import { recoveryPolicy } from '../tools/hub/recovery';
import { RecoveryStatus } from '../modules/protocol/constants';
import type { ThrowawayCluster } from '../tools/hub/postgres/cluster';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromHex } from '../modules/bytes';
import { Keystore } from '../modules/keystore/keystore';
import { nodeKeyAgreement } from '../hosts/node/key-agreement';
import { memoryFlash } from '../hosts/node/flash-memory';
import type { NorFlash } from '../modules/flash/nor-flash';
import { SimulatedDevice, type ProvisionedDevice } from '../tools/demo/fleet';
import { CuttableFlash } from '../tools/testing/cuttable-flash';
import { capture } from './support/log';
import { PgLockstepHub, type PgHubOptions } from '../tools/hub/postgres/hub';
import { toHubRecordJson } from '../tools/hub/records';
import { forgedHello, freshDatabase, sql, startCluster } from './support/postgres';

let cluster: ThrowawayCluster;
const stores: PgHubStore[] = [];
const keyring = Keyring.ephemeral();

beforeAll(async () => {
  cluster = await startCluster();
}, 60_000);
afterAll(() => cluster?.stop());
const hubs: PgLockstepHub[] = [];
const devices: SimulatedDevice[] = [];
let dir = '';
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-recovery-pg-'));
});
afterEach(async () => {
  for (const device of devices.splice(0)) device.stop();
  for (const hub of hubs.splice(0)) await hub.close();
  for (const store of stores.splice(0)) await store.close();
  rmSync(dir, { recursive: true, force: true });
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

// ---- The tier on real sockets ----

async function until(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function instance(url: string, options: Partial<PgHubOptions> = {}): Promise<PgLockstepHub> {
  const hub = await PgLockstepHub.start({
    database: url, store: { keyring, poolSize: 4 }, staticKeyFile: join(dir, 'tier.static'), tcp: { port: 0 }, tickMs: 20, controlPollMs: 100, ...options,
  });
  hubs.push(hub);
  return hub;
}

/** A device with a recovery credential for the tier's static key; `flash` is its keystore (to copy it). */
function withCredential(hubStatic: { id: number; publicKey: Uint8Array }): ProvisionedDevice & { nor: NorFlash } {
  const pair = nodeKeyAgreement.x25519GenerateKeyPair?.() as { privateKey: Uint8Array; publicKey: Uint8Array };
  const record = { ...newDeviceRecord(1, 'dh'), devicePublicKey: pair.publicKey, hubStaticId: hubStatic.id };
  const nor = memoryFlash();
  new Keystore(nor).format(fromHex(record.deviceId), record.active, 'dh', { device: pair, hubStaticId: hubStatic.id, hubPublicKey: hubStatic.publicKey });
  return { record, recordJson: toHubRecordJson(record), flash: new CuttableFlash(nor), nor };
}

function simulate(provisioned: ProvisionedDevice, port: () => number): SimulatedDevice {
  const device = new SimulatedDevice(provisioned, { endpoint: () => ({ host: '127.0.0.1', port: port() }), host: { reconnectInitialMs: 20, reconnectMaxMs: 200, recoveryRetryInitialMs: 200, recoveryRetryMaxMs: 400 } });
  devices.push(device);
  device.start();
  return device;
}

const KEY_COLUMNS = 'active_id, active_kek, active_key, active_since, pending_id, pending_kek, pending_key, pending_since, pending_dh, rotations';

/** The device rotated `count` times through `hub` (which serves it). Returns the ids before and after. */
async function rotateTimes(hub: PgLockstepHub, device: SimulatedDevice, deviceId: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const from = device.host.keys.active.id;
    await until('connected', () => hub.deviceIds.includes(deviceId) && hub.deviceState(deviceId).connected === true);
    await hub.rotate(deviceId);
    await until(`rotation ${i}`, () => hub.deviceState(deviceId).activeKeyId > from && device.host.keys.active.id > from);
  }
}

test('a restore of the tier\'s database: the device recovers on instance 1, its reconnect under the new key is promoted on instance 2; without static keys it never comes back', async () => {
  const url = await freshDatabase(cluster);
  const first = await instance(url);
  const hubStatic = first.hubStatic as { id: number; publicKey: Uint8Array };
  expect(hubStatic.id).toBe(1);
  const provisioned = withCredential(hubStatic);
  const id = provisioned.record.deviceId;
  await first.provision(provisioned.record);
  const backup = (await sql(url, `SELECT ${KEY_COLUMNS} FROM devices WHERE device_id = $1`, [id])).rows[0] as Record<string, unknown>; // last night's backup: key 1
  let port = first.addresses[0]?.port as number;
  const device = simulate(provisioned, () => port);
  await rotateTimes(first, device, id, 2);
  const before = device.host.keys.active.id; // 3
  device.stop();
  await first.close();
  // The restore (docs/HUB.md §13.11): every instance stopped, the database back to the backup, the instances started.
  await sql(url, `UPDATE devices SET (${KEY_COLUMNS}) = ($2, $3, $4, $5, $6, $7, $8, $9, $10, $11) WHERE device_id = $1`,
    [id, backup.active_id, backup.active_kek, backup.active_key, backup.active_since, backup.pending_id, backup.pending_kek, backup.pending_key, backup.pending_since, backup.pending_dh, backup.rotations]);
  const log1 = capture();
  const log2 = capture();
  const one = await instance(url, { logger: log1 });
  const two = await instance(url, { logger: log2 });
  expect(one.deviceState(id).activeKeyId).toBe(1);
  port = one.addresses[0]?.port as number;
  // The reconnect after RECOVER_RESULT goes to instance 2 (a balancer's pick).
  one.on('recoveryDecided', () => {
    port = two.addresses[0]?.port as number;
  });
  const again = simulate({ ...provisioned, flash: provisioned.flash }, () => port);
  await until('recovered and promoted on instance 2', () => two.deviceIds.includes(id) && two.deviceState(id).connected === true && again.host.keys.active.id > before && two.deviceState(id).activeKeyId === again.host.keys.active.id);
  const recovered = again.host.keys.active.id;
  expect(log1.lines.filter((l) => l.event === 'recoveryNeeded')).toEqual([expect.objectContaining({ fields: expect.objectContaining({ deviceId: id, reason: 'unknownKeyId', helloKeyId: before, activeKeyId: 1 }) })]);
  expect(log1.lines.filter((l) => l.event === 'recoveryAccepted')).toEqual([expect.objectContaining({ fields: expect.objectContaining({ deviceId: id, newKeyId: recovered }) })]);
  expect(two.leasedDevices).toEqual([id]);
  const row = (await sql(url, 'SELECT active_id, pending_id FROM devices WHERE device_id = $1', [id])).rows[0];
  expect(row).toEqual({ active_id: String(recovered), pending_id: null });
  const store = await open(url, 'reader');
  expect((await store.readAudit({ deviceId: id, action: 'recovery.decide' })).map((e) => e.outcome)).toEqual(['accepted']);
  expect(await store.readAudit({ deviceId: id, action: 'recovery.store' })).toHaveLength(1);
  expect((await one.recentRecoveries()).map((r) => [r.deviceId, r.newKeyId])).toEqual([[id, recovered]]);
  expect(one.recoveryCounters.decided.accepted).toBe(1);
  // A forged HELLO for the enrolled device (anyone can send one) reaches the core for recovery but costs the device nothing:
  // the serving instance keeps its lease and session, no epoch moves.
  const epoch = (await sql(url, 'SELECT epoch FROM devices WHERE device_id = $1', [id])).rows[0].epoch;
  await forgedHello(two.addresses[0]?.port as number, id);
  await forgedHello(one.addresses[0]?.port as number, id);
  expect((await sql(url, 'SELECT epoch FROM devices WHERE device_id = $1', [id])).rows[0].epoch).toBe(epoch);
  expect(two.leasedDevices).toEqual([id]);
  expect(two.deviceState(id).connected).toBe(true);
  again.stop();

  // Broken variant: the same restore with instances that hold no static keys (the tier before this change) — the device stays out.
  await Promise.all([one.close(), two.close()]);
  await sql(url, `UPDATE devices SET (${KEY_COLUMNS}) = ($2, $3, $4, $5, $6, $7, $8, $9, $10, $11) WHERE device_id = $1`,
    [id, backup.active_id, backup.active_kek, backup.active_key, backup.active_since, backup.pending_id, backup.pending_kek, backup.pending_key, backup.pending_since, backup.pending_dh, backup.rotations]);
  const keyless = await instance(url, { staticKeyFile: undefined, store: { keyring, poolSize: 4, revocationFile: false } });
  expect(keyless.hubStatic).toBeUndefined();
  port = keyless.addresses[0]?.port as number;
  const stuck = simulate(provisioned, () => port);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  expect(keyless.deviceState(id).connected).toBe(false);
  expect(stuck.host.keys.active.id).toBe(recovered);
}, 60_000);

test('two copies of one device recovering on two instances at once: one recovers, one key is stored, one charge counts', async () => {
  const url = await freshDatabase(cluster);
  const policy = { recovery: { mode: 'auto' as const, perDeviceLimit: 1 } };
  const one = await instance(url, policy);
  const two = await instance(url, policy);
  const provisioned = withCredential(one.hubStatic as { id: number; publicKey: Uint8Array });
  const id = provisioned.record.deviceId;
  await one.provision(provisioned.record);
  const backup = (await sql(url, `SELECT ${KEY_COLUMNS} FROM devices WHERE device_id = $1`, [id])).rows[0] as Record<string, unknown>;
  const first = simulate(provisioned, () => one.addresses[0]?.port as number);
  await rotateTimes(one, first, id, 1);
  first.stop();
  // While the instances run, the database goes back (a point-in-time restore): instance 1 still holds key 2 in memory.
  await sql(url, `UPDATE devices SET (${KEY_COLUMNS}) = ($2, $3, $4, $5, $6, $7, $8, $9, $10, $11) WHERE device_id = $1`,
    [id, backup.active_id, backup.active_kek, backup.active_key, backup.active_since, backup.pending_id, backup.pending_kek, backup.pending_key, backup.pending_since, backup.pending_dh, backup.rotations]);
  const copy = memoryFlash({ image: provisioned.nor.read(0, provisioned.nor.size) });
  const a = simulate({ ...provisioned, flash: new CuttableFlash(provisioned.nor) }, () => one.addresses[0]?.port as number);
  const b = simulate({ ...provisioned, flash: new CuttableFlash(copy) }, () => two.addresses[0]?.port as number);
  const reader = await open(url, 'reader');
  const recoveredCopies = () => [a, b].filter((d) => d.host.keys.active.id > 2 || (d.host.keys.future?.id ?? 0) > 2).length;
  await until('a copy recovered', () => recoveredCopies() >= 1, 20_000);
  // Both copies keep trying (300 ms apart): the one holding the recovered key is served, the other is refused from now on.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  a.stop();
  b.stop();
  expect(recoveredCopies()).toBe(1);
  expect(await reader.readAudit({ deviceId: id, action: 'recovery.store' })).toHaveLength(1);
  const charges = await sql(url, 'SELECT new_key_id FROM recoveries WHERE device_id = $1', [id]);
  expect(charges.rows).toHaveLength(1); // (an acceptance whose write was fenced out is not counted)
  const row = (await sql(url, 'SELECT active_id, pending_id FROM devices WHERE device_id = $1', [id])).rows[0] as { active_id: string; pending_id: string | null };
  expect(Number(row.pending_id ?? row.active_id)).toBe(Number(charges.rows[0].new_key_id));
}, 60_000);

test('enrolment armed from another process reaches the instance serving the device: the next dh rotation enrols it, S_d lands in the row', async () => {
  const url = await freshDatabase(cluster);
  const log = capture();
  const one = await instance(url, { logger: log });
  const record = newDeviceRecord(1, 'dh');
  const nor = memoryFlash();
  new Keystore(nor).format(fromHex(record.deviceId), record.active, 'dh');
  await one.provision(record);
  const device = simulate({ record, recordJson: toHubRecordJson(record), flash: new CuttableFlash(nor) }, () => one.addresses[0]?.port as number);
  await until('served', () => one.deviceIds.includes(record.deviceId) && one.deviceState(record.deviceId).connected === true);
  const enrolled: string[] = [];
  one.on('enrolled', ({ deviceId }) => enrolled.push(deviceId));
  const cli = await open(url, 'cli'); // as `enrol --db postgres://…` does
  expect(await cli.armEnrolment(record.deviceId, Date.now())).toBe('armed');
  await until('reloaded by the serving instance', () => log.lines.some((l) => l.event === 'recordReloaded' && l.fields.deviceId === record.deviceId));
  await rotateTimes(one, device, record.deviceId, 1);
  await until('enrolled', () => enrolled.length === 1);
  const row = (await sql(url, 'SELECT device_public_key IS NOT NULL AS has_key, hub_static_id, enrolment FROM devices WHERE device_id = $1', [record.deviceId])).rows[0];
  expect(row).toEqual({ has_key: true, hub_static_id: '1', enrolment: null }); // (BIGINT as text through the raw client)
  expect(await cli.armEnrolment(record.deviceId, Date.now())).toBe('enrolled');
}, 60_000);
