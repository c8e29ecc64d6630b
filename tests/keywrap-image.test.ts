// The key-wrap partition image (modules/keystore/key-wrap-image.ts,
// docs/KEYSTORE.md §10.1): byte layout checked against zlib's CRC-32, and
// total parsing of good, blank, zeroed, corrupt, truncated and foreign images.
import { randomBytes } from 'node:crypto';
import { crc32 as zlibCrc32 } from 'node:zlib';
import {
  KEY_WRAP_IMAGE_BYTES,
  KEY_WRAP_PARTITION_BYTES,
  decodeKeyWrapImage,
  encodeKeyWrapImage,
  keyWrapKeyFromImage,
} from '../modules/keystore/key-wrap-image';
import { isLockstepError } from '../modules/errors';

const kwk = new Uint8Array(randomBytes(64));

test('layout byte by byte: magic, version, length, KWK, CRC-32 (zlib), 0xFF to the partition size', () => {
  const image = encodeKeyWrapImage(kwk);
  expect(image).toHaveLength(KEY_WRAP_PARTITION_BYTES);
  expect(KEY_WRAP_IMAGE_BYTES).toBe(76);
  expect(Buffer.from(image.subarray(0, 8)).toString('hex')).toBe('4c4b574b01004000');
  expect(image.subarray(8, 72)).toEqual(kwk);
  expect(Buffer.from(image).readUInt32LE(72)).toBe(zlibCrc32(image.subarray(0, 72)));
  expect(image.subarray(76).every((b) => b === 0xff)).toBe(true);
});

test('a good image gives the KWK (a copy), also from just its first 76 bytes', () => {
  const image = encodeKeyWrapImage(kwk);
  const decoded = decodeKeyWrapImage(image);
  expect(decoded).toEqual({ ok: true, kwk });
  if (decoded.ok) decoded.kwk.fill(0);
  expect(image.subarray(8, 72)).toEqual(kwk);
  expect(keyWrapKeyFromImage(image.slice(0, KEY_WRAP_IMAGE_BYTES))).toEqual(kwk);
  expect(decodeKeyWrapImage(encodeKeyWrapImage(kwk, KEY_WRAP_IMAGE_BYTES))).toEqual({ ok: true, kwk });
});

function problem(image: Uint8Array): { reason: string; code: string | undefined } {
  const decoded = decodeKeyWrapImage(image);
  if (decoded.ok) return { reason: 'ok', code: undefined };
  let code: string | undefined;
  try {
    keyWrapKeyFromImage(image);
  } catch (error) {
    if (isLockstepError(error)) code = error.code;
  }
  return { reason: decoded.reason, code };
}

test.each([
  ['blank (erased, all 0xFF)', () => new Uint8Array(4096).fill(0xff), 'erased', 'UNPROVISIONED'],
  ['all zeros', () => new Uint8Array(4096), 'foreign', 'STORAGE_CORRUPT'],
  ['random bytes (what an erased partition reads as under flash encryption)', () => new Uint8Array(randomBytes(4096)), 'foreign', 'STORAGE_CORRUPT'],
  ['truncated to 75 bytes', () => encodeKeyWrapImage(kwk).slice(0, 75), 'truncated', 'STORAGE_CORRUPT'],
  ['empty', () => new Uint8Array(0), 'truncated', 'STORAGE_CORRUPT'],
  [
    'one KWK bit flipped (bad CRC)',
    () => {
      const image = encodeKeyWrapImage(kwk);
      image[40]! ^= 0x01;
      return image;
    },
    'corrupt',
    'STORAGE_CORRUPT',
  ],
  [
    'CRC bit flipped',
    () => {
      const image = encodeKeyWrapImage(kwk);
      image[75]! ^= 0x80;
      return image;
    },
    'corrupt',
    'STORAGE_CORRUPT',
  ],
  [
    'version 2',
    () => {
      const image = encodeKeyWrapImage(kwk);
      image[4] = 2;
      return image;
    },
    'unsupported',
    'STORAGE_CORRUPT',
  ],
  ['a keystore journal image instead', () => Uint8Array.from([0x4c, 0x4b, 0x53, 0x4a, ...new Uint8Array(200)]), 'foreign', 'STORAGE_CORRUPT'],
])('%s is refused with a reason and a typed error', (_name, make, reason, code) => {
  expect(problem(make())).toEqual({ reason, code });
});

test('encoding refuses a KWK of the wrong length or a too small image', () => {
  expect(() => encodeKeyWrapImage(new Uint8Array(32))).toThrow(/LOCAL_BAD_ARGUMENT/);
  expect(() => encodeKeyWrapImage(kwk, 75)).toThrow(/LOCAL_BAD_ARGUMENT/);
});
