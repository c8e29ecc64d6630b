/**
 * AES_256_CBC_HMAC_SHA_512 (RFC 7518 §5.2.2, §5.2.5) composed from two
 * primitives a host provides. The composition, PKCS#7 and the
 * constant-time tag check live here, once, for every backend built on
 * CipherPrimitives; the native module (hosts/moddable/native) implements
 * the same steps in C.
 *
 * Rules:
 * 1. K = MAC_KEY (bytes 0..31) ‖ ENC_KEY (bytes 32..63)      (§5.2.2.1 step 1)
 * 2. AL = bit length of AAD as a 64-bit big-endian integer    (§5.2.2.1 step 4)
 * 3. T = first 32 bytes of HMAC-SHA-512(MAC_KEY, A ‖ IV ‖ E ‖ AL)  (§5.2.5)
 * 4. open() compares T in constant time *before* decrypting, and every
 *    failure (length, tag, padding) is the one AUTH_FAILED error: no oracle.
 */
import { constantTimeEqual, wipe } from '../bytes';
import { LockstepError } from '../errors';
import type { Aead, CipherPrimitives } from './primitives';

export const AEAD_KEY_BYTES = 64;
export const AEAD_IV_BYTES = 16;
export const AEAD_TAG_BYTES = 32;
const HALF_KEY_BYTES = 32;
const BLOCK_BYTES = 16;
/** Bounds every length this composition accepts (far above MAX_FRAME_BYTES). */
const MAX_INPUT_BYTES = 1 << 24;

export function composeAead(primitives: CipherPrimitives, name: string): Aead {
  return {
    name,
    seal(key, iv, aad, plaintext) {
      checkKeyAndIv(key, iv, 'LOCAL_BAD_ARGUMENT');
      if (plaintext.length > MAX_INPUT_BYTES || aad.length > MAX_INPUT_BYTES) {
        throw new LockstepError('LOCAL_BAD_ARGUMENT', 'input too long');
      }
      const padded = pkcs7Pad(plaintext);
      const ciphertext = primitives.aes256CbcEncrypt(key.subarray(HALF_KEY_BYTES), iv, padded);
      wipe(padded);
      if (ciphertext.length !== padded.length) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'cipher returned wrong length');
      const out = new Uint8Array(ciphertext.length + AEAD_TAG_BYTES);
      out.set(ciphertext, 0);
      const mac = computeMac(primitives, key, aad, iv, ciphertext);
      out.set(mac.subarray(0, AEAD_TAG_BYTES), ciphertext.length);
      wipe(mac);
      return out;
    },
    open(key, iv, aad, ciphertext, tag) {
      checkKeyAndIv(key, iv, 'LOCAL_BAD_ARGUMENT');
      if (
        tag.length !== AEAD_TAG_BYTES ||
        ciphertext.length === 0 ||
        ciphertext.length % BLOCK_BYTES !== 0 ||
        ciphertext.length > MAX_INPUT_BYTES ||
        aad.length > MAX_INPUT_BYTES
      ) {
        throw new LockstepError('AUTH_FAILED');
      }
      const mac = computeMac(primitives, key, aad, iv, ciphertext);
      const authentic = constantTimeEqual(mac.subarray(0, AEAD_TAG_BYTES), tag);
      wipe(mac);
      if (!authentic) throw new LockstepError('AUTH_FAILED');
      const padded = primitives.aes256CbcDecrypt(key.subarray(HALF_KEY_BYTES), iv, ciphertext);
      const plaintextLength = pkcs7UnpaddedLength(padded);
      if (plaintextLength < 0) {
        wipe(padded);
        throw new LockstepError('AUTH_FAILED');
      }
      const plaintext = padded.slice(0, plaintextLength);
      wipe(padded);
      return plaintext;
    },
  };
}

function checkKeyAndIv(key: Uint8Array, iv: Uint8Array, code: 'LOCAL_BAD_ARGUMENT'): void {
  if (key.length !== AEAD_KEY_BYTES) throw new LockstepError(code, `key must be ${AEAD_KEY_BYTES} bytes`);
  if (iv.length !== AEAD_IV_BYTES) throw new LockstepError(code, `iv must be ${AEAD_IV_BYTES} bytes`);
}

/** The full 64-byte HMAC; T is its first AEAD_TAG_BYTES (rule 3). The caller wipes it. */
function computeMac(
  primitives: CipherPrimitives,
  key: Uint8Array,
  aad: Uint8Array,
  iv: Uint8Array,
  ciphertext: Uint8Array,
): Uint8Array {
  const al = new Uint8Array(8);
  // AAD bit length (rule 2); AAD is bounded well below 2^53 bits, so split high/low words.
  const bits = aad.length * 8;
  const high = Math.floor(bits / 0x100000000);
  const low = bits >>> 0;
  al[0] = high >>> 24;
  al[1] = (high >>> 16) & 0xff;
  al[2] = (high >>> 8) & 0xff;
  al[3] = high & 0xff;
  al[4] = low >>> 24;
  al[5] = (low >>> 16) & 0xff;
  al[6] = (low >>> 8) & 0xff;
  al[7] = low & 0xff;
  return primitives.hmacSha512(key.subarray(0, HALF_KEY_BYTES), [aad, iv, ciphertext, al]);
}

/** PKCS#7 (RFC 5652 §6.3): always adds 1..16 bytes. */
export function pkcs7Pad(data: Uint8Array): Uint8Array {
  const padLength = BLOCK_BYTES - (data.length % BLOCK_BYTES);
  const out = new Uint8Array(data.length + padLength);
  out.set(data, 0);
  out.fill(padLength, data.length);
  return out;
}

/**
 * Length without padding, or -1 when the padding is malformed. Reached only
 * after the tag verified, so its timing reveals nothing an attacker can use.
 */
export function pkcs7UnpaddedLength(padded: Uint8Array): number {
  const padLength = padded[padded.length - 1] as number;
  if (padLength < 1 || padLength > BLOCK_BYTES || padLength > padded.length) return -1;
  for (let i = padded.length - padLength; i < padded.length; i++) {
    if (padded[i] !== padLength) return -1;
  }
  return padded.length - padLength;
}
