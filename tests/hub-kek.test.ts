/**
 * Finding 9 (issue 12): every device key and every pending key is stored
 * wrapped under a key-encryption key (KEK) that is not in the database
 * (tools/hub/kek.ts). The database files contain no key bytes at all; a
 * copy without its KEK opens no device (the hub refuses to start, with a
 * typed error); a plaintext database migrates in place and its plaintext
 * leaves every file; `hub kek rotate` re-wraps every row while the hub
 * serves, and no rotation is lost.
 *
 * SQLite only: these scan SQLite's files, migrate SQLite's plaintext
 * schemas and use the default keyring file next to the database file. The
 * PostgreSQL store wraps with the same keyring (tools/hub/kek.ts): its
 * refusal of a foreign keyring, the online re-wrap under load and the
 * destruction of old versions are in tests/hub-postgres-store.test.ts and
 * tests/hub-postgres-cli.test.ts.
 */
import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { Harness } from '../tools/demo/harness';
import { defaultKeyringPath, isKekError, Keyring, readKeyringFile, WRAPPED_KEY_BYTES, writeKeyringFile } from '../tools/hub/kek';
import { migrate } from '../tools/hub/migrations';
import { newDeviceRecord } from '../tools/hub/records';
import { LockstepHub } from '../tools/hub/server';
import { HubStore } from '../tools/hub/store';

const root = resolve(__dirname, '..');
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-kek-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Every file SQLite keeps for `db`. */
const dbFiles = (db: string) => [db, `${db}-wal`, `${db}-shm`, `${db}-journal`].filter((f) => existsSync(f));

/** Which of `needles` occur in the files, also as any 16-byte piece of a key (a page could split nothing, but a scan should not rely on that). */
function found(files: string[], keys: Uint8Array[]): string[] {
  const hits: string[] = [];
  for (const file of files) {
    const bytes = readFileSync(file);
    keys.forEach((key, k) => {
      for (let at = 0; at + 16 <= key.length; at += 16) {
        if (bytes.indexOf(Buffer.from(key.subarray(at, at + 16))) >= 0) {
          hits.push(`${file}: key ${k} bytes ${at}..${at + 16}`);
          break;
        }
      }
    });
  }
  return hits;
}

function rotateAll(store: HubStore, ids: string[], times: number, keys: Uint8Array[]): void {
  for (let t = 0; t < times; t++) {
    const pending = ids.map((deviceId) => {
      const device = store.getDevice(deviceId)!;
      const key = newDeviceRecord().active.key;
      keys.push(key);
      return { kind: 'storePending' as const, deviceId, id: device.active.id + 1, key };
    });
    expect(store.commit(pending, Date.now()).every(Boolean)).toBe(true);
    expect(store.commit(pending.map(({ deviceId, id }) => ({ kind: 'promote' as const, deviceId, id })), Date.now()).every(Boolean)).toBe(true);
  }
}

test('the database files hold no key bytes at all: active, pending, retired, in the file, the WAL and the shm', () => {
  const db = join(dir, 'hub.db');
  const store = new HubStore(db);
  const records = Array.from({ length: 20 }, () => newDeviceRecord());
  const keys = records.map((r) => r.active.key);
  store.insertDevices(records, Date.now());
  rotateAll(store, records.map((r) => r.deviceId), 3, keys);
  // One device with a pending key outstanding, not promoted.
  const pendingKey = newDeviceRecord().active.key;
  keys.push(pendingKey);
  const first = records[0]!.deviceId;
  store.commit([{ kind: 'storePending', deviceId: first, id: store.getDevice(first)!.active.id + 1, key: pendingKey }], Date.now());
  // Scanned while the store is open (WAL present) and after it is closed.
  expect(found(dbFiles(db), keys)).toEqual([]);
  expect(store.getDevice(first)?.pending?.key).toEqual(pendingKey);
  // What SQLite holds is the wrapped form: 113 bytes, not the key.
  const raw = new Database(db, { readonly: true }).prepare('SELECT active_key, pending_key, active_kek FROM devices WHERE device_id = ?').get(first) as { active_key: Buffer; pending_key: Buffer; active_kek: number };
  expect(raw.active_key.length).toBe(WRAPPED_KEY_BYTES);
  expect(raw.pending_key.length).toBe(WRAPPED_KEY_BYTES);
  store.close();
  expect(found(dbFiles(db), keys)).toEqual([]);
  expect(statSync(defaultKeyringPath(db)).mode & 0o777).toBe(0o600);
});

test('a database copied without its KEK opens no device: the store and the hub refuse, with a typed error', async () => {
  const db = join(dir, 'hub.db');
  const store = new HubStore(db);
  const record = newDeviceRecord();
  store.insertDevice(record, Date.now());
  store.close();
  const copyDir = mkdtempSync(join(tmpdir(), 'lockstep-kek-copy-'));
  try {
    const copy = join(copyDir, 'hub.db');
    copyFileSync(db, copy);
    expect(() => new HubStore(copy, { env: {} })).toThrow(expect.objectContaining({ code: 'KEK_UNAVAILABLE' }));
    await expect(LockstepHub.start({ database: copy, tcp: { port: 0 } })).rejects.toMatchObject({ code: 'KEK_UNAVAILABLE', message: expect.stringMatching(/--kek-file/) });
    expect(existsSync(defaultKeyringPath(copy))).toBe(false); // no KEK is invented for a database that has wrapped keys
    // Another KEK under the same id does not open it either.
    writeKeyringFile(join(copyDir, 'other.kek'), new Map([[1, Buffer.alloc(32, 9)]]));
    expect(() => new HubStore(copy, { kekFile: join(copyDir, 'other.kek') })).toThrow(expect.objectContaining({ code: 'KEK_MISMATCH' }));
    // The readonly listing needs no KEK (no keys in it), but reading a key does.
    const listing = new HubStore(copy, { readonly: true, env: {} });
    expect(listing.listDevices().map((d) => d.deviceId)).toEqual([record.deviceId]);
    expect(() => listing.getDevice(record.deviceId)).toThrow(expect.objectContaining({ code: 'KEK_UNAVAILABLE' }));
    listing.close();
    // With its keyring it opens.
    copyFileSync(defaultKeyringPath(db), defaultKeyringPath(copy));
    expect(new HubStore(copy).getDevice(record.deviceId)?.active.key).toEqual(record.active.key);
  } finally {
    rmSync(copyDir, { recursive: true, force: true });
  }
});

test('keyring sources: a file readable by others is refused; LOCKSTEP_KEK works; rows do not open under another device or key id', () => {
  const file = join(dir, 'hub.kek');
  writeKeyringFile(file, new Map([[7, Buffer.alloc(32, 1)]]));
  chmodSync(file, 0o640);
  expect(() => new HubStore(join(dir, 'a.db'), { kekFile: file })).toThrow(expect.objectContaining({ code: 'KEK_FILE_MODE' }));
  chmodSync(file, 0o600);
  const a = new HubStore(join(dir, 'a.db'), { kekFile: file });
  expect(a.activeKek).toBe(7);
  a.close();
  const env = { LOCKSTEP_KEK: `3:${'ab'.repeat(32)}` };
  const b = new HubStore(join(dir, 'b.db'), { env });
  const record = newDeviceRecord();
  b.insertDevice(record, 1);
  expect(b.activeKek).toBe(3);
  const wrapped = b.wrappedForms(record.deviceId)!.active;
  b.close();
  expect(new HubStore(join(dir, 'b.db'), { env }).getDevice(record.deviceId)?.active.key).toEqual(record.active.key);
  const keyring = new Keyring(new Map([[3, Buffer.from('ab'.repeat(32), 'hex')]]));
  expect(keyring.unwrap(3, record.deviceId, 1, wrapped.bytes)).toEqual(record.active.key);
  for (const [deviceId, keyId] of [['ffffffffffffffff', 1], [record.deviceId, 2]] as const) {
    expect(() => keyring.unwrap(3, deviceId, keyId, wrapped.bytes)).toThrow(expect.objectContaining({ code: 'KEK_MISMATCH' }));
  }
  const flipped = Buffer.from(wrapped.bytes);
  flipped[50] = (flipped[50] as number) ^ 1;
  expect(() => keyring.unwrap(3, record.deviceId, 1, flipped)).toThrow(expect.objectContaining({ code: 'KEK_MISMATCH' }));
  // Two wraps of the same key differ (a fresh salt, hence a fresh GCM key and nonce, per wrap).
  expect(keyring.wrap(3, record.deviceId, 1, record.active.key).equals(keyring.wrap(3, record.deviceId, 1, record.active.key))).toBe(false);
});

test('a plaintext database (schema 2) migrates in place; afterwards no file holds a plaintext key', () => {
  const db = join(dir, 'old.db');
  const old = new Database(db);
  old.pragma('journal_mode = WAL');
  migrate(old, 2);
  const records = Array.from({ length: 50 }, () => newDeviceRecord());
  const keys = records.map((r) => r.active.key);
  const insert = old.prepare('INSERT INTO devices (device_id, active_id, active_key, created_at, active_since, pending_id, pending_key, pending_since) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
  for (const [i, r] of records.entries()) {
    const pending = i % 2 === 0 ? newDeviceRecord().active.key : undefined;
    if (pending) keys.push(pending);
    insert.run(r.deviceId, 1, Buffer.from(r.active.key), 1, 1, pending ? 2 : null, pending ? Buffer.from(pending) : null, pending ? 1 : null);
  }
  old.pragma('wal_checkpoint(TRUNCATE)');
  old.close();
  expect(found(dbFiles(db), keys).length).toBeGreaterThan(0); // the scan sees plaintext when it is there
  const store = new HubStore(db);
  expect(store.schemaVersion).toBeGreaterThanOrEqual(3); // and later migrations on top
  for (const [i, r] of records.entries()) {
    const device = store.getDevice(r.deviceId)!;
    expect(device.active.key).toEqual(r.active.key);
    expect(device.pending !== undefined).toBe(i % 2 === 0);
  }
  expect(found(dbFiles(db), keys)).toEqual([]);
  store.close();
  expect(found(dbFiles(db), keys)).toEqual([]);
});

test('hub kek rotate under load: every row re-wrapped online, old versions removed, no rotation lost, all devices in sync', async () => {
  const harness = await Harness.start({ devices: 30, rotateEveryMs: 100, telemetryEveryMs: 200 });
  const storageErrors: string[] = [];
  harness.hub.on('storageError', ({ deviceId, error }) => storageErrors.push(`${deviceId}: ${error.message}`));
  const db = join(harness.dir, 'hub.db');
  const kekFile = defaultKeyringPath(db);
  try {
    await harness.waitUntil(() => harness.minRotations() >= 2, 30_000, 'rotations under way');
    for (const expected of [2, 3]) {
      const before = [...harness.confirmed.values()].reduce((a, b) => a + b, 0);
      const child = spawn(process.execPath, [join(root, 'node_modules/tsx/dist/cli.mjs'), join(root, 'tools/hub/cli.ts'), 'kek', 'rotate', '--db', db], { cwd: harness.dir });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
      child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
      const code = await new Promise<number | null>((done) => child.on('exit', done));
      expect({ code, stderr }).toMatchObject({ code: 0 });
      const result = JSON.parse(stdout) as { to: number; rewrapped: number; checkpointed: boolean; removedVersions: number[] };
      expect(result).toMatchObject({ to: expected, checkpointed: true, removedVersions: [expected - 1] });
      expect(result.rewrapped).toBeGreaterThan(0);
      expect([...readKeyringFile(kekFile).keys()]).toEqual([expected]);
      // Rotations continue under the new KEK.
      await harness.waitUntil(() => [...harness.confirmed.values()].reduce((a, b) => a + b, 0) >= before + 60, 30_000, 'rotations after the KEK rotation');
      expect(harness.hub.store.activeKek).toBe(expected);
      expect(new Set(harness.hub.store.listDevices().map((d) => d.activeKek))).toEqual(new Set([expected]));
    }
    await harness.settle();
    harness.check();
    expect(harness.problems).toEqual([]);
    expect(storageErrors).toEqual([]);
    // The database opens with the current keyring file alone (the hub reloaded it for the new versions).
    const reader = new HubStore(db, { kekFile });
    for (const device of harness.devices) expect(reader.getDevice(device.deviceId)?.active).toEqual(device.host.keys.active);
    reader.close();
  } finally {
    await harness.close();
  }
}, 120_000);

test('isKekError and the keyring file format', () => {
  const file = join(dir, 'bad.kek');
  writeFileSync(file, '{"format":"other"}', { mode: 0o600 });
  try {
    readKeyringFile(file);
    throw new Error('not refused');
  } catch (error) {
    expect(isKekError(error) && error.code).toBe('KEK_BAD_FORMAT');
  }
});
