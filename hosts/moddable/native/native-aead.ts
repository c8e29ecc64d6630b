/**
 * The native module (lockstep_aead.c) behind the portable seams of
 * modules/crypto/primitives.ts: `nativeAead` (AES_256_CBC_HMAC_SHA_512,
 * RFC 7518 §5.2.2, composed in C), `nativeRandom`, and `nativePrimitives`
 * (AES-256-CBC and HMAC-SHA-512 alone, for the portable composition), and
 * `nativeKeyAgreement` (X25519 and HKDF-SHA-512 for the DH rekey mode).
 *
 * Rules (modules/errors.ts):
 * - every authentication failure of `open` (tag, ciphertext length, padding)
 *   is the single LockstepError('AUTH_FAILED');
 * - local misuse (not a Uint8Array, key not 64 bytes, IV not 16 bytes,
 *   detached/shared buffers, inputs over the module's 1 MiB bound) is
 *   LockstepError('LOCAL_BAD_ARGUMENT');
 * - a low-order X25519 public key (the library refuses it, or the result is
 *   all zero) is LockstepError('BAD_KEY_SHARE') on every backend;
 * - nothing here keeps a reference to its arguments.
 */
import { requireHkdfArguments, requireX25519Key } from '../../../modules/crypto/key-agreement-arguments';
import type { Aead, CipherPrimitives, KeyAgreementPrimitives, RandomSource } from '../../../modules/crypto/primitives';
import { LockstepError } from '../../../modules/errors';
import { cbc, hkdf, hmac, open, random, seal, x25519, x25519Public } from './lockstep_aead';

const KEY_BYTES = 64;
const HALF_KEY_BYTES = 32;
const IV_BYTES = 16;

function requireBytes(value: unknown, name: string, exactLength?: number): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new LockstepError('LOCAL_BAD_ARGUMENT', `${name} must be a Uint8Array`);
  if (exactLength !== undefined && value.length !== exactLength) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', `${name} must be ${exactLength} bytes`);
  }
  return value;
}

/** Runs a native call, reporting its argument errors (TypeError/RangeError) as local misuse. */
function callNative<T>(call: () => T): T {
  try {
    return call();
  } catch (error) {
    if (error instanceof TypeError || error instanceof RangeError) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', error.message);
    }
    throw error;
  }
}

export const nativeAead: Aead = {
  name: 'A256CBC-HS512 (native)',
  seal(key, iv, aad, plaintext) {
    requireBytes(key, 'key', KEY_BYTES);
    requireBytes(iv, 'iv', IV_BYTES);
    requireBytes(aad, 'aad');
    requireBytes(plaintext, 'plaintext');
    return new Uint8Array(callNative(() => seal(key, iv, aad, plaintext)));
  },
  open(key, iv, aad, ciphertext, tag) {
    requireBytes(key, 'key', KEY_BYTES);
    requireBytes(iv, 'iv', IV_BYTES);
    requireBytes(aad, 'aad');
    requireBytes(ciphertext, 'ciphertext');
    requireBytes(tag, 'tag');
    const plaintext = callNative(() => open(key, iv, aad, ciphertext, tag));
    if (plaintext === undefined) throw new LockstepError('AUTH_FAILED');
    return new Uint8Array(plaintext);
  },
};

export const nativeRandom: RandomSource = {
  fill(bytes) {
    requireBytes(bytes, 'bytes');
    callNative(() => random(bytes));
  },
};

export const nativePrimitives: CipherPrimitives = {
  aes256CbcEncrypt(key, iv, data) {
    requireBytes(key, 'key', HALF_KEY_BYTES);
    requireBytes(iv, 'iv', IV_BYTES);
    requireBytes(data, 'data');
    return new Uint8Array(callNative(() => cbc(true, key, iv, data)));
  },
  aes256CbcDecrypt(key, iv, data) {
    requireBytes(key, 'key', HALF_KEY_BYTES);
    requireBytes(iv, 'iv', IV_BYTES);
    requireBytes(data, 'data');
    return new Uint8Array(callNative(() => cbc(false, key, iv, data)));
  },
  hmacSha512(key, parts) {
    requireBytes(key, 'key', HALF_KEY_BYTES);
    for (const part of parts) requireBytes(part, 'part');
    return new Uint8Array(callNative(() => hmac(key, ...parts)));
  },
};

export const nativeKeyAgreement: KeyAgreementPrimitives = {
  name: 'X25519 + HKDF-SHA-512 (native)',
  x25519PublicKey(privateKey) {
    requireX25519Key(privateKey, 'X25519 private key');
    return new Uint8Array(callNative(() => x25519Public(privateKey)));
  },
  x25519(privateKey, peerPublicKey) {
    requireX25519Key(privateKey, 'X25519 private key');
    requireX25519Key(peerPublicKey, 'X25519 public key');
    const shared = callNative(() => x25519(privateKey, peerPublicKey));
    if (shared === undefined) throw new LockstepError('BAD_KEY_SHARE', 'X25519: low-order public key');
    return new Uint8Array(shared);
  },
  hkdfSha512(salt, ikm, info, length) {
    requireHkdfArguments(salt, ikm, info, length);
    return new Uint8Array(callNative(() => hkdf(salt, ikm, info, length)));
  },
};
