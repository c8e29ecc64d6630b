/**
 * The primitives each backend provides, against Wycheproof: AES-256-CBC
 * with PKCS#7 (the 256-bit groups of aes_cbc_pkcs5) and HMAC-SHA-512 (all
 * groups, tags truncated to the group's tagSize).
 */
import { nodePrimitives } from '../hosts/node/crypto';
import { noblePrimitives } from '../hosts/noble/primitives';
import { pkcs7Pad, pkcs7UnpaddedLength } from '../modules/crypto/a256cbc-hs512';
import type { CipherPrimitives } from '../modules/crypto/primitives';
import { hex, loadWycheproof } from './support/wycheproof';

const backends: [string, CipherPrimitives][] = [
  ['node:crypto', nodePrimitives],
  ['@noble', noblePrimitives],
];

const aesCases = loadWycheproof('aes_cbc_pkcs5_test.json')
  .testGroups.filter((g) => g.keySize === 256)
  .flatMap((g) => g.tests);
const hmacGroups = loadWycheproof('hmac_sha512_test.json').testGroups;

describe.each(backends)('%s primitives', (_name, primitives) => {
  test('aes_cbc_pkcs5: 72 cases of the 256-bit group', () => {
    expect(aesCases).toHaveLength(72);
    for (const c of aesCases) {
      const key = hex(c.key);
      const iv = hex(c.iv);
      const msg = hex(c.msg);
      const ct = hex(c.ct);
      if (c.result === 'valid') {
        expect(Buffer.from(primitives.aes256CbcEncrypt(key, iv, pkcs7Pad(msg)))).toEqual(Buffer.from(ct));
        const padded = primitives.aes256CbcDecrypt(key, iv, ct);
        expect(Buffer.from(padded.subarray(0, pkcs7UnpaddedLength(padded)))).toEqual(Buffer.from(msg));
      } else {
        // Invalid: a ciphertext that is not whole blocks, or whose padding is bad.
        const rejected = ct.length === 0 || ct.length % 16 !== 0 || pkcs7UnpaddedLength(primitives.aes256CbcDecrypt(key, iv, ct)) < 0;
        expect({ tcId: c.tcId, rejected }).toEqual({ tcId: c.tcId, rejected: true });
      }
    }
  });

  test('hmac_sha512: every group, truncated to its tag size', () => {
    let count = 0;
    for (const group of hmacGroups) {
      const tagBytes = (group.tagSize ?? 512) / 8;
      for (const c of group.tests) {
        const mac = primitives.hmacSha512(hex(c.key), [hex(c.msg)]).subarray(0, tagBytes);
        const matches = Buffer.from(mac).equals(Buffer.from(hex(c.tag)));
        expect({ tcId: c.tcId, matches }).toEqual({ tcId: c.tcId, matches: c.result === 'valid' });
        count++;
      }
    }
    expect(count).toBe(174);
  });
});
