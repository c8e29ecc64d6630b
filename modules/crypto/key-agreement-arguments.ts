/**
 * The argument rules every KeyAgreementPrimitives backend enforces before it
 * calls its library, so that all of them refuse the same misuse with the same
 * typed error (LOCAL_BAD_ARGUMENT) whatever the library would have done.
 */
import { LockstepError } from '../errors';

export const X25519_KEY_BYTES = 32;
/** RFC 5869 §2.3: L ≤ 255 · HashLen (64 for SHA-512). */
export const HKDF_SHA512_MAX_BYTES = 255 * 64;

export function requireX25519Key(value: unknown, name: string): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array) || value.length !== X25519_KEY_BYTES) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', `${name} must be ${X25519_KEY_BYTES} bytes`);
  }
}

export function requireHkdfArguments(salt: unknown, ikm: unknown, info: unknown, length: unknown): void {
  if (!(salt instanceof Uint8Array)) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'salt must be a Uint8Array');
  if (!(ikm instanceof Uint8Array)) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'ikm must be a Uint8Array');
  if (!(info instanceof Uint8Array)) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'info must be a Uint8Array');
  if (typeof length !== 'number' || !Number.isInteger(length) || length < 1 || length > HKDF_SHA512_MAX_BYTES) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', `HKDF-SHA-512 length must be 1..${HKDF_SHA512_MAX_BYTES}`);
  }
}

/** The typed error for a key share a backend refuses (a low-order point, RFC 7748 §6.1). */
export function badKeyShare(error: unknown): LockstepError {
  return new LockstepError('BAD_KEY_SHARE', error instanceof Error ? error.message : String(error));
}
