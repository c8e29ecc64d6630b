/**
 * A pure-JavaScript backend of the crypto seam over @noble/ciphers and
 * @noble/hashes (audited, runtime-agnostic); the key agreement over
 * @noble/curves is in key-agreement.ts (re-exported here). Used as an independent
 * implementation in the tests and as the pure-JS baseline the native module
 * is benchmarked against on XS. Randomness is not provided here: each host
 * brings its own secure source.
 */
import { cbc } from '@noble/ciphers/aes.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha512 } from '@noble/hashes/sha2.js';
import { composeAead } from '../../modules/crypto/a256cbc-hs512';
import type { Aead, CipherPrimitives } from '../../modules/crypto/primitives';

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


export { nobleKeyAgreement } from './key-agreement';
