/**
 * CRC-32 as in IEEE 802.3 / zlib / PNG: reflected polynomial 0xEDB88320,
 * initial value and final XOR 0xFFFFFFFF. Check value: crc32("123456789")
 * = 0xCBF43926. Used only to detect torn or foreign flash content; it is
 * not a MAC (docs/KEYSTORE.md §4).
 *
 * The incremental form lets a record's checksum cover bytes that are not
 * stored next to it (the sector sequence and slot index) without copying.
 */

let table: Uint32Array | undefined;

function crcTable(): Uint32Array {
  if (table !== undefined) return table;
  const built = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    built[n] = c >>> 0;
  }
  table = built;
  return built;
}

/** Start value of an incremental CRC. */
export const CRC32_START = 0xffffffff;

/** Feeds bytes[from, to) into a running CRC (not yet finished). */
export function crc32Update(crc: number, bytes: Uint8Array, from = 0, to = bytes.length): number {
  const t = crcTable();
  let c = crc;
  for (let i = from; i < to; i++) c = (t[(c ^ (bytes[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return c >>> 0;
}

/** Feeds a 32-bit value, little-endian, into a running CRC. */
export function crc32UpdateU32(crc: number, value: number): number {
  const t = crcTable();
  let c = crc;
  for (let shift = 0; shift < 32; shift += 8) c = (t[(c ^ (value >>> shift)) & 0xff] as number) ^ (c >>> 8);
  return c >>> 0;
}

/** Finishes a running CRC. */
export function crc32Finish(crc: number): number {
  return (crc ^ 0xffffffff) >>> 0;
}

/** CRC-32 of bytes[from, to). */
export function crc32(bytes: Uint8Array, from = 0, to = bytes.length): number {
  return crc32Finish(crc32Update(CRC32_START, bytes, from, to));
}
