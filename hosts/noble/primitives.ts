/**
 * A pure-JavaScript backend of the crypto seam over @noble/ciphers,
 * @noble/hashes and @noble/curves (audited, runtime-agnostic). Used as an independent
 * implementation in the tests and as the pure-JS baseline the native module
 * is benchmarked against on XS. Randomness is not provided here: each host
 * brings its own secure source.
 */
import { cbc } from '@noble/ciphers/aes.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { composeAead } from '../../modules/crypto/a256cbc-hs512';
import { badKeyShare, requireHkdfArguments, requireX25519Key } from '../../modules/crypto/key-agreement-arguments';
import type { Aead, CipherPrimitives, KeyAgreementPrimitives } from '../../modules/crypto/primitives';

export const noblePrimitives: CipherPrimitives = {
  aes256CbcEncrypt(key, iv, data) {
    return cbc(key, iv, { disablePadding: true }).encrypt(data);
  },
  aes256CbcDecrypt(key, iv, data) {
    return cbc(key, iv, { disablePadding: true }).decrypt(data);
  },
  hmacSha512(key, parts) {
    const mac = hmac.create(sha512, key);
    for (const part of parts) mac.update(part);
    return mac.digest();
  },
};

export const nobleAead: Aead = composeAead(noblePrimitives, '@noble');

/**
 * X25519 (@noble/curves) and HKDF-SHA-512 (@noble/hashes): the pure-JS
 * baseline, and what runs on XS without the native module (the simulator).
 * @noble refuses a low-order peer key before its ladder runs (a blocklist of
 * the five low-order u, after reduction mod p): that is LockstepError('BAD_KEY_SHARE').
 */
export const nobleKeyAgreement: KeyAgreementPrimitives = {
  name: '@noble X25519 + HKDF-SHA-512',
  x25519PublicKey(privateKey) {
    requireX25519Key(privateKey, 'X25519 private key');
    return x25519.getPublicKey(privateKey);
  },
  x25519(privateKey, peerPublicKey) {
    requireX25519Key(privateKey, 'X25519 private key');
    requireX25519Key(peerPublicKey, 'X25519 public key');
    try {
      return x25519.getSharedSecret(privateKey, peerPublicKey);
    } catch (error) {
      throw badKeyShare(error);
    }
  },
  hkdfSha512(salt, ikm, info, length) {
    requireHkdfArguments(salt, ikm, info, length);
    return hkdf(sha512, ikm, salt, info, length);
  },
};
