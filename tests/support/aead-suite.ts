/**
 * The AEAD conformance suite as a function of an implementation (noble's
 * test(variant, platform) habit), so every backend runs the same vectors.
 */
import type { Aead } from '../../modules/crypto/primitives';
import { isLockstepError } from '../../modules/errors';
import { hex, loadWycheproof } from './wycheproof';

/** RFC 7518 Appendix B.3 (AES_256_CBC_HMAC_SHA_512). */
export const RFC7518_B3 = {
  key: hex(
    '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f' +
      '202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f',
  ),
  plaintext: hex(
    '41206369706865722073797374656d206d757374206e6f742062652072657175' +
      '6972656420746f206265207365637265742c20616e64206974206d7573742062' +
      '652061626c6520746f2066616c6c20696e746f207468652068616e6473206f66' +
      '2074686520656e656d7920776974686f757420696e636f6e76656e69656e6365',
  ),
  iv: hex('1af38c2dc2b96ffdd86694092341bc04'),
  aad: hex(
    '546865207365636f6e64207072696e6369706c65206f66204175677573746520' +
      '4b6572636b686f666673',
  ),
  ciphertext: hex(
    '4affaaadb78c31c5da4b1b590d10ffbd3dd8d5d302423526912da037ecbcc7bd' +
      '822c301dd67c373bccb584ad3e9279c2e6d12a1374b77f077553df829410446b' +
      '36ebd97066296ae6427ea75c2e0846a11a09ccf5370dc80bfecbad28c73f09b3' +
      'a3b75e662a2594410ae496b2e2e6609e31e6e02cc837f053d21f37ff4f51950b' +
      'be2638d09dd7a4930930806d0703b1f6',
  ),
  tag: hex('4dd3b4c088a7f45c216839645b2012bf2e6269a8c56a816dbc1b267761955bc5'),
};

export function aeadConformanceSuite(makeAead: () => Aead): void {
  const aead = makeAead();

  test(`${aead.name}: RFC 7518 B.3 seals to the published ciphertext and tag`, () => {
    const v = RFC7518_B3;
    const sealed = aead.seal(v.key, v.iv, v.aad, v.plaintext);
    expect(Buffer.from(sealed.subarray(0, sealed.length - 32)).toString('hex')).toBe(Buffer.from(v.ciphertext).toString('hex'));
    expect(Buffer.from(sealed.subarray(sealed.length - 32)).toString('hex')).toBe(Buffer.from(v.tag).toString('hex'));
    expect(Buffer.from(aead.open(v.key, v.iv, v.aad, v.ciphertext, v.tag))).toEqual(Buffer.from(v.plaintext));
  });

  const file = loadWycheproof('a256cbc_hs512_test.json');
  const cases = file.testGroups.flatMap((group) => group.tests);

  test(`${aead.name}: Wycheproof a256cbc_hs512 has all 94 cases`, () => {
    expect(cases).toHaveLength(94);
    expect(file.numberOfTests).toBe(94);
  });

  test.each(cases.map((c) => [c.tcId, c.result, c.comment, c] as const))(
    `${aead.name}: Wycheproof a256cbc_hs512 #%i (%s) %s`,
    (_id, result, _comment, c) => {
      const key = hex(c.key);
      const iv = hex(c.iv);
      const aad = hex(c.aad);
      const msg = hex(c.msg);
      const ct = hex(c.ct);
      const tag = hex(c.tag);
      if (result === 'valid') {
        const sealed = aead.seal(key, iv, aad, msg);
        expect(Buffer.from(sealed)).toEqual(Buffer.concat([ct, tag]));
        expect(Buffer.from(aead.open(key, iv, aad, ct, tag))).toEqual(Buffer.from(msg));
      } else {
        let opened: Uint8Array | undefined;
        let error: unknown;
        try {
          opened = aead.open(key, iv, aad, ct, tag);
        } catch (e) {
          error = e;
        }
        expect(opened).toBeUndefined();
        expect(isLockstepError(error, 'AUTH_FAILED')).toBe(true);
      }
    },
  );

  test(`${aead.name}: every failure is the same AUTH_FAILED error`, () => {
    const v = RFC7518_B3;
    const badTag = v.tag.slice();
    badTag[0]! ^= 1;
    const badCt = v.ciphertext.slice();
    badCt[5]! ^= 0x80;
    for (const [ct, tag] of [
      [v.ciphertext, badTag],
      [badCt, v.tag],
      [v.ciphertext.subarray(0, 15), v.tag],
      [new Uint8Array(0), v.tag],
      [v.ciphertext, v.tag.subarray(0, 16)],
    ] as const) {
      expect(() => aead.open(v.key, v.iv, v.aad, ct, tag)).toThrow(expect.objectContaining({ code: 'AUTH_FAILED' }));
    }
  });

  test(`${aead.name}: wrong key or IV length is local misuse`, () => {
    const v = RFC7518_B3;
    expect(() => aead.seal(v.key.subarray(0, 32), v.iv, v.aad, v.plaintext)).toThrow(expect.objectContaining({ code: 'LOCAL_BAD_ARGUMENT' }));
    expect(() => aead.seal(v.key, v.iv.subarray(0, 8), v.aad, v.plaintext)).toThrow(expect.objectContaining({ code: 'LOCAL_BAD_ARGUMENT' }));
  });
}
