/**
 * X25519 and HKDF-SHA-512 on node:crypto (OpenSSL), for the dh rekey mode
 * (docs/PROTOCOL.md §11). Raw 32-byte keys go in and out through the fixed
 * DER prefixes of RFC 8410 (PKCS#8 private key, SPKI public key).
 */
import { createPrivateKey, createPublicKey, diffieHellman, hkdfSync } from 'node:crypto';
import type { KeyAgreementPrimitives } from '../../modules/crypto/primitives';

const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

function privateKeyObject(privateKey: Uint8Array) {
  if (privateKey.length !== 32) throw new Error('X25519 private keys are 32 bytes');
  const der = Buffer.concat([PKCS8_X25519_PREFIX, privateKey]);
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } finally {
    der.fill(0);
  }
}

export const nodeKeyAgreement: KeyAgreementPrimitives = {
  name: 'node:crypto',
  x25519PublicKey(privateKey) {
    const spki = createPublicKey(privateKeyObject(privateKey)).export({ format: 'der', type: 'spki' });
    return new Uint8Array(spki.subarray(SPKI_X25519_PREFIX.length));
  },
  x25519(privateKey, peerPublicKey) {
    if (peerPublicKey.length !== 32) throw new Error('X25519 public keys are 32 bytes');
    const publicKey = createPublicKey({ key: Buffer.concat([SPKI_X25519_PREFIX, peerPublicKey]), format: 'der', type: 'spki' });
    return new Uint8Array(diffieHellman({ privateKey: privateKeyObject(privateKey), publicKey }));
  },
  hkdfSha512(salt, ikm, info, length) {
    return new Uint8Array(hkdfSync('sha512', ikm, salt, info, length));
  },
};
