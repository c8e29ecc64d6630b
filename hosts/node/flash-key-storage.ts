/**
 * The device host's key storage over the flash keystore
 * (modules/keystore/keystore.ts, or its key-wrapped form): every mount is a
 * boot (power restored first when the flash supports cuts), every write is
 * durable on return.
 * Storage refusals and flash failures propagate as thrown errors; the
 * device host then reboots and mounts again.
 */
import { LockstepError } from '../../modules/errors';
import { Keystore } from '../../modules/keystore/keystore';
import { openKeystore, type KeyStorage } from '../../modules/keystore/wrapped-keystore';
import type { Flash } from '../../modules/platform/flash';
import type { DeviceKeys, KeySlot } from '../../modules/platform/keys';
import { nodePrimitives } from './crypto';
import type { DeviceKeyStorage } from './device-host';

export interface FlashKeyStorageOptions {
  /**
   * The key-wrap partition image (keywrap.bin from `provision --key-wrap`):
   * keys in the journal are then wrapped under its KWK (docs/KEYSTORE.md §10).
   * Absent: the plain journal.
   */
  readonly keyWrapImage?: Uint8Array;
}

export class FlashKeyStorage implements DeviceKeyStorage {
  readonly flash: Flash & { restorePower?(): void };
  readonly #keyWrapImage: Uint8Array | undefined;
  #keystore: KeyStorage | undefined;

  constructor(flash: Flash & { restorePower?(): void }, options: FlashKeyStorageOptions = {}) {
    this.flash = flash;
    this.#keyWrapImage = options.keyWrapImage?.slice();
  }

  mount(): { deviceId: Uint8Array; keys: DeviceKeys } {
    this.flash.restorePower?.();
    const keystore: KeyStorage =
      this.#keyWrapImage === undefined
        ? new Keystore(this.flash)
        : openKeystore({ openFlash: () => this.flash, keyWrapImage: this.#keyWrapImage, primitives: nodePrimitives, requireKeyWrap: true, warn: () => {} });
    const result = keystore.mount();
    if (!result.provisioned) throw new LockstepError('UNPROVISIONED', `${result.reason}: ${result.detail}`);
    this.#keystore = keystore;
    return { deviceId: result.deviceId, keys: result.keys };
  }

  storeFuture(slot: KeySlot): void {
    this.#mounted().storeFuture(slot.id, slot.key);
  }

  promote(id: number): void {
    this.#mounted().promote(id);
  }

  #mounted(): KeyStorage {
    if (this.#keystore === undefined) throw new LockstepError('LOCAL_NOT_READY', 'keystore not mounted');
    return this.#keystore;
  }
}

/** Volatile key storage (no flash model): for load generators such as the hub benchmark. */
export class MemoryKeyStorage implements DeviceKeyStorage {
  readonly #deviceId: Uint8Array;
  #keys: DeviceKeys;

  constructor(deviceId: Uint8Array, active: KeySlot) {
    this.#deviceId = deviceId.slice();
    this.#keys = { active: { id: active.id, key: active.key.slice() } };
  }

  mount(): { deviceId: Uint8Array; keys: DeviceKeys } {
    return { deviceId: this.#deviceId.slice(), keys: this.#keys };
  }

  storeFuture(slot: KeySlot): void {
    this.#keys = { active: this.#keys.active, future: { id: slot.id, key: slot.key.slice() } };
  }

  promote(id: number): void {
    const future = this.#keys.future;
    if (future === undefined || future.id !== id) throw new LockstepError('LOCAL_BAD_ARGUMENT', `no future key ${id} to promote`);
    this.#keys = { active: future };
  }
}
