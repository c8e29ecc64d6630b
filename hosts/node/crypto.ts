/**
 * Node bindings of the crypto seam: node:crypto's AES-256-CBC (padding
 * disabled: PKCS#7 lives in the shared composition) and HMAC-SHA-512, and
 * crypto.randomFillSync (pooled for small requests) as the random source.
 */
import { createCipheriv, createDecipheriv, createHmac, randomFillSync } from 'node:crypto';
import { composeAead } from '../../modules/crypto/a256cbc-hs512';
import type { Aead, CipherPrimitives, RandomSource } from '../../modules/crypto/primitives';

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
