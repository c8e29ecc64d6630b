/**
 * The key a dh pending slot stands for, once a device share is known
 * (docs/PROTOCOL.md §11.3, HK8). The hub core derives it from the share a
 * device frame carries; checkers (the verification, the demo's sync check)
 * use the same function to compare what each side holds.
 */
import { deriveRekeyKey, type EphemeralKeyPair } from '../crypto/dh-rekey';
import type { KeyAgreementPrimitives } from '../crypto/primitives';
import { bytesEqual } from '../bytes';
import type { FutureSlot, KeySlot } from '../platform/keys';

export interface DhPending {
  readonly id: number;
  readonly dh: EphemeralKeyPair;
}

/** K_P from the hub's side: salt = the hub's active key (the key REKEY_DH was sealed under). Throws BAD_KEY_SHARE. */
export function derivePendingKey(primitives: KeyAgreementPrimitives, active: KeySlot, pending: DhPending, deviceId: Uint8Array, deviceShare: Uint8Array): Uint8Array {
  return deriveRekeyKey(primitives, {
    previousKey: active.key,
    privateKey: pending.dh.privateKey,
    peerShare: deviceShare,
    deviceId,
    newKeyId: pending.id,
    hubShare: pending.dh.publicKey,
    deviceShare,
  });
}

/** What a checker compares: a dh pending slot has no key until a device share is known. */
export const NO_KEY_YET = new Uint8Array(0);

/**
 * The pending slot as a KeySlot seen against one device view: classic as it
 * is; dh resolved to the key it leads to with the share of the device's
 * future key (same id, and from this very exchange), else to NO_KEY_YET.
 */
export function pendingSlotFor(
  primitives: KeyAgreementPrimitives,
  active: KeySlot,
  pending: { readonly id: number; readonly key?: Uint8Array; readonly dh?: EphemeralKeyPair },
  deviceId: Uint8Array,
  future: FutureSlot | undefined,
  derive: typeof derivePendingKey = derivePendingKey,
): KeySlot {
  if (pending.dh === undefined) return { id: pending.id, key: pending.key ?? NO_KEY_YET };
  const shares = future?.shares;
  if (future === undefined || shares === undefined || future.id !== pending.id || !bytesEqual(shares.hub, pending.dh.publicKey)) return { id: pending.id, key: NO_KEY_YET };
  try {
    return { id: pending.id, key: derive(primitives, active, { id: pending.id, dh: pending.dh }, deviceId, shares.device) };
  } catch {
    return { id: pending.id, key: NO_KEY_YET };
  }
}
