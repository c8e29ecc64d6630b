/**
 * AEAD conformance on XS, as a function of an implementation (run for the
 * native module, the portable composition over the native primitives, and
 * @noble): RFC 7518 Appendix B.3 and all 94 Wycheproof a256cbc_hs512 cases
 * (tests/vectors/wycheproof, provenance in its README). A "valid" case must
 * seal to ct ‖ tag and open to msg; an "invalid" one must be refused with
 * AUTH_FAILED and no plaintext.
 */
import wycheproofFile from 'xs-test-vectors:wycheproof/a256cbc_hs512_test.json';
import { fromHex } from '../../../modules/bytes';
import type { Aead } from '../../../modules/crypto/primitives';
import { isLockstepError } from '../../../modules/errors';
import { assert, assertBytes, assertEqual, assertThrows, test } from '../harness';

interface AeadCase {
  tcId: number;
  comment: string;
  key: string;
  iv: string;
  aad: string;
  msg: string;
  ct: string;
  tag: string;
  result: 'valid' | 'invalid' | 'acceptable';
}

interface AeadFile {
  numberOfTests: number;
  testGroups: { tests: AeadCase[] }[];
}

const file = wycheproofFile as AeadFile;
export const WYCHEPROOF_CASES: readonly AeadCase[] = file.testGroups.flatMap((group) => group.tests);

/** RFC 7518 Appendix B.3 (AES_256_CBC_HMAC_SHA_512). */
export const RFC7518_B3 = {
  key: fromHex(
    '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f' +
      '202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f',
  ),
  plaintext: fromHex(
    '41206369706865722073797374656d206d757374206e6f742062652072657175' +
      '6972656420746f206265207365637265742c20616e64206974206d7573742062' +
      '652061626c6520746f2066616c6c20696e746f207468652068616e6473206f66' +
      '2074686520656e656d7920776974686f757420696e636f6e76656e69656e6365',
  ),
  iv: fromHex('1af38c2dc2b96ffdd86694092341bc04'),
  aad: fromHex(
    '546865207365636f6e64207072696e6369706c65206f662041756775737465204b6572636b686f666673',
  ),
  ciphertext: fromHex(
    '4affaaadb78c31c5da4b1b590d10ffbd3dd8d5d302423526912da037ecbcc7bd' +
      '822c301dd67c373bccb584ad3e9279c2e6d12a1374b77f077553df829410446b' +
      '36ebd97066296ae6427ea75c2e0846a11a09ccf5370dc80bfecbad28c73f09b3' +
      'a3b75e662a2594410ae496b2e2e6609e31e6e02cc837f053d21f37ff4f51950b' +
      'be2638d09dd7a4930930806d0703b1f6',
  ),
  tag: fromHex('4dd3b4c088a7f45c216839645b2012bf2e6269a8c56a816dbc1b267761955bc5'),
};

const isAuthFailed = (error: unknown): boolean => isLockstepError(error, 'AUTH_FAILED');

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

export function registerAeadVectors(group: string, aead: Aead): void {
  const label = aead.name;

  test(group, `${label}: RFC 7518 B.3 seals to the published ciphertext and tag, and opens`, () => {
    const v = RFC7518_B3;
    const sealed = aead.seal(v.key, v.iv, v.aad, v.plaintext);
    assertBytes(sealed, concat(v.ciphertext, v.tag), 'sealed');
    assertBytes(aead.open(v.key, v.iv, v.aad, v.ciphertext, v.tag), v.plaintext, 'opened');
  });

  test(group, `${label}: Wycheproof a256cbc_hs512 has all 94 cases`, () => {
    assertEqual(file.numberOfTests, 94, 'numberOfTests');
    assertEqual(WYCHEPROOF_CASES.length, 94, 'cases');
  });

  for (const c of WYCHEPROOF_CASES) {
    test(group, `${label}: Wycheproof #${c.tcId} (${c.result}) ${c.comment}`, () => {
      const key = fromHex(c.key);
      const iv = fromHex(c.iv);
      const aad = fromHex(c.aad);
      const msg = fromHex(c.msg);
      const ct = fromHex(c.ct);
      const tag = fromHex(c.tag);
      if (c.result === 'valid') {
        assertBytes(aead.seal(key, iv, aad, msg), concat(ct, tag), 'sealed');
        assertBytes(aead.open(key, iv, aad, ct, tag), msg, 'opened');
      } else {
        assert(c.result === 'invalid', `unexpected result ${c.result}`);
        assertThrows(() => aead.open(key, iv, aad, ct, tag), isAuthFailed, 'invalid case');
      }
    });
  }

  test(group, `${label}: every failure is the same AUTH_FAILED error`, () => {
    const v = RFC7518_B3;
    const badTag = v.tag.slice();
    badTag[31] = (badTag[31] as number) ^ 1;
    const badCiphertext = v.ciphertext.slice();
    badCiphertext[5] = (badCiphertext[5] as number) ^ 0x80;
    const cases: [Uint8Array, Uint8Array][] = [
      [v.ciphertext, badTag],
      [badCiphertext, v.tag],
      [v.ciphertext.subarray(0, 15), v.tag],
      [v.ciphertext.subarray(0, 16), v.tag],
      [new Uint8Array(0), v.tag],
      [v.ciphertext, v.tag.subarray(0, 16)],
      [v.ciphertext, concat(v.tag, new Uint8Array(1))],
    ];
    for (const [ciphertext, tag] of cases) {
      assertThrows(() => aead.open(v.key, v.iv, v.aad, ciphertext, tag), isAuthFailed, `ct ${ciphertext.length} tag ${tag.length}`);
    }
  });

  test(group, `${label}: wrong key or IV length is local misuse`, () => {
    const v = RFC7518_B3;
    const isMisuse = (error: unknown): boolean => isLockstepError(error, 'LOCAL_BAD_ARGUMENT');
    assertThrows(() => aead.seal(v.key.subarray(0, 32), v.iv, v.aad, v.plaintext), isMisuse, 'short key');
    assertThrows(() => aead.seal(v.key, v.iv.subarray(0, 8), v.aad, v.plaintext), isMisuse, 'short iv');
    assertThrows(() => aead.open(v.key.subarray(1), v.iv, v.aad, v.ciphertext, v.tag), isMisuse, 'open short key');
  });
}

/** Seals the same inputs with two implementations and requires identical output, for every length 0..80 and a few large ones. */
export function registerAeadAgreement(group: string, a: Aead, b: Aead): void {
  test(group, `${a.name} and ${b.name} agree on every length 0..80, 1 KiB and 4 KiB + 3`, () => {
    const key = new Uint8Array(64).map((_, i) => (i * 7 + 3) & 0xff);
    const iv = new Uint8Array(16).map((_, i) => (i * 13 + 1) & 0xff);
    const lengths = [...Array(81).keys(), 1024, 4099];
    for (const length of lengths) {
      const plaintext = new Uint8Array(length).map((_, i) => (i * 31 + length) & 0xff);
      const aad = plaintext.subarray(0, length % 23);
      const sealedA = a.seal(key, iv, aad, plaintext);
      const sealedB = b.seal(key, iv, aad, plaintext);
      assertBytes(sealedA, sealedB, `length ${length}`);
      const ciphertext = sealedA.subarray(0, sealedA.length - 32);
      const tag = sealedA.subarray(sealedA.length - 32);
      assertBytes(b.open(key, iv, aad, ciphertext, tag), plaintext, `${b.name} opens ${a.name}, length ${length}`);
      assertBytes(a.open(key, iv, aad, ciphertext, tag), plaintext, `${a.name} opens its own, length ${length}`);
    }
  });
}
