/**
 * The crypto shim: CipherPrimitives (modules/crypto/primitives.ts) over the
 * Moddable SDK's own `crypt` classes — `BlockCipher` AES, `Mode` CBC without
 * padding, and the SDK's `hmac` module over `Digest` SHA-512. The AEAD itself
 * is composed in modules/crypto/a256cbc-hs512.ts, so the simulator runs the
 * same composition, padding and tag check as Node.
 *
 * The SDK classes are injected (see sdk-crypt.js for the real ones), which
 * lets the tests run this file on Node against node:crypto-backed fakes.
 *
 * Rules:
 * - lengths are checked before anything is allocated; misuse is
 *   LockstepError('LOCAL_BAD_ARGUMENT') (the composition never passes bad
 *   lengths, so this only guards other callers);
 * - key bytes copied into JS buffers here are wiped before returning; the
 *   copies the native classes keep in their host chunks live until garbage
 *   collection (the SDK offers no wipe), one reason ESP32 uses the native module.
 */
import { wipe } from '../../modules/bytes';
import type { CipherPrimitives } from '../../modules/crypto/primitives';
import { LockstepError } from '../../modules/errors';

const AES_256_KEY_BYTES = 32;
const AES_BLOCK_BYTES = 16;
const HMAC_SHA512_BYTES = 64;

export interface CbcMode {
  encrypt(data: Uint8Array, result: ArrayBuffer): ArrayBuffer;
  decrypt(data: Uint8Array, result: ArrayBuffer): ArrayBuffer;
}

export interface Hmac {
  process(...items: Uint8Array[]): ArrayBuffer;
}

/** The constructors the shim needs, shaped like the SDK's (modules/crypt/digest/crypt.js, modules/crypt/etc/hmac.js). */
export interface CryptClasses<Cipher, Hash> {
  readonly BlockCipher: new (cipher: 'AES', key: ArrayBuffer) => Cipher;
  readonly Mode: new (mode: 'CBC', cipher: Cipher, iv: ArrayBuffer, padding: boolean) => CbcMode;
  readonly Digest: new (type: 'SHA512') => Hash;
  readonly HMAC: new (digest: Hash, key: Uint8Array) => Hmac;
}

export function cryptPrimitives<Cipher, Hash>(classes: CryptClasses<Cipher, Hash>): CipherPrimitives {
  function cbc(key: Uint8Array, iv: Uint8Array, data: Uint8Array, encrypt: boolean): Uint8Array {
    if (key.length !== AES_256_KEY_BYTES) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'AES-256 key is 32 bytes');
    if (iv.length !== AES_BLOCK_BYTES) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'CBC iv is 16 bytes');
    if (data.length % AES_BLOCK_BYTES !== 0) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'CBC data is whole blocks');
    // BlockCipher and Mode read key and iv with xsmcToArrayBuffer: whole ArrayBuffers, not views.
    const keyCopy = key.slice();
    const ivCopy = iv.slice();
    const out = new ArrayBuffer(data.length);
    try {
      const mode = new classes.Mode('CBC', new classes.BlockCipher('AES', keyCopy.buffer), ivCopy.buffer, false);
      if (data.length > 0) {
        if (encrypt) mode.encrypt(data, out);
        else mode.decrypt(data, out);
      }
    } finally {
      wipe(keyCopy);
    }
    return new Uint8Array(out);
  }

  return {
    aes256CbcEncrypt(key, iv, data) {
      return cbc(key, iv, data, true);
    },
    aes256CbcDecrypt(key, iv, data) {
      return cbc(key, iv, data, false);
    },
    hmacSha512(key, parts) {
      const hmac = new classes.HMAC(new classes.Digest('SHA512'), key);
      try {
        const tag = new Uint8Array(hmac.process(...parts));
        if (tag.length !== HMAC_SHA512_BYTES) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'HMAC-SHA-512 returned a wrong length');
        return tag;
      } finally {
        // The SDK's HMAC keeps key ⊕ ipad / key ⊕ opad in these fields.
        const pads = hmac as { ipad?: unknown; opad?: unknown };
        if (pads.ipad instanceof Uint8Array) wipe(pads.ipad);
        if (pads.opad instanceof Uint8Array) wipe(pads.opad);
      }
    },
  };
}
