/**
 * Node bindings of the crypto seam: node:crypto's AES-256-CBC (padding
 * disabled: PKCS#7 lives in the shared composition) and HMAC-SHA-512, and
 * crypto.randomFillSync as the random source.
 */
import { createCipheriv, createDecipheriv, createHmac, randomFillSync } from 'node:crypto';
import { composeAead } from '../../modules/crypto/a256cbc-hs512';
import type { Aead, CipherPrimitives, RandomSource } from '../../modules/crypto/primitives';

function toUint8(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.length);
}

export const nodePrimitives: CipherPrimitives = {
  aes256CbcEncrypt(key, iv, data) {
    const cipher = createCipheriv('aes-256-cbc', key, iv);
    cipher.setAutoPadding(false);
    return toUint8(Buffer.concat([cipher.update(data), cipher.final()]));
  },
  aes256CbcDecrypt(key, iv, data) {
    const decipher = createDecipheriv('aes-256-cbc', key, iv);
    decipher.setAutoPadding(false);
    return toUint8(Buffer.concat([decipher.update(data), decipher.final()]));
  },
  hmacSha512(key, parts) {
    const hmac = createHmac('sha512', key);
    for (const part of parts) hmac.update(part);
    return toUint8(hmac.digest());
  },
};

export const nodeAead: Aead = composeAead(nodePrimitives, 'node:crypto');

export const nodeRandom: RandomSource = {
  fill(bytes) {
    randomFillSync(bytes);
  },
};
