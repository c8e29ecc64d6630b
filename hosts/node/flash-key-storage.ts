/**
 * Key storage for devices on Node: the flash keystore (modules/keystore) on
 * any Flash (a file image, memory), plain or key-wrapped, and a volatile
 * store for load generators. All implement the one KeyStorage interface the
 * device loop uses; every write is durable when it returns.
 */
import { LockstepError } from '../../modules/errors';
import type { KeyStorage } from '../../modules/keystore/key-storage';
import type { RecoveryCredential } from '../../modules/crypto/recovery';
import { Keystore, copyCredential, sameCredential, type MountResult } from '../../modules/keystore/keystore';
import { openKeystore } from '../../modules/keystore/wrapped-keystore';
import type { Flash } from '../../modules/platform/flash';
import { copyKeys, keysPromoted, keysWithFuture, type DeviceKeys, type KeyShares, type KeySlot, type RekeyMode } from '../../modules/platform/keys';
import { nodePrimitives } from './crypto';

export interface FlashKeystoreOptions {
  /**
   * The key-wrap partition image (keywrap.bin from `provision --key-wrap`):
   * keys in the journal are then wrapped under its KWK (docs/KEYSTORE.md §10).
   * Absent: the plain journal.
   */
  readonly keyWrapImage?: Uint8Array;
}

/** The keystore journal on `flash`, wrapped under the image's KWK when one is given (a wrong or corrupt image is refused). */
export function openFlashKeystore(flash: Flash, options: FlashKeystoreOptions = {}): KeyStorage {
  const image = options.keyWrapImage;
  if (image === undefined) return new Keystore(flash);
  return openKeystore({ openFlash: () => flash, keyWrapImage: image, primitives: nodePrimitives, requireKeyWrap: true, warn: () => {} });
}

/** Volatile key storage (no flash): for load generators such as the hub benchmark's swarm. */
export class MemoryKeyStorage implements KeyStorage {
  readonly #deviceId: Uint8Array;
  #keys: DeviceKeys;
  #credential: RecoveryCredential | undefined;

  constructor(deviceId: Uint8Array, active: KeySlot, mode: RekeyMode, credential?: RecoveryCredential) {
    this.#deviceId = deviceId.slice();
    this.#keys = { mode, active: { id: active.id, key: active.key.slice() } };
    this.#credential = credential === undefined ? undefined : copyCredential(credential);
  }

  mount(): MountResult {
    const mounted = { provisioned: true as const, deviceId: this.#deviceId.slice(), keys: copyKeys(this.#keys) };
    return this.#credential === undefined ? mounted : { ...mounted, credential: copyCredential(this.#credential) };
  }

  get credential(): RecoveryCredential | undefined {
    return this.#credential === undefined ? undefined : copyCredential(this.#credential);
  }

  storeCredential(credential: RecoveryCredential): void {
    if (this.#credential !== undefined) {
      if (sameCredential(this.#credential, credential)) return;
      throw new LockstepError('STATIC_KEY_LOCKED', 'a credential is already stored');
    }
    this.#credential = copyCredential(credential);
  }

  storeRecovered(id: number, key: Uint8Array): void {
    const highest = Math.max(this.#keys.active.id, this.#keys.future?.id ?? 0);
    if (!Number.isInteger(id) || id <= highest || id > 0xffffffff || key.length !== 64) throw new LockstepError('LOCAL_BAD_ARGUMENT', `recovered id ${id} must be above ${highest}`);
    this.#keys.future?.key.fill(0);
    this.#keys = { mode: this.#keys.mode, active: this.#keys.active, future: { id, key: key.slice() } };
  }

  get keys(): DeviceKeys {
    return copyKeys(this.#keys);
  }

  get deviceId(): Uint8Array {
    return this.#deviceId.slice();
  }

  format(deviceId: Uint8Array, initial: KeySlot, mode: RekeyMode, credential?: RecoveryCredential): void {
    if (deviceId.length !== this.#deviceId.length) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'device id length');
    this.#deviceId.set(deviceId);
    this.#keys = { mode, active: { id: initial.id, key: initial.key.slice() } };
    this.#credential = credential === undefined ? undefined : copyCredential(credential);
  }

  storeFuture(id: number, key: Uint8Array, shares?: KeyShares): void {
    this.#keys = keysWithFuture(this.#keys, shares === undefined ? { id, key: key.slice() } : { id, key: key.slice(), shares: { hub: shares.hub.slice(), device: shares.device.slice() } });
  }

  promote(expectedId?: number): KeySlot {
    const future = this.#keys.future;
    if (future === undefined || (expectedId !== undefined && future.id !== expectedId)) throw new LockstepError('LOCAL_BAD_ARGUMENT', `no future key ${expectedId ?? ''} to promote`);
    this.#keys.active.key.fill(0);
    this.#keys = keysPromoted(this.#keys);
    return { id: future.id, key: future.key.slice() };
  }
}
