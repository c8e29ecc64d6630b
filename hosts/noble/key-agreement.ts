/**
 * X25519 (@noble/curves) and HKDF-SHA-512 (@noble/hashes) behind
 * KeyAgreementPrimitives: the pure-JS baseline, and what runs on XS without
 * the native module (the simulator: the Moddable SDK's crypt modules have
 * neither X25519 nor HKDF). Its own file so that the simulator's manifest
 * (hosts/moddable/manifest_noble.json) takes @noble/curves and
 * @noble/hashes without @noble/ciphers.
 */
import { x25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { badKeyShare, requireHkdfArguments, requireX25519Key } from '../../modules/crypto/key-agreement-arguments';
import type { KeyAgreementPrimitives } from '../../modules/crypto/primitives';

/**
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
