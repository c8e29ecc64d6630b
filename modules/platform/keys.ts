/** Key material as the state machines and the stores see it. */
import { bytesEqual, toHex } from '../bytes';
import { LockstepError } from '../errors';
import { KEY_BYTES } from '../protocol/constants';

export { DEVICE_ID_BYTES, KEY_BYTES } from '../protocol/constants';

export interface KeySlot {
  /** 32-bit unsigned, strictly increasing per device. */
  readonly id: number;
  /** KEY_BYTES bytes. */
  readonly key: Uint8Array;
}

/** What a device holds: one active key and at most one future key. */
export interface DeviceKeys {
  readonly active: KeySlot;
  readonly future?: KeySlot;
}

/** Throws LOCAL_BAD_ARGUMENT unless `slot` has a u32 id above 0 and a KEY_BYTES key. */
export function checkSlot(slot: KeySlot): void {
  if (!Number.isInteger(slot.id) || slot.id <= 0 || slot.id > 0xffffffff) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'key id must be a u32 above 0');
  if (slot.key.length !== KEY_BYTES) throw new LockstepError('LOCAL_BAD_ARGUMENT', `key must be ${KEY_BYTES} bytes`);
}

/** A copy whose key bytes the caller owns (cores wipe retired keys in place). */
export function copySlot(slot: KeySlot): KeySlot {
  return { id: slot.id, key: slot.key.slice() };
}

/** Copies of both slots. */
export function copyKeys(keys: DeviceKeys): DeviceKeys {
  const active = copySlot(keys.active);
  return keys.future === undefined ? { active } : { active, future: copySlot(keys.future) };
}

/** Same id and same key bytes (not constant time: for stores and checks, never for secrets from the wire). */
export function slotsEqual(a: KeySlot | undefined, b: KeySlot | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.id === b.id && bytesEqual(a.key, b.key);
}

export function keysEqual(a: DeviceKeys, b: DeviceKeys): boolean {
  return slotsEqual(a.active, b.active) && slotsEqual(a.future, b.future);
}

/** Ids and the first key bytes, for traces (never a whole key). */
export function describeKeys(keys: DeviceKeys | undefined): string {
  if (keys === undefined) return 'nothing';
  const short = (key: Uint8Array) => toHex(key.subarray(0, 3));
  return `active ${keys.active.id}:${short(keys.active.key)}${keys.future ? `, future ${keys.future.id}:${short(keys.future.key)}` : ''}`;
}
