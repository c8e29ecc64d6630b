/** Key material as the state machines and the stores see it. */
import { LockstepError } from '../errors';

/** Length of a Lockstep key: 32-byte MAC key ‖ 32-byte AES key (RFC 7518 §5.2.5). */
export const KEY_BYTES = 64;
/** Length of a device id on the wire. */
export const DEVICE_ID_BYTES = 8;

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
