/**
 * The device under test's records: either written by the kit for the device
 * (`--provision-out DIR`: the same files tools/provision writes — keystore
 * image, device.json — with a recovery credential whose hub static key is
 * the kit's own, in DIR/hub.static in the reference hub's static key file
 * format, docs/HUB.md §14.3), or read from an existing hub record
 * (`--records FILE`, docs/HUB.md §2) with the hub static key file that
 * goes with it. After a run the record is rewritten with the device's
 * current key, as a hub would keep it, so the next run starts from it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createPrivateFile, replacePrivateFile } from '../../hub/private-file';
import { readStaticKeyFile, newStaticPair } from '../../hub/static-keys';
import { provisionDevice, type HubRecord } from '../../provision/provision';
import type { RekeyMode } from '../../../modules/platform/keys';
import { KeyBook } from './key-book';

export const KIT_STATIC_FILE = 'hub.static';

export interface LoadedRecords {
  readonly book: KeyBook;
  readonly recordPath: string;
  /** The record as read (rewritten with the current key at the end). */
  readonly record: HubRecord;
}

/** Writes the device's provisioning files into `dir` (refuses to overwrite) and returns its records. */
export function provisionForKit(dir: string, options: { mode: RekeyMode; keyWrap?: boolean; keyId?: number; credential?: boolean }): LoadedRecords {
  const staticPath = join(dir, KIT_STATIC_FILE);
  if (existsSync(staticPath)) throw new Error(`${staticPath} exists: the directory was provisioned before (use --records ${join(dir, 'device.json')} --hub-static-key-file ${staticPath})`);
  const pair = newStaticPair(1, Date.now());
  // Without a credential the device enrols one over the wire (the enrolment scenario, DK15) for the kit's hub static key.
  const result = provisionDevice({ outDir: dir, mode: options.mode, keyWrap: options.keyWrap ?? false, keyId: options.keyId ?? 1, ...(options.credential === false ? {} : { hubStatic: { id: pair.id, publicKey: pair.publicKey } }) });
  createPrivateFile(staticPath, `${JSON.stringify({ format: 'lockstep-hub-static/1', current: pair.id, keys: [{ id: pair.id, privateKey: Buffer.from(pair.privateKey).toString('hex'), publicKey: Buffer.from(pair.publicKey).toString('hex'), createdAt: pair.createdAt }] }, null, 2)}\n`);
  return loadRecords(result.recordPath, staticPath);
}

/** Reads a hub record (one object, or an array of one) and the hub static key file (lockstep-hub-static/1). */
export function loadRecords(recordPath: string, staticKeyPath: string | undefined): LoadedRecords {
  const parsed = JSON.parse(readFileSync(recordPath, 'utf8')) as unknown;
  const entries = Array.isArray(parsed) ? parsed : [parsed];
  if (entries.length !== 1) throw new Error(`${recordPath} holds ${entries.length} records; device mode tests one device`);
  const record = entries[0] as Partial<HubRecord>;
  if (typeof record.deviceId !== 'string' || !/^[0-9a-f]{16}$/i.test(record.deviceId)) throw new Error(`${recordPath}: "deviceId" is 16 hex digits`);
  if (typeof record.key !== 'string' || !/^[0-9a-f]{128}$/i.test(record.key)) throw new Error(`${recordPath}: "key" is 128 hex digits`);
  if (typeof record.keyId !== 'number' || !Number.isInteger(record.keyId) || record.keyId < 1 || record.keyId > 0xfffffffe) throw new Error(`${recordPath}: "keyId" is 1..4294967294`);
  if (record.mode !== 'classic' && record.mode !== 'dh') throw new Error(`${recordPath}: "mode" is classic or dh`);
  let hubStatic: { id: number; privateKey: Uint8Array; publicKey: Uint8Array };
  if (staticKeyPath !== undefined) {
    const keys = readStaticKeyFile(staticKeyPath);
    const wanted = record.hubStaticId ?? keys.current;
    const found = keys.keys.find((k) => k.id === wanted);
    if (found === undefined) throw new Error(`${staticKeyPath} holds no hub static key ${wanted} (the record's hubStaticId)`);
    hubStatic = { id: found.id, privateKey: found.privateKey, publicKey: found.publicKey };
  } else {
    // No static key: the recovery scenarios are n/a; an unrelated pair keeps the types simple.
    const pair = newStaticPair(record.hubStaticId ?? 1, Date.now());
    hubStatic = { id: pair.id, privateKey: pair.privateKey, publicKey: pair.publicKey };
  }
  const devicePublicKey = staticKeyPath !== undefined && typeof record.devicePublicKey === 'string' && /^[0-9a-f]{64}$/i.test(record.devicePublicKey) ? new Uint8Array(Buffer.from(record.devicePublicKey, 'hex')) : undefined;
  const book = new KeyBook({
    deviceId: new Uint8Array(Buffer.from(record.deviceId, 'hex')),
    mode: record.mode,
    keyId: record.keyId,
    key: new Uint8Array(Buffer.from(record.key, 'hex')),
    hubStatic,
    ...(devicePublicKey === undefined ? {} : { devicePublicKey }),
    hubStaticKnown: staticKeyPath !== undefined,
  });
  return { book, recordPath, record: record as HubRecord };
}

/** Rewrites the record with the key the device now holds (the kit's hub view), as a hub's database would keep it. */
export function saveRecords(loaded: LoadedRecords): void {
  const book = loaded.book;
  const key = book.key(book.hubActive);
  if (key === undefined) return;
  const record: HubRecord = { ...loaded.record, keyId: book.hubActive, key: Buffer.from(key).toString('hex'), mode: book.mode };
  replacePrivateFile(loaded.recordPath, `${JSON.stringify(record, null, 2)}\n`);
}
