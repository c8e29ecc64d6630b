/**
 * The keystore with wrapped keys (docs/KEYSTORE.md §10): the same journal
 * (modules/keystore/keystore.ts, unchanged) stores each 64-byte key wrapped
 * under the device's key-wrapping key (key-wrap.ts); callers (the device
 * core, the hosts, provisioning) see plain keys, exactly as with `Keystore`.
 * The rekey mode and a dh-derived key's two shares are public (the shares
 * travel in clear on the wire, docs/PROTOCOL.md §11.2): they are stored as
 * they are, covered by the record's commit CRC like the wrapped key. The
 * recovery credential's private key s_d is wrapped too (its own IV label,
 * KeyWrapper.wrapStaticKey); its two public keys and the hub static id are
 * stored as they are.
 *
 * Invariants:
 * - the journal's guarantees carry over unchanged: every operation here is
 *   one journal operation on wrapped bytes, and wrapping is deterministic, so
 *   before-or-after, idempotent repeats and refusals are the journal's own
 *   (tests/keywrap-keystore.test.ts runs the same power-cut exploration);
 * - arguments are checked (by the wrapper) before anything is written, with
 *   the journal's error codes;
 * - wrapped scratch copies are wiped; returned keys are fresh copies.
 *
 * `openKeystore` is the one place that decides between wrapped and plain
 * storage from the key-wrap partition's content (docs/FIRMWARE.md).
 */
import { wipe } from '../bytes';
import type { RecoveryCredential } from '../crypto/recovery';
import type { CipherPrimitives } from '../crypto/primitives';
import type { Flash } from '../platform/flash';
import type { DeviceKeys, FutureSlot, KeyShares, KeySlot, RekeyMode } from '../platform/keys';
import { decodeKeyWrapImage, keyWrapImageError } from './key-wrap-image';
import { KeyWrapper } from './key-wrap';
import { Keystore } from './keystore';
import type { MountResult } from './keystore';

import type { KeyStorage } from './key-storage';

export type { KeyStorage } from './key-storage';

export class WrappedKeystore implements KeyStorage {
  readonly #journal: Keystore;
  readonly #wrapper: KeyWrapper;

  /** Throws LOCAL_BAD_ARGUMENT if the partition cannot hold a journal. */
  constructor(flash: Flash, wrapper: KeyWrapper) {
    this.#journal = new Keystore(flash);
    this.#wrapper = wrapper;
  }

  mount(): MountResult {
    const result = this.#journal.mount();
    if (!result.provisioned) return result;
    const keys = this.#unwrapKeys(result.deviceId, result.keys);
    if (result.credential === undefined) return { provisioned: true, deviceId: result.deviceId, keys };
    return { provisioned: true, deviceId: result.deviceId, keys, credential: this.#unwrapCredential(result.deviceId, result.credential) };
  }

  get credential(): RecoveryCredential | undefined {
    const credential = this.#journal.credential;
    return credential === undefined ? undefined : this.#unwrapCredential(this.#journal.deviceId, credential);
  }

  storeCredential(credential: RecoveryCredential): void {
    this.#journal.storeCredential(this.#wrapCredential(this.#journal.deviceId, credential));
  }

  storeRecovered(id: number, key: Uint8Array): void {
    const wrapped = this.#wrapper.wrap(this.#journal.deviceId, id, key);
    try {
      this.#journal.storeRecovered(id, wrapped);
    } finally {
      wipe(wrapped);
    }
  }

  get keys(): DeviceKeys {
    return this.#unwrapKeys(this.#journal.deviceId, this.#journal.keys);
  }

  get deviceId(): Uint8Array {
    return this.#journal.deviceId;
  }

  /** The journal's format version (1 until a v1 journal's migration, the first write). */
  get formatVersion(): 1 | 2 {
    return this.#journal.formatVersion;
  }

  format(deviceId: Uint8Array, initial: KeySlot, mode: RekeyMode, credential?: RecoveryCredential): void {
    const wrapped = this.#wrapper.wrap(deviceId, initial.id, initial.key);
    const wrappedCredential = credential === undefined ? undefined : this.#wrapCredential(deviceId, credential);
    try {
      this.#journal.format(deviceId, { id: initial.id, key: wrapped }, mode, wrappedCredential);
    } finally {
      wipe(wrapped);
      if (wrappedCredential !== undefined) wipe(wrappedCredential.device.privateKey);
    }
  }

  /** The credential with s_d wrapped (a fresh copy; the caller wipes it once stored). */
  #wrapCredential(deviceId: Uint8Array, credential: RecoveryCredential): RecoveryCredential {
    // A malformed credential is the journal's LOCAL_BAD_ARGUMENT; wrap only well-formed private keys.
    const privateKey = (credential as Partial<RecoveryCredential> | null | undefined)?.device?.privateKey;
    if (!(privateKey instanceof Uint8Array) || privateKey.length !== 32) return { device: { privateKey: new Uint8Array(0), publicKey: new Uint8Array(0) }, hubStaticId: -1, hubPublicKey: new Uint8Array(0) };
    const wrapped = this.#wrapper.wrapStaticKey(deviceId, privateKey);
    return { device: { privateKey: wrapped, publicKey: credential.device.publicKey }, hubStaticId: credential.hubStaticId, hubPublicKey: credential.hubPublicKey };
  }

  /** `credential` is the journal's copy: its wrapped key is wiped here. */
  #unwrapCredential(deviceId: Uint8Array, credential: RecoveryCredential): RecoveryCredential {
    try {
      return { ...credential, device: { privateKey: this.#wrapper.unwrapStaticKey(deviceId, credential.device.privateKey), publicKey: credential.device.publicKey } };
    } finally {
      wipe(credential.device.privateKey);
    }
  }

  storeFuture(id: number, key: Uint8Array, shares?: KeyShares): void {
    const wrapped = this.#wrapper.wrap(this.#journal.deviceId, id, key); // deviceId throws if not mounted
    try {
      this.#journal.storeFuture(id, wrapped, shares);
    } finally {
      wipe(wrapped);
    }
  }

  promote(expectedId?: number): KeySlot {
    const deviceId = this.#journal.deviceId;
    return this.#unwrapSlot(deviceId, this.#journal.promote(expectedId));
  }

  /** The journal's scrub: the wrapped bytes of retired keys are zeroed. */
  scrub(): void {
    this.#journal.scrub();
  }

  #unwrapKeys(deviceId: Uint8Array, keys: DeviceKeys): DeviceKeys {
    const active = this.#unwrapSlot(deviceId, keys.active);
    return keys.future === undefined ? { mode: keys.mode, active } : { mode: keys.mode, active, future: this.#unwrapFuture(deviceId, keys.future) };
  }

  /** The future's key unwrapped; its shares (public, the journal's copies) kept as they are. */
  #unwrapFuture(deviceId: Uint8Array, future: FutureSlot): FutureSlot {
    const slot = this.#unwrapSlot(deviceId, future);
    return future.shares === undefined ? slot : { ...slot, shares: future.shares };
  }

  /** `slot` is the journal's copy: wiped here. */
  #unwrapSlot(deviceId: Uint8Array, slot: KeySlot): KeySlot {
    try {
      return { id: slot.id, key: this.#wrapper.unwrap(deviceId, slot.id, slot.key) };
    } finally {
      wipe(slot.key);
    }
  }
}

export interface OpenKeystoreOptions {
  /**
   * Opens the keystore partition (never flash-encrypted: the journal needs
   * NOR semantics); called only once the key-wrap partition was accepted, so
   * a refusal leaves nothing open.
   */
  readonly openFlash: () => Flash;
  /** The key-wrap partition's bytes, or undefined if the device has none (no partition, no file). */
  readonly keyWrapImage: Uint8Array | undefined;
  readonly primitives: CipherPrimitives;
  /** Refuse plain storage: a missing or erased key-wrap partition is UNPROVISIONED. */
  readonly requireKeyWrap: boolean;
  /** Where the plain-storage warning goes. */
  readonly warn: (line: string) => void;
}

/**
 * Chooses the storage from the key-wrap partition:
 * - a valid image: WrappedKeystore under its KWK;
 * - none, or erased (every byte 0xFF): plain Keystore with a loud warning
 *   (development), or UNPROVISIONED if `requireKeyWrap`;
 * - anything else (foreign, corrupt, truncated, another version): a typed
 *   error (STORAGE_CORRUPT), never a silent fallback to plain keys.
 */
export function openKeystore(options: OpenKeystoreOptions): KeyStorage {
  const image = options.keyWrapImage === undefined ? undefined : decodeKeyWrapImage(options.keyWrapImage);
  if (image !== undefined && image.ok) {
    try {
      return new WrappedKeystore(options.openFlash(), new KeyWrapper(options.primitives, image.kwk));
    } finally {
      wipe(image.kwk);
    }
  }
  if (image !== undefined && image.reason !== 'erased') throw keyWrapImageError(image.reason, image.detail);
  const why = image === undefined ? 'no key-wrap partition' : 'the key-wrap partition is erased';
  if (options.requireKeyWrap) throw keyWrapImageError('erased', `${why} and keyWrapRequired is set`);
  options.warn(`WARNING: ${why}: keys are stored in PLAINTEXT (development only; provision with --key-wrap, docs/FIRMWARE.md)`);
  return new Keystore(options.openFlash());
}
