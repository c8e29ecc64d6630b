// CRC-32 (modules/keystore/crc32.ts) against the standard check value and an
// independent implementation (zlib's, via node:zlib).
import { crc32 as zlibCrc32 } from 'node:zlib';
import fc from 'fast-check';
import { CRC32_START, crc32, crc32Finish, crc32Update, crc32UpdateU32 } from '../modules/keystore/crc32';

test('check value of "123456789" is 0xCBF43926', () => {
  expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
  expect(crc32(new Uint8Array(0))).toBe(0);
});

test('matches zlib on arbitrary bytes and ranges', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), fc.nat(), (bytes, a, b) => {
      const from = bytes.length === 0 ? 0 : a % bytes.length;
      const to = from + (bytes.length === 0 ? 0 : b % (bytes.length - from + 1));
      expect(crc32(bytes, from, to)).toBe(zlibCrc32(bytes.subarray(from, to)));
    }),
  );
});

test('incremental form equals the one-shot CRC of the concatenation (u32 little-endian)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.uint8Array({ maxLength: 100 }), (value, bytes) => {
      const joined = new Uint8Array(4 + bytes.length);
      new DataView(joined.buffer).setUint32(0, value, true);
      joined.set(bytes, 4);
      expect(crc32Finish(crc32Update(crc32UpdateU32(CRC32_START, value), bytes))).toBe(zlibCrc32(joined));
    }),
  );
});
