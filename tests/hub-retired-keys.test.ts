/**
 * Finding 8, hub side (issue 12): once a promotion has committed, no file
 * the hub writes (hub.db, hub.db-wal, hub.db-shm) holds the retired key in
 * any form it was ever stored in: its raw bytes, nor any of its wrapped forms
 * (each wrap under each KEK version it lived under). secure_delete zeroes
 * the row's old bytes in the database pages; the WAL, which keeps a copy of
 * every page each commit wrote, is checkpointed and truncated after each
 * commit that promoted a key (once per group-commit batch).
 *
 * With keys wrapped (finding 9), a raw-bytes scan alone could never fail, so
 * the scan looks for every wrapped form too; and a deliberately broken
 * variant (no truncation) shows that the scan does find them when they stay.
 *
 * SQLite only, by nature: it scans the files SQLite writes and relies on
 * secure_delete and the WAL checkpoint, which PostgreSQL does not have (dead
 * tuples, WAL segments and archives keep old rows out of the hub's reach).
 * PostgreSQL's equivalent is crypto-shredding (docs/HUB.md §13.6): the
 * re-wrap and the destruction of the old KEK version in
 * tests/hub-postgres-store.test.ts and the cron schedule in
 * tests/hub-postgres-cli.test.ts.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Harness } from '../tools/demo/harness';
import { defaultKeyringPath, readKeyringFile, writeKeyringFile } from '../tools/hub/kek';
import { newDeviceRecord } from '../tools/hub/records';
import { HubStore } from '../tools/hub/store';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'lockstep-retired-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const dbFiles = (db: string) => [db, `${db}-wal`, `${db}-shm`, `${db}-journal`].filter((f) => existsSync(f));

/** Every form a key was stored in: the raw key, and per wrap the whole blob and its ciphertext and salt alone. */
class Forms {
  readonly byKey = new Map<string, Buffer[]>();
  add(name: string, ...forms: Uint8Array[]): void {
    const list = this.byKey.get(name) ?? [];
    for (const form of forms) {
      const bytes = Buffer.from(form);
      if (list.some((f) => f.equals(bytes))) continue;
      list.push(bytes);
      if (bytes.length === 113) list.push(bytes.subarray(33, 97), bytes.subarray(1, 33)); // ciphertext, salt
    }
    this.byKey.set(name, list);
  }
  /** Names of keys some form of which is in one of the files. */
  foundIn(files: string[], names: string[]): string[] {
    const contents = files.map((f) => readFileSync(f));
    return names.filter((name) => (this.byKey.get(name) ?? []).some((form) => contents.some((c) => c.indexOf(form) >= 0)));
  }
}

function record(store: HubStore, forms: Forms, deviceId: string): void {
  const device = store.getDevice(deviceId)!;
  const wrapped = store.wrappedForms(deviceId)!;
  forms.add(`${deviceId}/${device.active.id}`, device.active.key, wrapped.active.bytes);
  if (device.pending?.key !== undefined && wrapped.pending) forms.add(`${deviceId}/${device.pending.id}`, device.pending.key, wrapped.pending.bytes);
}

async function retireOnce(options: { truncate: boolean }): Promise<{ retiredFound: string[]; currentFound: string[]; checkpoints: number }> {
  const db = join(dir, `hub-${options.truncate}.db`);
  const store = new HubStore(db, { truncateWalAfterPromotion: options.truncate });
  const forms = new Forms();
  const device = newDeviceRecord();
  store.insertDevice(device, Date.now());
  record(store, forms, device.deviceId);
  // The initial key also lives under a second KEK version (a `kek rotate`): one more wrapped form.
  const kekFile = defaultKeyringPath(db);
  const versions = readKeyringFile(kekFile);
  versions.set(2, randomBytes(32));
  writeKeyringFile(kekFile, versions);
  await store.rotateKek(2);
  record(store, forms, device.deviceId);
  // Some traffic so the page is written again and again (as last-seen updates do).
  for (let i = 0; i < 20; i++) store.touch(new Map([[device.deviceId, Date.now() + i]]));
  // Rotate: the pending key is stored (wrapped), then promoted; key 1 is retired.
  const key2 = newDeviceRecord().active.key;
  store.commit([{ kind: 'storePending', deviceId: device.deviceId, id: 2, key: key2 }], Date.now());
  record(store, forms, device.deviceId);
  const checkpointsBefore = store.scrub.checkpoints;
  expect(store.commit([{ kind: 'promote', deviceId: device.deviceId, id: 2 }], Date.now())).toEqual([true]);
  record(store, forms, device.deviceId);
  const files = dbFiles(db);
  const result = {
    retiredFound: forms.foundIn(files, [`${device.deviceId}/1`]),
    currentFound: forms.foundIn(files, [`${device.deviceId}/2`]),
    checkpoints: store.scrub.checkpoints - checkpointsBefore,
  };
  store.close();
  return result;
}

test('after a promotion commits, no file holds the retired key raw or in any wrapped form it ever had', async () => {
  const result = await retireOnce({ truncate: true });
  expect(result.retiredFound).toEqual([]);
  expect(result.checkpoints).toBe(1);
  // The scan does see a key that is stored: the active key's wrapped form is in the files.
  expect(result.currentFound.length).toBe(1);
});

test('the scan can fail: without the WAL truncation the retired key\'s wrapped forms stay in hub.db-wal', async () => {
  const result = await retireOnce({ truncate: false });
  expect(result.retiredFound.length).toBe(1);
  expect(result.checkpoints).toBe(0);
});

test('one checkpoint per group-commit batch that promotes, none for a batch that only stores pending keys', () => {
  const store = new HubStore(join(dir, 'batch.db'));
  const records = Array.from({ length: 50 }, () => newDeviceRecord());
  store.insertDevices(records, 1);
  const pending = records.map((r) => ({ kind: 'storePending' as const, deviceId: r.deviceId, id: 2, key: newDeviceRecord().active.key }));
  store.commit(pending, 2);
  expect(store.scrub.checkpoints).toBe(0);
  store.commit(pending.map(({ deviceId }) => ({ kind: 'promote' as const, deviceId, id: 2 })), 3);
  expect(store.scrub.checkpoints).toBe(1);
  expect(store.scrub.busy).toBe(0);
  store.close();
});

test('a reader holding an old snapshot blocks the checkpoint without blocking the hub; the next commit completes it', () => {
  const db = join(dir, 'reader.db');
  const store = new HubStore(db);
  const forms = new Forms();
  const a = newDeviceRecord();
  const b = newDeviceRecord();
  store.insertDevices([a, b], 1);
  record(store, forms, a.deviceId);
  store.commit([{ kind: 'storePending', deviceId: a.deviceId, id: 2, key: newDeviceRecord().active.key }], 2);
  // Another process (say `hub devices`) is in the middle of a read.
  const reader = new Database(db, { readonly: true });
  reader.exec('BEGIN');
  reader.prepare('SELECT count(*) FROM devices').get();
  const started = Date.now();
  store.commit([{ kind: 'promote', deviceId: a.deviceId, id: 2 }], 3);
  expect(Date.now() - started).toBeLessThan(1000); // no waiting on the reader
  expect(store.scrub.busy).toBe(1);
  reader.exec('COMMIT');
  reader.close();
  // Any next commit retries the checkpoint (here: another device's pending key).
  store.commit([{ kind: 'storePending', deviceId: b.deviceId, id: 2, key: newDeviceRecord().active.key }], 4);
  expect(store.scrub.busy).toBe(1);
  expect(forms.foundIn(dbFiles(db), [`${a.deviceId}/1`])).toEqual([]);
  store.close();
});

test('a live hub: after rotations settle, no retired key of any device is in the hub\'s files in any form', async () => {
  const harness = await Harness.start({ devices: 10, rotateEveryMs: 100 });
  const forms = new Forms();
  const store = harness.hub.store;
  const commit = store.commit.bind(store);
  // Record every form each key is stored in, right after each group commit.
  store.commit = (ops, now) => {
    const applied = commit(ops, now);
    for (const op of ops) record(store, forms, op.deviceId);
    return applied;
  };
  for (const device of harness.devices) record(store, forms, device.deviceId);
  try {
    await harness.waitUntil(() => harness.minRotations() >= 5, 60_000, '5 rotations on every device');
    await harness.settle();
    const retired = harness.devices.flatMap((device) => {
      const active = harness.hub.deviceState(device.deviceId).activeKeyId;
      return [...forms.byKey.keys()].filter((name) => name.startsWith(`${device.deviceId}/`) && Number(name.split('/')[1]) < active);
    });
    expect(retired.length).toBeGreaterThanOrEqual(50);
    const db = join(harness.dir, 'hub.db');
    expect(forms.foundIn(dbFiles(db), retired)).toEqual([]);
    const active = harness.devices.map((d) => `${d.deviceId}/${harness.hub.deviceState(d.deviceId).activeKeyId}`);
    expect(forms.foundIn(dbFiles(db), active).length).toBe(active.length);
  } finally {
    await harness.close();
  }
}, 90_000);
