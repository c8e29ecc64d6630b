/**
 * Key wrapping for the keystore (docs/KEYSTORE.md §10): each 64-byte
 * Lockstep key is stored encrypted under a per-device key-wrapping key
 * (KWK) that lives in its own flash-encrypted partition, the way ESP-IDF's
 * NVS encryption keeps its keys in an encrypted `nvs_keys` partition.
 *
 *   KWK            = 64 bytes: ivKey = KWK[0..32], aesKey = KWK[32..64]
 *   IV             = HMAC-SHA-512(ivKey, "lockstep keywrap v1" ‖ device id (8) ‖ key id (u32 BE))[0..16]
 *   wrap(key)      = AES-256-CBC(aesKey, IV, key), no padding (64 bytes = 4 blocks)
 *   unwrap(bytes)  = AES-256-CBC⁻¹(aesKey, IV, bytes)
 *
 * Invariants:
 * - deterministic: the same (device, key id, key) always wraps to the same
 *   64 bytes, so the journal's idempotence rules (same future stored again =
 *   no-op, a different one = LOCAL_BUSY) hold unchanged on wrapped bytes;
 * - unwrap never fails on content: a wrong KWK or tampered bytes give a
 *   different 64-byte key (which the hub then rejects), never an exception.
 *   Integrity of the stored bytes is the journal's CRC (docs/KEYSTORE.md §10.3);
 * - composed only from CipherPrimitives (no primitive implemented here);
 * - the KWK halves, IVs and HMAC outputs are wiped when no longer needed;
 *   `dispose()` wipes the wrapper's copy of the KWK.
 */
import { wipe } from '../bytes';
import type { CipherPrimitives } from '../crypto/primitives';
import { LockstepError } from '../errors';
import { DEVICE_ID_BYTES, KEY_BYTES } from '../platform/keys';

/** Length of the key-wrapping key: 32-byte IV-derivation key ‖ 32-byte AES-256 key. */
export const KEY_WRAP_KEY_BYTES = 64;
/** Wrapped keys are exactly as long as the keys (CBC without padding over 4 blocks). */
export const WRAPPED_KEY_BYTES = KEY_BYTES;

const HALF_KWK_BYTES = 32;
const IV_BYTES = 16;
const MAX_KEY_ID = 0xffffffff;
/** "lockstep keywrap v1" in ASCII: domain separation of the IV derivation. */
const IV_LABEL = asciiBytes('lockstep keywrap v1');
/** The label of the static private key's IV (docs/KEYSTORE.md §12.2): never equal to a key's (another label, no key id). */
const STATIC_IV_LABEL = asciiBytes('lockstep keywrap static v1');
/** The device's static X25519 private key (s_d, docs/PROTOCOL.md §12.6): two AES blocks. */
export const STATIC_PRIVATE_KEY_BYTES = 32;

export class KeyWrapper {
  readonly #primitives: CipherPrimitives;
  readonly #ivKey: Uint8Array;
  readonly #aesKey: Uint8Array;

  /** Copies `kwk` (64 bytes, else LOCAL_BAD_ARGUMENT); the caller may wipe its own copy. */
  constructor(primitives: CipherPrimitives, kwk: Uint8Array) {
    if (!(kwk instanceof Uint8Array) || kwk.length !== KEY_WRAP_KEY_BYTES) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `key-wrapping key must be ${KEY_WRAP_KEY_BYTES} bytes`);
    }
    this.#primitives = primitives;
    this.#ivKey = kwk.slice(0, HALF_KWK_BYTES);
    this.#aesKey = kwk.slice(HALF_KWK_BYTES);
  }

  /** Returns the 64 stored bytes for `key` (a fresh array). */
  wrap(deviceId: Uint8Array, keyId: number, key: Uint8Array): Uint8Array {
    checkKeyBytes(key, 'key');
    const iv = this.#iv(deviceId, keyId);
    try {
      return this.#primitives.aes256CbcEncrypt(this.#aesKey, iv, key);
    } finally {
      wipe(iv);
    }
  }

  /** Returns the key for 64 stored bytes (a fresh array). Never fails on content. */
  unwrap(deviceId: Uint8Array, keyId: number, wrapped: Uint8Array): Uint8Array {
    checkKeyBytes(wrapped, 'wrapped key');
    const iv = this.#iv(deviceId, keyId);
    try {
      return this.#primitives.aes256CbcDecrypt(this.#aesKey, iv, wrapped);
    } finally {
      wipe(iv);
    }
  }

  /**
   * The device's static private key s_d (32 bytes) wrapped the same way:
   * AES-256-CBC without padding under an IV from its own label and the
   * device id (one s_d per device, so the IV is unique under the KWK).
   */
  wrapStaticKey(deviceId: Uint8Array, privateKey: Uint8Array): Uint8Array {
    checkStaticBytes(privateKey, 'static private key');
    const iv = this.#staticIv(deviceId);
    try {
      return this.#primitives.aes256CbcEncrypt(this.#aesKey, iv, privateKey);
    } finally {
      wipe(iv);
    }
  }

  /** The inverse of wrapStaticKey; never fails on content. */
  unwrapStaticKey(deviceId: Uint8Array, wrapped: Uint8Array): Uint8Array {
    checkStaticBytes(wrapped, 'wrapped static private key');
    const iv = this.#staticIv(deviceId);
    try {
      return this.#primitives.aes256CbcDecrypt(this.#aesKey, iv, wrapped);
    } finally {
      wipe(iv);
    }
  }

  #staticIv(deviceId: Uint8Array): Uint8Array {
    if (!(deviceId instanceof Uint8Array) || deviceId.length !== DEVICE_ID_BYTES) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `device id must be ${DEVICE_ID_BYTES} bytes`);
    }
    const mac = this.#primitives.hmacSha512(this.#ivKey, [STATIC_IV_LABEL, deviceId]);
    const iv = mac.slice(0, IV_BYTES);
    wipe(mac);
    return iv;
  }

  /** Wipes the KWK halves; the wrapper must not be used afterwards. */
  dispose(): void {
    wipe(this.#ivKey);
    wipe(this.#aesKey);
  }

  /** The synthetic IV: unique per (device, key id) under one KWK, unpredictable without it. */
  #iv(deviceId: Uint8Array, keyId: number): Uint8Array {
    if (!(deviceId instanceof Uint8Array) || deviceId.length !== DEVICE_ID_BYTES) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `device id must be ${DEVICE_ID_BYTES} bytes`);
    }
    if (!Number.isInteger(keyId) || keyId < 0 || keyId > MAX_KEY_ID) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', 'key id must be a u32');
    }
    const id = new Uint8Array(4);
    new DataView(id.buffer).setUint32(0, keyId, false);
    const mac = this.#primitives.hmacSha512(this.#ivKey, [IV_LABEL, deviceId, id]);
    const iv = mac.slice(0, IV_BYTES);
    wipe(mac);
    return iv;
  }
}

function checkKeyBytes(bytes: Uint8Array, name: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== KEY_BYTES) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', `${name} must be ${KEY_BYTES} bytes`);
  }
}

function checkStaticBytes(bytes: Uint8Array, name: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== STATIC_PRIVATE_KEY_BYTES) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', `${name} must be ${STATIC_PRIVATE_KEY_BYTES} bytes`);
  }
}

function asciiBytes(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}
