// The key wrapper (modules/keystore/key-wrap.ts, docs/KEYSTORE.md §10):
// round trips, distinct ciphertexts per (device, key id), a wrong KWK gives
// another key (never an exception), and a known answer computed here
// independently with node:crypto; run on two backends of the crypto seam.
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { KeyWrapper, KEY_WRAP_KEY_BYTES } from '../modules/keystore/key-wrap';
import { isLockstepError } from '../modules/errors';
import type { CipherPrimitives } from '../modules/crypto/primitives';
import { nodePrimitives } from '../hosts/node/crypto';
import { noblePrimitives } from '../hosts/noble/primitives';

const bytes = (n: number) => new Uint8Array(randomBytes(n));
const counting = (n: number, xor = 0) => Uint8Array.from({ length: n }, (_, i) => i ^ xor);

/** The construction, written out with node:crypto only (not the code under test). */
function referenceWrap(kwk: Uint8Array, deviceId: Uint8Array, keyId: number, key: Uint8Array): Buffer {
  const id = Buffer.alloc(4);
  id.writeUInt32BE(keyId);
  const iv = createHmac('sha512', kwk.subarray(0, 32)).update('lockstep keywrap v1').update(deviceId).update(id).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-256-cbc', kwk.subarray(32), iv);
  cipher.setAutoPadding(false);
  return Buffer.concat([cipher.update(key), cipher.final()]);
}

describe.each([
  ['node:crypto', nodePrimitives],
  ['@noble', noblePrimitives],
] as [string, CipherPrimitives][])('KeyWrapper on %s', (_name, primitives) => {
  test('known answer: pinned vector, equal to the node:crypto reference', () => {
    const kwk = counting(64);
    const deviceId = counting(8);
    const key = counting(64, 0xa0);
    const wrapped = new KeyWrapper(primitives, kwk).wrap(deviceId, 0x01020304, key);
    // IV = 0fb0998645aecd8b340044d8ef141e11 (first 16 bytes of the HMAC).
    expect(Buffer.from(wrapped).toString('hex')).toBe(
      'ca76a8166f792dff825a25bf6afd1dd6eb06597de607b653f1fb2807a11ed85e' +
        '8e395d08eb4c1aa45523bfa0eb406ab7942b22ab202c2068dcb0cbbf2b97bbea',
    );
    for (let i = 0; i < 20; i++) {
      const k = bytes(64);
      const d = bytes(8);
      const id = randomBytes(4).readUInt32BE();
      const key64 = bytes(64);
      expect(Buffer.from(new KeyWrapper(primitives, k).wrap(d, id, key64))).toEqual(referenceWrap(k, d, id, key64));
    }
  });

  test('round trip over random keys, ids and devices, including id 0 and 2^32-1', () => {
    const wrapper = new KeyWrapper(primitives, bytes(64));
    for (const id of [0, 1, 7, 0x80000000, 0xffffffff]) {
      const deviceId = bytes(8);
      const key = bytes(64);
      const wrapped = wrapper.wrap(deviceId, id, key);
      expect(wrapped).toHaveLength(64);
      expect(Buffer.from(wrapped).equals(Buffer.from(key))).toBe(false);
      expect(wrapper.unwrap(deviceId, id, wrapped)).toEqual(key);
    }
  });

  test('deterministic; distinct key ids or devices give distinct ciphertexts for the same key', () => {
    const kwk = bytes(64);
    const wrapper = new KeyWrapper(primitives, kwk);
    const deviceId = bytes(8);
    const key = bytes(64);
    expect(wrapper.wrap(deviceId, 5, key)).toEqual(new KeyWrapper(primitives, kwk).wrap(deviceId, 5, key));
    const seen = new Set<string>();
    for (let id = 1; id <= 50; id++) seen.add(Buffer.from(wrapper.wrap(deviceId, id, key)).toString('hex'));
    for (let d = 0; d < 50; d++) seen.add(Buffer.from(wrapper.wrap(bytes(8), 1, key)).toString('hex'));
    expect(seen.size).toBe(100);
    // Not even one 16-byte block repeats between ids (the IV differs).
    const a = wrapper.wrap(deviceId, 1, key);
    const b = wrapper.wrap(deviceId, 2, key);
    for (let block = 0; block < 4; block++) {
      expect(Buffer.from(a.subarray(block * 16, block * 16 + 16)).equals(Buffer.from(b.subarray(block * 16, block * 16 + 16)))).toBe(false);
    }
  });

  test('a wrong KWK, device id or key id unwraps to a different key, without an exception', () => {
    const deviceId = bytes(8);
    const key = bytes(64);
    const wrapped = new KeyWrapper(primitives, bytes(64)).wrap(deviceId, 3, key);
    const wrong = [
      new KeyWrapper(primitives, bytes(64)).unwrap(deviceId, 3, wrapped),
      new KeyWrapper(primitives, bytes(64)).unwrap(bytes(8), 3, wrapped),
    ];
    for (const got of wrong) {
      expect(got).toHaveLength(64);
      expect(Buffer.from(got).equals(Buffer.from(key))).toBe(false);
    }
  });

  test('misuse is LOCAL_BAD_ARGUMENT', () => {
    const bad = (f: () => unknown) => {
      try {
        f();
      } catch (error) {
        return isLockstepError(error, 'LOCAL_BAD_ARGUMENT');
      }
      return false;
    };
    expect(bad(() => new KeyWrapper(primitives, bytes(32)))).toBe(true);
    const wrapper = new KeyWrapper(primitives, bytes(KEY_WRAP_KEY_BYTES));
    expect(bad(() => wrapper.wrap(bytes(7), 1, bytes(64)))).toBe(true);
    expect(bad(() => wrapper.wrap(bytes(8), -1, bytes(64)))).toBe(true);
    expect(bad(() => wrapper.wrap(bytes(8), 2 ** 32, bytes(64)))).toBe(true);
    expect(bad(() => wrapper.wrap(bytes(8), 1.5, bytes(64)))).toBe(true);
    expect(bad(() => wrapper.wrap(bytes(8), 1, bytes(63)))).toBe(true);
    expect(bad(() => wrapper.unwrap(bytes(8), 1, bytes(80)))).toBe(true);
  });
});

test('the wrapper keeps its own copy of the KWK; dispose() wipes it', () => {
  const kwk = bytes(64);
  const deviceId = bytes(8);
  const key = bytes(64);
  const wrapper = new KeyWrapper(nodePrimitives, kwk);
  const expected = referenceWrap(kwk, deviceId, 9, key);
  kwk.fill(0); // the caller wipes its copy
  expect(Buffer.from(wrapper.wrap(deviceId, 9, key))).toEqual(expected);
  wrapper.dispose();
  expect(Buffer.from(wrapper.wrap(deviceId, 9, key))).toEqual(referenceWrap(new Uint8Array(64), deviceId, 9, key));
});
