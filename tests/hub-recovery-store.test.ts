/**
 * Issue 14, the hub host's durable side of recovery (docs/HUB.md §14):
 * migration 6, the persist ops storeRecovered / storeDeviceStatic /
 * promote{enrolmentReady} / storePending{modeChange} as conditional writes in
 * the group commit, the replaced pending key erased from every file, the
 * policy decided in one transaction with a per-device count that two store
 * handles share, revocations that survive a restore of an older database
 * copy, and the hub static key file's rotation procedure. Each property that
 * a test shows is also shown failing on a deliberately broken variant.
 */
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { RecoveryStatus } from '../modules/protocol/constants';
import { migrate, SCHEMA_VERSION } from '../tools/hub/migrations';
import { newDeviceRecord, parseHubRecord, toHubRecordJson, type DeviceRecord } from '../tools/hub/records';
import { decide, recoveryPolicy, SourceBuckets, type RecoveryPolicy } from '../tools/hub/recovery';
import { readRevocations } from '../tools/hub/revocation-file';
import { readStaticKeyFile, retireStaticKey, rotateStaticKey, StaticKeyError, writeStaticKeyFile } from '../tools/hub/static-keys';
import { HubStore } from '../tools/hub/store';
import { readKeyringFile } from '../tools/hub/kek';
import { Keyring } from '../tools/hub/kek';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-recovery-store-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const key = (fill: number) => new Uint8Array(64).fill(fill);
const request = (deviceId: string, newKeyId = 9) => ({ deviceId, newKeyId, claimedActive: 7, claimedFuture: 8 });
const files = (db: string) => [db, `${db}-wal`, `${db}-shm`].filter((f) => existsSync(f));

function provisioned(store: HubStore, extra: Partial<DeviceRecord> = {}): DeviceRecord {
  const record = { ...newDeviceRecord(1, 'dh'), ...extra };
  store.insertDevice(record, 1000);
  return record;
}

describe('migration 6', () => {
  test('a version-5 database keeps its devices; the new columns start empty', () => {
    const path = join(dir, 'old.db');
    const keyring = Keyring.ephemeral();
    const db = new Database(path);
    migrate(db, 5, { keyring: () => keyring });
    const record = newDeviceRecord();
    db.prepare('INSERT INTO devices (device_id, active_id, active_kek, active_key, created_at, active_since, mode) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(record.deviceId, 1, 1, keyring.wrap(1, record.deviceId, 1, record.active.key), 1, 1, 'dh');
    db.close();
    const store = new HubStore(path, { keyring });
    expect(store.schemaVersion).toBe(SCHEMA_VERSION);
    const device = store.getDevice(record.deviceId);
    expect(device?.active.key).toEqual(record.active.key);
    expect(device?.devicePublicKey).toBeUndefined();
    expect(device?.enrolment).toBeUndefined();
    expect(store.recoveryRequests()).toEqual([]);
    store.close();
  });

  test('a record with S_d and the hub static id round-trips through the store and the record format', () => {
    const store = new HubStore(join(dir, 'hub.db'));
    const record = provisioned(store, { devicePublicKey: new Uint8Array(32).fill(5), hubStaticId: 3 });
    const stored = store.getDevice(record.deviceId);
    expect(stored?.devicePublicKey).toEqual(new Uint8Array(32).fill(5));
    expect(stored?.hubStaticId).toBe(3);
    const json = toHubRecordJson(record);
    expect(json.devicePublicKey).toBe('05'.repeat(32));
    expect(parseHubRecord(json)).toEqual(record);
    expect(() => parseHubRecord({ ...json, hubStaticId: undefined })).toThrow(/together/);
    expect(() => parseHubRecord({ ...json, devicePublicKey: 'zz' })).toThrow(/64 hex/);
    expect(() => parseHubRecord({ ...json, hubStaticId: 0 })).toThrow(/hubStaticId/);
    store.close();
  });
});

describe('persist ops', () => {
  test('storeRecovered replaces the pending slot only with an id above every id the row holds (R3)', () => {
    const store = new HubStore(join(dir, 'hub.db'));
    const { deviceId } = provisioned(store);
    expect(store.commit([{ kind: 'storePending', deviceId, id: 2, key: key(2) }], 2000)).toEqual([true]);
    expect(store.commit([{ kind: 'storeRecovered', deviceId, id: 2, key: key(9) }], 2001)).toEqual([false]); // N = P
    expect(store.commit([{ kind: 'storeRecovered', deviceId, id: 1, key: key(9) }], 2002)).toEqual([false]); // N = A
    expect(store.getDevice(deviceId)?.pending).toEqual({ id: 2, key: key(2) });
    expect(store.commit([{ kind: 'storeRecovered', deviceId, id: 7, key: key(7) }], 2003)).toEqual([true]);
    const device = store.getDevice(deviceId);
    expect(device?.pending).toEqual({ id: 7, key: key(7) });
    expect(store.getSummary(deviceId)?.pendingMode).toBe('classic');
    expect(device?.active.id).toBe(1);
    // HK10: the recovered pending is promoted like any other.
    expect(store.commit([{ kind: 'promote', deviceId, id: 7 }], 3000)).toEqual([true]);
    expect(store.getDevice(deviceId)?.active).toEqual({ id: 7, key: key(7) });
    expect(store.readAudit({ deviceId, action: 'recovery.store' })).toHaveLength(1);
    store.close();
  });

  test('a batch with a failing op is all-or-nothing: the recovered key is not stored', () => {
    const store = new HubStore(join(dir, 'hub.db'));
    const { deviceId } = provisioned(store);
    const bad = { kind: 'storeRecovered', deviceId, id: 5, key: new Uint8Array(3) } as const; // a wrap of a short key throws
    expect(() => store.commit([{ kind: 'storeRecovered', deviceId, id: 4, key: key(4) }, bad], 2000)).toThrow();
    expect(store.getDevice(deviceId)?.pending).toBeUndefined();
    store.close();
  });

  async function replacedPendingFound(truncate: boolean): Promise<boolean> {
    const path = join(dir, `hub-${truncate}.db`);
    const store = new HubStore(path, { truncateWalAfterPromotion: truncate });
    const { deviceId } = provisioned(store);
    store.commit([{ kind: 'storePending', deviceId, id: 2, key: key(0x42) }], 2000);
    const replaced = store.wrappedForms(deviceId)?.pending?.bytes as Buffer;
    store.commit([{ kind: 'storeRecovered', deviceId, id: 9, key: key(0x99) }], 2001);
    const found = files(path).some((file) => readFileSync(file).includes(replaced));
    store.close();
    return found;
  }

  test('the replaced pending key leaves every file as a retired key does; the scan finds it without the WAL truncation', async () => {
    expect(await replacedPendingFound(true)).toBe(false);
    expect(await replacedPendingFound(false)).toBe(true); // broken variant
  });

  test('storeDeviceStatic (HE2) applies only to a ready enrolment; the same key again applies; another never', () => {
    const store = new HubStore(join(dir, 'hub.db'));
    const { deviceId } = provisioned(store);
    const sd = new Uint8Array(32).fill(1);
    expect(store.commit([{ kind: 'storeDeviceStatic', deviceId, publicKey: sd, hubStaticId: 1 }], 2000)).toEqual([false]); // not armed
    expect(store.armEnrolment(deviceId, 2001)).toBe('armed');
    expect(store.commit([{ kind: 'storeDeviceStatic', deviceId, publicKey: sd, hubStaticId: 1 }], 2002)).toEqual([false]); // armed, not ready
    store.commit([{ kind: 'storePending', deviceId, id: 2, key: key(2) }], 2003);
    expect(store.commit([{ kind: 'promote', deviceId, id: 2, enrolmentReady: true }], 2004)).toEqual([true]);
    expect(store.getDevice(deviceId)?.enrolment).toBe('ready');
    expect(store.commit([{ kind: 'storeDeviceStatic', deviceId, publicKey: sd, hubStaticId: 1 }], 2005)).toEqual([true]);
    const enrolled = store.getDevice(deviceId);
    expect(enrolled?.devicePublicKey).toEqual(sd);
    expect(enrolled?.enrolment).toBeUndefined();
    expect(store.commit([{ kind: 'storeDeviceStatic', deviceId, publicKey: sd, hubStaticId: 1 }], 2006)).toEqual([true]); // idempotent
    expect(store.commit([{ kind: 'storeDeviceStatic', deviceId, publicKey: new Uint8Array(32).fill(2), hubStaticId: 1 }], 2007)).toEqual([false]);
    expect(store.commit([{ kind: 'storeDeviceStatic', deviceId, publicKey: sd, hubStaticId: 2 }], 2008)).toEqual([false]);
    expect(store.getDevice(deviceId)?.devicePublicKey).toEqual(sd);
    expect(store.armEnrolment(deviceId, 2009)).toBe('enrolled'); // a second enrolment is refused
    store.close();
  });

  test('enrolmentReady is set only in the commit whose promotion applies, and only when armed', () => {
    const store = new HubStore(join(dir, 'hub.db'));
    const { deviceId } = provisioned(store);
    store.commit([{ kind: 'storePending', deviceId, id: 2, key: key(2) }], 2000);
    expect(store.commit([{ kind: 'promote', deviceId, id: 2, enrolmentReady: true }], 2001)).toEqual([true]);
    expect(store.getDevice(deviceId)?.enrolment).toBeUndefined(); // was not armed
    store.armEnrolment(deviceId, 2002);
    expect(store.commit([{ kind: 'promote', deviceId, id: 3, enrolmentReady: true }], 2003)).toEqual([false]); // no pending 3
    expect(store.getDevice(deviceId)?.enrolment).toBe('armed');
    expect(store.recordChanges()).toEqual([deviceId]);
    store.clearRecordChange(deviceId);
    expect(store.recordChanges()).toEqual([]);
    store.close();
  });

  test('storePending with modeChange (HK11) writes mode dh and replaces the refused classic pending in one commit', () => {
    const store = new HubStore(join(dir, 'hub.db'));
    const { deviceId } = provisioned(store, { mode: 'classic' });
    store.commit([{ kind: 'storePending', deviceId, id: 2, key: key(2) }], 2000);
    const dh = { privateKey: new Uint8Array(32).fill(3), publicKey: new Uint8Array(32).fill(4) };
    // Not for another id (it follows the active id and replaces only the same id).
    expect(store.commit([{ kind: 'storePending', deviceId, id: 3, dh, modeChange: 'dh' }], 2001)).toEqual([false]);
    expect(store.getDevice(deviceId)?.mode).toBe('classic');
    expect(store.commit([{ kind: 'storePending', deviceId, id: 2, dh, modeChange: 'dh' }], 2002)).toEqual([true]);
    const device = store.getDevice(deviceId);
    expect(device?.mode).toBe('dh');
    expect(device?.pending).toEqual({ id: 2, dh });
    store.close();
  });
});

describe('the policy, decided in the database', () => {
  const policy = (mode: RecoveryPolicy['mode']): RecoveryPolicy => recoveryPolicy({ mode, perDeviceLimit: 3, windowMs: 3_600_000 });

  test('auto accepts up to the limit per window, then RATE_LIMITED until the oldest leaves the window', () => {
    const store = new HubStore(join(dir, 'hub.db'));
    const { deviceId } = provisioned(store);
    const t = 10_000_000;
    for (let i = 0; i < 3; i++) expect(store.decideRecovery(request(deviceId), policy('auto'), t + i * 1000).status).toBe(RecoveryStatus.ACCEPTED);
    const limited = store.decideRecovery(request(deviceId), policy('auto'), t + 5000);
    expect(limited.status).toBe(RecoveryStatus.RATE_LIMITED);
    expect(limited.retryAfterSeconds).toBe(3595);
    expect(store.decideRecovery(request(deviceId), policy('auto'), t + 3_600_001).status).toBe(RecoveryStatus.ACCEPTED);
    const audit = store.readAudit({ deviceId, action: 'recovery.decide' });
    expect(audit.map((e) => e.outcome)).toEqual(['accepted', 'rateLimited', 'accepted', 'accepted', 'accepted']);
    expect(audit[1]?.detail).toMatchObject({ reason: 'perDeviceLimit', policy: 'auto', newKeyId: 9 });
    store.close();
  });

  test('off answers REFUSED and charges nothing; KEY_IDS_EXHAUSTED above 2^32-1', () => {
    const store = new HubStore(join(dir, 'hub.db'));
    const { deviceId } = provisioned(store);
    for (let i = 0; i < 5; i++) expect(store.decideRecovery(request(deviceId), policy('off'), 1000 + i).status).toBe(RecoveryStatus.REFUSED);
    expect(store.recentRecoveries()).toEqual([]);
    expect(store.decideRecovery(request(deviceId, 2 ** 32), policy('auto'), 2000).status).toBe(RecoveryStatus.KEY_IDS_EXHAUSTED);
    store.close();
  });

  test('approve: AWAITING_APPROVAL (request recorded once, attempts counted) until `recover` approves; the next is accepted', () => {
    const store = new HubStore(join(dir, 'hub.db'));
    const { deviceId } = provisioned(store);
    expect(store.approveRecovery(deviceId, 'cli:op', 900)).toBe('none');
    expect(store.decideRecovery(request(deviceId), policy('approve'), 1000).status).toBe(RecoveryStatus.AWAITING_APPROVAL);
    const waiting = store.decideRecovery(request(deviceId, 10), policy('approve'), 2000);
    expect(waiting).toMatchObject({ status: RecoveryStatus.AWAITING_APPROVAL, retryAfterSeconds: 60 });
    expect(store.recoveryRequests()).toEqual([expect.objectContaining({ deviceId, attempts: 2, newKeyId: 10, firstAt: 1000, lastAt: 2000, approvedAt: undefined })]);
    expect(store.approveRecovery(deviceId, 'cli:op', 3000)).toBe('approved');
    expect(store.approveRecovery(deviceId, 'cli:op', 3001)).toBe('already');
    expect(store.decideRecovery(request(deviceId, 11), policy('approve'), 4000).status).toBe(RecoveryStatus.ACCEPTED);
    expect(store.recoveryRequests()).toEqual([]); // the approval is used up
    expect(store.decideRecovery(request(deviceId, 12), policy('approve'), 5000).status).toBe(RecoveryStatus.AWAITING_APPROVAL);
    expect(store.readAudit({ deviceId, action: 'recovery.approve' })).toEqual([expect.objectContaining({ actor: 'cli:op', outcome: 'ok' })]);
    expect(store.approveRecovery('ffffffffffffffff', 'cli:op', 1)).toBe('missing');
    store.close();
  });

  test('an approval expires', () => {
    const store = new HubStore(join(dir, 'hub.db'));
    const { deviceId } = provisioned(store);
    store.decideRecovery(request(deviceId), policy('approve'), 1000);
    store.approveRecovery(deviceId, 'cli:op', 2000);
    const late = store.decideRecovery(request(deviceId), policy('approve'), 2000 + 24 * 3_600_000 + 1);
    expect(late.status).toBe(RecoveryStatus.AWAITING_APPROVAL);
    expect(late.reason).toBe('approvalExpired');
    expect(store.recoveryRequests()[0]?.approvedAt).toBeUndefined();
    store.close();
  });

  test('two store handles on one file (two processes) share the per-device count; per-handle counting would not', () => {
    const path = join(dir, 'hub.db');
    const a = new HubStore(path);
    const b = new HubStore(path);
    const { deviceId } = provisioned(a);
    const outcomes: number[] = [];
    for (let i = 0; i < 6; i++) outcomes.push((i % 2 === 0 ? a : b).decideRecovery(request(deviceId), policy('auto'), 1000 + i).status);
    expect(outcomes.filter((s) => s === RecoveryStatus.ACCEPTED)).toHaveLength(3);
    // Broken variant: each handle counts what it accepted itself (memory, not the database).
    const local = new Map<HubStore, number[]>([[a, []], [b, []]]);
    let accepted = 0;
    for (let i = 0; i < 6; i++) {
      const handle = i % 2 === 0 ? a : b;
      const d = decide(policy('auto'), request(deviceId), { revoked: false, acceptedInWindow: local.get(handle) as number[], approvedAt: undefined }, 1000 + i);
      if (d.status === RecoveryStatus.ACCEPTED) {
        accepted++;
        (local.get(handle) as number[]).push(1000 + i);
      }
    }
    expect(accepted).toBe(6);
    a.close();
    b.close();
  });
});

describe('revocations survive a restore (docs/HUB.md §14.4)', () => {
  function restoreOlderCopy(withRevocationFile: boolean): { reRevoked: string[]; back: boolean; recovery: number; provisionRefused: boolean } {
    const path = join(dir, `hub-${withRevocationFile}.db`);
    const revocationFile = withRevocationFile ? undefined : join(dir, `elsewhere-${Date.now()}.revoked`);
    const options = revocationFile === undefined ? {} : { revocationFile };
    let store = new HubStore(path, options);
    const record = provisioned(store);
    store.close();
    copyFileSync(path, `${path}.backup`); // last night's backup (WAL checkpointed at close)
    store = new HubStore(path, options);
    expect(store.revokeDevice(record.deviceId, 'cli:op', 'stolen', 5000)).toBeDefined();
    store.close();
    // The operator restores the backup: the database forgets the revocation.
    copyFileSync(`${path}.backup`, path);
    for (const f of [`${path}-wal`, `${path}-shm`]) rmSync(f, { force: true });
    // Broken variant: the revocation lived only in the database (its file is not where the store looks).
    if (revocationFile !== undefined) rmSync(revocationFile, { force: true });
    store = new HubStore(path, options);
    const back = store.getSummary(record.deviceId) !== undefined;
    const recovery = store.decideRecovery(request(record.deviceId), recoveryPolicy({ mode: 'auto' }), 6000).status;
    let provisionRefused = false;
    try {
      store.insertDevice({ ...newDeviceRecord(), deviceId: record.deviceId }, 7000);
    } catch (error) {
      provisionRefused = /revoked/.test((error as Error).message);
    }
    const reRevoked = [...store.reRevoked];
    store.close();
    return { reRevoked, back, recovery, provisionRefused };
  }

  test('a device row restored from a backup older than its revocation is erased again; recovery and provisioning refused', () => {
    const outcome = restoreOlderCopy(true);
    expect(outcome.back).toBe(false);
    expect(outcome.reRevoked).toHaveLength(1);
    expect(outcome.recovery).toBe(RecoveryStatus.REFUSED);
    expect(outcome.provisionRefused).toBe(true);
  });

  test('broken variant: a revocation kept only in the database comes back with the restore', () => {
    const outcome = restoreOlderCopy(false);
    expect(outcome.back).toBe(true);
    expect(outcome.recovery).toBe(RecoveryStatus.ACCEPTED);
    expect(outcome.provisionRefused).toBe(false);
  });

  test('the file is append-only JSON lines, owner-only; a torn last line is ignored and the next append starts a new line', () => {
    const path = join(dir, 'hub.db');
    const store = new HubStore(path);
    const one = provisioned(store);
    const two = provisioned(store);
    store.revokeDevice(one.deviceId, 'cli:op', undefined, 1);
    writeFileSync(`${path}.revoked`, readFileSync(`${path}.revoked`, 'utf8') + '{"deviceId":"00', { flag: 'w' }); // a crash mid-append
    expect(readRevocations(`${path}.revoked`).map((r) => r.deviceId)).toEqual([one.deviceId]);
    store.revokeDevice(two.deviceId, 'cli:op', 'lost', 2);
    expect(readRevocations(`${path}.revoked`).map((r) => r.deviceId)).toEqual([one.deviceId, two.deviceId]);
    expect(statSync(`${path}.revoked`).mode & 0o777).toBe(0o600);
    store.close();
  });
});

describe('hub static keys (docs/HUB.md §14.3)', () => {
  test('created with the database, owner-only, beside the KEK; not inside the database', () => {
    const path = join(dir, 'hub.db');
    const store = new HubStore(path);
    store.close();
    const file = `${path}.static`;
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const keys = readStaticKeyFile(file);
    expect(keys.current).toBe(1);
    expect(keys.keys).toHaveLength(1);
    expect(readFileSync(path).includes(Buffer.from(keys.keys[0]?.privateKey as Uint8Array))).toBe(false);
    expect(readKeyringFile(`${path}.kek`).size).toBe(1);
  });

  test('rotate adds a current pair and keeps the old; retire is refused for the current one and while devices name it', () => {
    const path = join(dir, 'hub.db');
    const store = new HubStore(path);
    const file = `${path}.static`;
    const first = readStaticKeyFile(file).keys[0];
    provisioned(store, { devicePublicKey: new Uint8Array(32).fill(1), hubStaticId: 1 });
    const second = rotateStaticKey(file);
    expect(second.id).toBe(2);
    const after = readStaticKeyFile(file);
    expect(after.current).toBe(2);
    expect(after.keys.map((k) => k.id)).toEqual([1, 2]);
    expect(after.keys[0]?.privateKey).toEqual(first?.privateKey); // devices knowing key 1 still recover
    expect(() => retireStaticKey(file, 2, 0)).toThrow(/current/);
    expect(() => retireStaticKey(file, 1, store.staticKeyReferences().get(1) ?? 0)).toThrow(/1 device record/);
    expect(readStaticKeyFile(file).keys).toHaveLength(2);
    expect(() => retireStaticKey(file, 7, 0)).toThrow(StaticKeyError);
    retireStaticKey(file, 1, 0);
    expect(readStaticKeyFile(file).keys.map((k) => k.id)).toEqual([2]);
    store.close();
  });

  test('a file readable by others, a pair that does not match, or a current id it lacks is refused', () => {
    const path = join(dir, 'hub.db');
    new HubStore(path).close();
    const file = `${path}.static`;
    const keys = readStaticKeyFile(file);
    chmodSync(file, 0o644);
    expect(() => readStaticKeyFile(file)).toThrow(/STATIC_KEY_FILE_MODE/);
    chmodSync(file, 0o600);
    const pair = keys.keys[0] as (typeof keys.keys)[number];
    writeStaticKeyFile(file, { current: 1, keys: [{ ...pair, publicKey: new Uint8Array(32).fill(9) }] });
    expect(() => readStaticKeyFile(file)).toThrow(/does not belong/);
    writeStaticKeyFile(file, { current: 5, keys: [pair] });
    expect(() => readStaticKeyFile(file)).toThrow(/current/);
    const error = (() => {
      try {
        readStaticKeyFile(file);
      } catch (e) {
        return (e as Error).message;
      }
      return '';
    })();
    expect(error).not.toContain(Buffer.from(pair.privateKey).toString('hex'));
  });
});

describe('per-source buckets (before authentication)', () => {
  test('a source is limited after its burst and refills; memory stays bounded by maxSources', () => {
    const buckets = new SourceBuckets({ burst: 3, perMinute: 6, maxSources: 100 });
    for (let i = 0; i < 3; i++) {
      expect(buckets.allows('10.0.0.1', 0)).toBe(true);
      buckets.charge('10.0.0.1', 0);
    }
    expect(buckets.allows('10.0.0.1', 0)).toBe(false);
    expect(buckets.allows('10.0.0.2', 0)).toBe(true); // another source is unaffected
    expect(buckets.allows('10.0.0.1', 10_000)).toBe(true); // 6 a minute: one token per 10 s
    for (let i = 0; i < 10_000; i++) buckets.charge(`192.0.${i >> 8}.${i & 255}`, 1);
    expect(buckets.size).toBeLessThanOrEqual(100);
  });
});
