/**
 * The one key-storage interface (docs/KEYSTORE.md): what the device loop,
 * the firmware and provisioning use of a keystore. `Keystore` (the plain
 * journal) and `WrappedKeystore` (keys wrapped under the device's KWK) are
 * the implementations on flash; tests and load generators bring their own.
 *
 * Every write is durable when it returns — or, for storage that completes a
 * write later (an external secure element, a flash task), answers
 * PERSIST_LATER, and the host then calls `DeviceLoop.persistCompleted` once
 * it is durable. Every keystore in this repository completes at once.
 */
import type { RecoveryCredential } from '../crypto/recovery';
import type { DeviceKeys, KeyShares, KeySlot, RekeyMode } from '../platform/keys';
import type { MountResult } from './keystore';

export const PERSIST_LATER = 'later';
export type PersistLater = typeof PERSIST_LATER;

export interface KeyStorage {
  /** A boot: reads what the storage durably holds (or why it holds nothing usable). */
  mount(): MountResult;
  readonly keys: DeviceKeys;
  readonly deviceId: Uint8Array;
  /*
   * Recovery (docs/PROTOCOL.md §12). Optional so that a storage without it
   * (a load generator's, the frozen v1 keystore the migration tests use)
   * still fits: the device loop then runs the device without a credential
   * and refuses ENROL (it could not store one). Every keystore of modules/
   * implements them.
   */
  /** The recovery credential (docs/PROTOCOL.md §12.6) after mount, a copy; undefined if none is stored. */
  readonly credential?: RecoveryCredential | undefined;
  /** Provisioning: erases everything and stores `initial` as the active key of `deviceId`, rotated in `mode`, and the credential if given. */
  format(deviceId: Uint8Array, initial: KeySlot, mode: RekeyMode, credential?: RecoveryCredential): void;
  /** DK15: stores the credential once; the same again is a no-op, another is refused with STATIC_KEY_LOCKED (no change). */
  storeCredential?(credential: RecoveryCredential): void | PersistLater;
  /** DK14: (id, key) replaces the future slot (no shares); LOCAL_BAD_ARGUMENT unless id > max(active, future). */
  storeRecovered?(id: number, key: Uint8Array): void | PersistLater;
  /** Rule D1: stores the future key; `shares` (both ephemeral public keys) exactly when it was dh-derived (§11). */
  storeFuture(id: number, key: Uint8Array, shares?: KeyShares): void | PersistLater;
  /** Rule D2: the future key `expectedId` becomes active; the old active key is erased. */
  promote(expectedId?: number): KeySlot | PersistLater;
  /**
   * Erases retired keys still on the medium (docs/KEYSTORE.md §4.1): `promote`
   * does it too; a boot calls it to finish one a power cut interrupted.
   */
  scrub?(): void;
}
