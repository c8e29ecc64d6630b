/**
 * The hub record: what provisioning hands to a hub for one device, as JSON
 * `{"deviceId": "<16 hex>", "keyId": <u32 >= 1>, "key": "<128 hex>", "mode": "dh" | "classic",
 *   "devicePublicKey": "<64 hex>", "hubStaticId": <u32 >= 1>}`
 * (the same format tools/provision prints). `devicePublicKey` (the device's static X25519 public
 * key S_d) and `hubStaticId` (the hub static key the device was given) come together or not at all
 * (docs/PROTOCOL.md §12.6); a record without them is a device that enrols later. A record without `mode` is one
 * written before the dh mode existed: its device is classic (§11.6). Parsing trusts nothing: every
 * field is checked before a device is created from it.
 */
import { randomFillSync } from 'node:crypto';
import { fromHex, toHex } from '../../modules/bytes';
import { LockstepError } from '../../modules/errors';
import { DEVICE_ID_BYTES, KEY_BYTES, type KeySlot, type RekeyMode } from '../../modules/platform/keys';
import type { HubDeviceRecord, HubPendingSlot } from '../../modules/hub/hub';
import { MAX_KEY_ID } from '../../modules/protocol/constants';

export interface HubRecordJson {
  readonly deviceId: string;
  readonly keyId: number;
  readonly key: string;
  readonly mode: RekeyMode;
  readonly devicePublicKey?: string;
  readonly hubStaticId?: number;
}

export interface DeviceRecord {
  /** 16 lowercase hex digits. */
  readonly deviceId: string;
  readonly active: KeySlot;
  readonly mode: RekeyMode;
  /** Issue 14: S_d (32 bytes) and the hub static id the device knows; both or neither. */
  readonly devicePublicKey?: Uint8Array;
  readonly hubStaticId?: number;
}

export function parseHubRecord(value: unknown): DeviceRecord {
  if (typeof value !== 'object' || value === null) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'hub record must be an object');
  const { deviceId, keyId, key, mode, devicePublicKey, hubStaticId } = value as Record<string, unknown>;
  if (typeof deviceId !== 'string' || !/^[0-9a-fA-F]{16}$/.test(deviceId)) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', `deviceId must be ${DEVICE_ID_BYTES * 2} hex digits`);
  }
  if (typeof keyId !== 'number' || !Number.isInteger(keyId) || keyId < 1 || keyId > MAX_KEY_ID) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', 'keyId must be an integer in 1..2^32-1');
  }
  if (typeof key !== 'string' || key.length !== KEY_BYTES * 2 || !/^[0-9a-fA-F]+$/.test(key)) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', `key must be ${KEY_BYTES * 2} hex digits`);
  }
  if (mode !== undefined && mode !== 'dh' && mode !== 'classic') throw new LockstepError('LOCAL_BAD_ARGUMENT', 'mode must be "dh" or "classic"');
  if ((devicePublicKey === undefined) !== (hubStaticId === undefined)) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'devicePublicKey and hubStaticId go together');
  if (devicePublicKey !== undefined && (typeof devicePublicKey !== 'string' || !/^[0-9a-fA-F]{64}$/.test(devicePublicKey))) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', 'devicePublicKey must be 64 hex digits (an X25519 public key)');
  }
  if (hubStaticId !== undefined && (typeof hubStaticId !== 'number' || !Number.isInteger(hubStaticId) || hubStaticId < 1 || hubStaticId > MAX_KEY_ID)) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', 'hubStaticId must be an integer in 1..2^32-1');
  }
  return {
    deviceId: deviceId.toLowerCase(),
    active: { id: keyId, key: fromHex(key) },
    mode: mode ?? 'classic',
    ...(typeof devicePublicKey === 'string' ? { devicePublicKey: fromHex(devicePublicKey), hubStaticId: hubStaticId as number } : {}),
  };
}

/** Accepts one record, an array of records, or JSON lines of records. */
export function parseHubRecords(text: string): DeviceRecord[] {
  const trimmed = text.trim();
  if (trimmed === '') return [];
  let values: unknown[];
  try {
    const parsed: unknown = JSON.parse(trimmed);
    values = Array.isArray(parsed) ? parsed : [parsed];
  } catch {
    try {
      values = trimmed.split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line) as unknown);
    } catch {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', 'hub records must be JSON (an object, an array, or one object per line)');
    }
  }
  return values.map(parseHubRecord);
}

export function toHubRecordJson(record: DeviceRecord): HubRecordJson {
  return {
    deviceId: record.deviceId,
    keyId: record.active.id,
    key: toHex(record.active.key),
    mode: record.mode,
    ...(record.devicePublicKey !== undefined && record.hubStaticId !== undefined ? { devicePublicKey: toHex(record.devicePublicKey), hubStaticId: record.hubStaticId } : {}),
  };
}

/** A fresh device id and initial key from the OS's secure random source. */
export function newDeviceRecord(keyId = 1, mode: RekeyMode = 'dh'): DeviceRecord {
  const id = new Uint8Array(DEVICE_ID_BYTES);
  const key = new Uint8Array(KEY_BYTES);
  randomFillSync(id);
  randomFillSync(key);
  return { deviceId: toHex(id), active: { id: keyId, key }, mode };
}

/** The core's record of a stored device: its id and key slots, nothing else (HubCore.addDevice / reloadDevice). */
export function coreRecord(stored: {
  readonly deviceId: string;
  readonly mode: RekeyMode;
  readonly active: KeySlot;
  readonly pending?: HubPendingSlot | undefined;
  readonly devicePublicKey?: Uint8Array | undefined;
  readonly hubStaticId?: number | undefined;
  readonly enrolment?: 'armed' | 'ready' | undefined;
}): HubDeviceRecord {
  return {
    deviceId: stored.deviceId,
    mode: stored.mode,
    active: stored.active,
    ...(stored.pending ? { pending: stored.pending } : {}),
    ...(stored.devicePublicKey !== undefined && stored.hubStaticId !== undefined ? { devicePublicKey: stored.devicePublicKey, hubStaticId: stored.hubStaticId } : {}),
    ...(stored.enrolment !== undefined ? { enrolment: stored.enrolment } : {}),
  };
}
