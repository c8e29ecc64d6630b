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
import type { DeviceKeys, KeyShares, KeySlot, RekeyMode } from '../platform/keys';
import type { MountResult } from './keystore';

export const PERSIST_LATER = 'later';
export type PersistLater = typeof PERSIST_LATER;

export interface KeyStorage {
  /** A boot: reads what the storage durably holds (or why it holds nothing usable). */
  mount(): MountResult;
  readonly keys: DeviceKeys;
  readonly deviceId: Uint8Array;
  /** Provisioning: erases everything and stores `initial` as the active key of `deviceId`, rotated in `mode`. */
  format(deviceId: Uint8Array, initial: KeySlot, mode: RekeyMode): void;
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
