/**
 * X25519 and HKDF-SHA-512 on node:crypto (OpenSSL), for the dh rekey mode
 * (docs/PROTOCOL.md §11).
 *
 * Why the shapes: on Node 20 / OpenSSL 3, importing a raw X25519 private key
 * as PKCS#8 DER goes through the provider decoders and costs ~10× the scalar
 * multiplication (npm run bench -- dh-primitives: ~1,500 imports/s on one
 * core), while a JWK import is Node's own path to EVP_PKEY_new_raw_private_key
 * (~15,000/s: `d` and `x` are the raw bytes in base64url; Node does not check
 * `x` against `d`), and generating a pair, exporting it as JWK and importing a
 * *public* JWK are cheap. So fresh pairs come from generateKeyPairSync
 * (x25519GenerateKeyPair) and their KeyObjects are kept in a small bounded
 * cache keyed by the private bytes, for the agreement that follows in the same
 * process; a private key seen for the first time (a hub restarted with a
 * pending key, the simulation's drawn keys) is imported once, as a JWK. The
 * cost: the base64url string of that private key is a JS string, which cannot
 * be wiped (nodeKeyAgreementDer wipes its DER buffer, 10× slower).
 *
 * Errors: a key or share that is not 32 bytes, or HKDF arguments out of range
 * (length 1..16320), are LockstepError('LOCAL_BAD_ARGUMENT'); a low-order peer
 * share is LockstepError('BAD_KEY_SHARE') (OpenSSL refuses the all-zero result).
 */
import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, type KeyObject } from 'node:crypto';
import { badKeyShare, requireHkdfArguments, requireX25519Key } from '../../modules/crypto/key-agreement-arguments';
import type { KeyAgreementPrimitives } from '../../modules/crypto/primitives';

const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
/** Private KeyObjects by their raw bytes (hex): bounded, oldest first out. */
const CACHE_LIMIT = 8192;
const privateKeys = new Map<string, KeyObject>();

function remember(raw: Uint8Array, key: KeyObject): KeyObject {
  if (privateKeys.size >= CACHE_LIMIT) privateKeys.delete(privateKeys.keys().next().value as string);
  privateKeys.set(Buffer.from(raw).toString('hex'), key);
  return key;
}

type PrivateKeyImport = (privateKey: Uint8Array) => KeyObject;

const importJwk: PrivateKeyImport = (privateKey) =>
  createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: Buffer.from(privateKey).toString('base64url'), x: '' }, format: 'jwk' });

const importDer: PrivateKeyImport = (privateKey) => {
  const der = Buffer.concat([PKCS8_X25519_PREFIX, privateKey]);
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } finally {
    der.fill(0);
  }
};

function privateKeyObject(privateKey: Uint8Array, importKey: PrivateKeyImport = importJwk): KeyObject {
  requireX25519Key(privateKey, 'X25519 private key');
  const name = Buffer.from(privateKey).toString('hex');
  const known = privateKeys.get(name);
  if (known !== undefined) {
    // Used once more at most (public key, then the agreement): keep the cache small.
    privateKeys.delete(name);
    return known;
  }
  return importKey(privateKey);
}

function publicKeyObject(publicKey: Uint8Array): KeyObject {
  requireX25519Key(publicKey, 'X25519 public key');
  return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(publicKey).toString('base64url') }, format: 'jwk' });
}

function rawPublic(key: KeyObject): Uint8Array {
  return new Uint8Array(Buffer.from(key.export({ format: 'jwk' }).x as string, 'base64url'));
}

export const nodeKeyAgreement: KeyAgreementPrimitives = {
  name: 'node:crypto',
  x25519GenerateKeyPair() {
    const pair = generateKeyPairSync('x25519');
    const privateKey = new Uint8Array(Buffer.from(pair.privateKey.export({ format: 'jwk' }).d as string, 'base64url'));
    remember(privateKey, pair.privateKey);
    return { privateKey, publicKey: rawPublic(pair.publicKey) };
  },
  x25519PublicKey(privateKey) {
    const key = privateKeyObject(privateKey);
    remember(privateKey, key);
    return rawPublic(createPublicKey(key));
  },
  x25519(privateKey, peerPublicKey) {
    return agree(privateKeyObject(privateKey), peerPublicKey);
  },
  hkdfSha512(salt, ikm, info, length) {
    requireHkdfArguments(salt, ikm, info, length);
    return new Uint8Array(hkdfSync('sha512', ikm, salt, info, length));
  },
};

function agree(own: KeyObject, peerPublicKey: Uint8Array): Uint8Array {
  const peer = publicKeyObject(peerPublicKey);
  try {
    return new Uint8Array(diffieHellman({ privateKey: own, publicKey: peer }));
  } catch (error) {
    throw badKeyShare(error);
  }
}

/**
 * The same without the cache and the generator, importing every private key
 * as PKCS#8 DER (wiped after): the baseline the JWK import is measured
 * against (npm run bench -- dh-primitives) and a third path under the vectors.
 */
export const nodeKeyAgreementDer: KeyAgreementPrimitives = {
  name: 'node:crypto (DER import)',
  x25519PublicKey(privateKey) {
    requireX25519Key(privateKey, 'X25519 private key');
    return rawPublic(createPublicKey(importDer(privateKey)));
  },
  x25519(privateKey, peerPublicKey) {
    requireX25519Key(privateKey, 'X25519 private key');
    return agree(importDer(privateKey), peerPublicKey);
  },
  hkdfSha512: nodeKeyAgreement.hkdfSha512,
};

/** The same backend without its own generator: the core draws every private key from its injected random source (the simulation's determinism). */
export const nodeKeyAgreementDrawn: KeyAgreementPrimitives = {
  name: 'node:crypto (drawn keys)',
  x25519PublicKey: nodeKeyAgreement.x25519PublicKey,
  x25519: nodeKeyAgreement.x25519,
  hkdfSha512: nodeKeyAgreement.hkdfSha512,
};
