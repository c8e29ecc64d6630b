/**
 * Node bindings of the crypto seam: node:crypto's AES-256-CBC (padding
 * disabled: PKCS#7 lives in the shared composition) and HMAC-SHA-512,
 * crypto.randomFillSync (pooled for small requests) as the random source, and
 * X25519 with HKDF-SHA-512 for the DH rekey mode (OpenSSL underneath).
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  hkdfSync,
  randomFillSync,
  type KeyObject,
} from 'node:crypto';
import { composeAead } from '../../modules/crypto/a256cbc-hs512';
import type { Aead, CipherPrimitives, KeyAgreementPrimitives, RandomSource } from '../../modules/crypto/primitives';
import { LockstepError } from '../../modules/errors';
import { badKeyShare, requireHkdfArguments, requireX25519Key, X25519_KEY_BYTES } from '../../modules/crypto/key-agreement-arguments';

function toUint8(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.length);
}

/**
 * `update` then `final`; without padding and on whole blocks `final` adds
 * nothing, so the output of `update` is returned as is (no concatenation copy).
 */
function run(cipher: { update(data: Uint8Array): Buffer; final(): Buffer }, data: Uint8Array): Uint8Array {
  const head = cipher.update(data);
  const tail = cipher.final();
  return toUint8(tail.length === 0 ? head : Buffer.concat([head, tail]));
}

export const nodePrimitives: CipherPrimitives = {
  aes256CbcEncrypt(key, iv, data) {
    return run(createCipheriv('aes-256-cbc', key, iv).setAutoPadding(false), data);
  },
  aes256CbcDecrypt(key, iv, data) {
    return run(createDecipheriv('aes-256-cbc', key, iv).setAutoPadding(false), data);
  },
  hmacSha512(key, parts) {
    const hmac = createHmac('sha512', key);
    for (const part of parts) hmac.update(part);
    return toUint8(hmac.digest());
  },
};

export const nodeAead: Aead = composeAead(nodePrimitives, 'node:crypto');

/**
 * Small requests (IVs, nonces, keys: 8–64 bytes, several per rotation) are
 * served from a pool filled by one randomFillSync call per POOL_BYTES, as
 * Node's own randomUUID does: a call into OpenSSL per 16-byte IV was a
 * tenth of the hub's CPU. Bytes handed out are zeroed in the pool at once,
 * so the pool never holds a value it gave away. Large requests go direct.
 */
const POOL_BYTES = 4096;
const POOLED_MAX_BYTES = 256;
const pool = new Uint8Array(POOL_BYTES);
let poolAt = POOL_BYTES;

export const nodeRandom: RandomSource = {
  fill(bytes) {
    if (bytes.length > POOLED_MAX_BYTES) {
      randomFillSync(bytes);
      return;
    }
    if (poolAt + bytes.length > POOL_BYTES) {
      randomFillSync(pool);
      poolAt = 0;
    }
    const end = poolAt + bytes.length;
    bytes.set(pool.subarray(poolAt, end));
    pool.fill(0, poolAt, end);
    poolAt = end;
  },
};

/** Runs a node:crypto X25519 call; OpenSSL fails when the result is all zero (a low-order peer key, RFC 7748 §6.1). */
function agree(call: () => Buffer): Uint8Array {
  try {
    return toUint8(call());
  } catch (error) {
    throw badKeyShare(error);
  }
}

/**
 * How a raw 32-byte key becomes a KeyObject. Node 20 has no raw key format;
 * its only path to EVP_PKEY_new_raw_private_key is a JWK (`d`/`x` are the
 * raw bytes in base64url), while a PKCS#8/SPKI DER goes through OpenSSL 3's
 * generic decoder, measured 11x slower (npm run bench -- dh): 1,340 vs 14,800
 * private-key imports/s on one core, below the hub's goal of 2,000 DH
 * rotations/s on 2 cores (two imports per rotation). The JWK's base64url
 * string of a private key is a JS string, which cannot be wiped: it lives in
 * V8's heap until collected (the DER variant below wipes its Buffer).
 */
interface KeyImport {
  readonly name: string;
  privateKey(bytes: Uint8Array): KeyObject;
  publicKey(bytes: Uint8Array): KeyObject;
  publicBytes(privateKey: KeyObject): Uint8Array;
}

const base64url = (bytes: Uint8Array): string => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('base64url');

const jwkImport: KeyImport = {
  name: 'node:crypto X25519 (raw via JWK) + HKDF-SHA-512',
  privateKey: (bytes) => createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: base64url(bytes), x: '' }, format: 'jwk' }),
  publicKey: (bytes) => createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: base64url(bytes) }, format: 'jwk' }),
  publicBytes(privateKey) {
    const x = createPublicKey(privateKey).export({ format: 'jwk' }).x;
    const bytes = typeof x === 'string' ? Buffer.from(x, 'base64url') : Buffer.alloc(0);
    if (bytes.length !== X25519_KEY_BYTES) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'X25519 public key export');
    return toUint8(bytes);
  },
};

/** RFC 8410 encodings with the X25519 OID 1.3.101.110: fixed prefixes before the 32 raw bytes. */
const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

function withPrefix(prefix: Buffer, bytes: Uint8Array): Buffer {
  const der = Buffer.alloc(prefix.length + bytes.length);
  prefix.copy(der);
  der.set(bytes, prefix.length);
  return der;
}

const derImport: KeyImport = {
  name: 'node:crypto X25519 (PKCS#8/SPKI DER) + HKDF-SHA-512',
  privateKey(bytes) {
    const der = withPrefix(PKCS8_X25519_PREFIX, bytes);
    try {
      return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    } finally {
      der.fill(0);
    }
  },
  publicKey: (bytes) => createPublicKey({ key: withPrefix(SPKI_X25519_PREFIX, bytes), format: 'der', type: 'spki' }),
  publicBytes(privateKey) {
    const der = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
    if (der.length !== SPKI_X25519_PREFIX.length + X25519_KEY_BYTES) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'X25519 SPKI export');
    return Uint8Array.from(der.subarray(SPKI_X25519_PREFIX.length));
  },
};

function nodeKeyAgreementWith(keys: KeyImport): KeyAgreementPrimitives {
  return {
    name: keys.name,
    x25519PublicKey(privateKey) {
      requireX25519Key(privateKey, 'X25519 private key');
      return keys.publicBytes(keys.privateKey(privateKey));
    },
    x25519(privateKey, peerPublicKey) {
      requireX25519Key(privateKey, 'X25519 private key');
      requireX25519Key(peerPublicKey, 'X25519 public key');
      const own = keys.privateKey(privateKey);
      const peer = keys.publicKey(peerPublicKey);
      return agree(() => diffieHellman({ privateKey: own, publicKey: peer }));
    },
    hkdfSha512(salt, ikm, info, length) {
      requireHkdfArguments(salt, ikm, info, length);
      return new Uint8Array(hkdfSync('sha512', ikm, salt, info, length));
    },
  };
}

/**
 * X25519 and HKDF-SHA-512 over node:crypto (OpenSSL). A low-order peer key
 * throws LockstepError('BAD_KEY_SHARE') (OpenSSL refuses the all-zero
 * result); wrong lengths are LOCAL_BAD_ARGUMENT. The hub's backend.
 */
export const nodeKeyAgreement: KeyAgreementPrimitives = nodeKeyAgreementWith(jwkImport);

/** The same over DER-encoded keys: wipes its copies, 11x slower to import (kept for the benchmark). */
export const nodeKeyAgreementDer: KeyAgreementPrimitives = nodeKeyAgreementWith(derImport);
