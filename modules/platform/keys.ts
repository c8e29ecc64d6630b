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

/**
 * How a device's keys are rotated (docs/PROTOCOL.md §11): `classic` carries
 * the next key sealed under the current one; `dh` derives it from an
 * ephemeral X25519 exchange mixed with the current key. A device's mode only
 * ever moves from classic to dh (on the promotion of a dh-derived key).
 */
export type RekeyMode = 'classic' | 'dh';

/** The two X25519 ephemeral public keys a dh-derived key came from (32 bytes each). */
export interface KeyShares {
  readonly hub: Uint8Array;
  readonly device: Uint8Array;
}

/** A future key; `shares` is present exactly when it was derived by a dh rekey. */
export interface FutureSlot extends KeySlot {
  readonly shares?: KeyShares;
}

/** What a device holds: one active key and at most one future key, and its rekey mode. */
export interface DeviceKeys {
  readonly mode: RekeyMode;
  readonly active: KeySlot;
  readonly future?: FutureSlot;
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

/** A copy of a future slot, shares included. */
export function copyFuture(slot: FutureSlot): FutureSlot {
  if (slot.shares === undefined) return copySlot(slot);
  return { id: slot.id, key: slot.key.slice(), shares: { hub: slot.shares.hub.slice(), device: slot.shares.device.slice() } };
}

/** Copies of both slots. */
export function copyKeys(keys: DeviceKeys): DeviceKeys {
  const active = copySlot(keys.active);
  return keys.future === undefined ? { mode: keys.mode, active } : { mode: keys.mode, active, future: copyFuture(keys.future) };
}

function sharesEqual(a: KeyShares | undefined, b: KeyShares | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return bytesEqual(a.hub, b.hub) && bytesEqual(a.device, b.device);
}

/** Same id and same key bytes (not constant time: for stores and checks, never for secrets from the wire). */
export function slotsEqual(a: KeySlot | undefined, b: KeySlot | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.id === b.id && bytesEqual(a.key, b.key);
}

export function keysEqual(a: DeviceKeys, b: DeviceKeys): boolean {
  return a.mode === b.mode && slotsEqual(a.active, b.active) && slotsEqual(a.future, b.future) && sharesEqual(a.future?.shares, b.future?.shares);
}

/** Ids and the first key bytes, for traces (never a whole key). */
export function describeKeys(keys: DeviceKeys | undefined): string {
  if (keys === undefined) return 'nothing';
  const short = (key: Uint8Array) => toHex(key.subarray(0, 3));
  return `${keys.mode} active ${keys.active.id}:${short(keys.active.key)}${keys.future ? `, future ${keys.future.id}:${short(keys.future.key)}${keys.future.shares ? ' (dh)' : ''}` : ''}`;
}

/** `keys` with `future` stored (rule D1); the caller owns `future`'s bytes. */
export function keysWithFuture(keys: DeviceKeys, future: FutureSlot): DeviceKeys {
  return { mode: keys.mode, active: keys.active, future };
}

/** `keys` after the future key's promotion (rule D2): a dh-derived key moves the mode to dh for good. */
export function keysPromoted(keys: DeviceKeys): DeviceKeys {
  const future = keys.future;
  if (future === undefined) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'no future key to promote');
  return { mode: future.shares !== undefined ? 'dh' : keys.mode, active: { id: future.id, key: future.key } };
}
