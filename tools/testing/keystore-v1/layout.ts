// FROZEN: modules/keystore/layout.ts as of format v1 (commit 1e36baf), the firmware before format v2.
// Verification only (tools/testing/keystore-v1/README.md): it writes the v1 images the migration
// tests start from and plays the old firmware that meets a v2 image. Do not change.
/**
 * The keystore's on-flash format, byte by byte (docs/KEYSTORE.md §3).
 * All integers little-endian. A partition is `sectorCount` sectors; each
 * sector is a 32-byte header followed by fixed 84-byte record slots.
 *
 * Sector header (32 bytes):
 *   0  4  magic "LKSJ"
 *   4  2  format version (1)
 *   6  2  sector count of the partition
 *   8  4  sector size in bytes
 *  12  4  sequence (u32, +1 per compaction; the highest committed one is current)
 *  16  8  device id
 *  24  4  CRC-32 of bytes 0..23
 *  28  4  sector commit word: the header's commit value (below) once header
 *         and snapshot are complete; 0xFFFFFFFF until then
 *
 * Record slot (84 bytes):
 *   0  1  type: 0x41 'A' active snapshot (slot 0 only), 0x46 'F' future key
 *   1  3  zero
 *   4  4  key id (u32)
 *   8 64  key
 *  72  4  CRC-32 of (sector sequence u32 ‖ slot index u32 ‖ bytes 0..71)
 *  76  4  commit word: 00000000 once bytes 0..75 are complete
 *  80  4  promote word ('F' only): 00000000 once this key became active,
 *         retiring the previous active key
 *
 * A record's commit or promote word is "set" only when all four bytes are
 * 0x00 and "clear" only when all are 0xFF; anything else is a torn write and
 * reads as not set. These words live in the current sector, which nothing
 * erases, so only torn programs can touch them.
 *
 * The sector commit word decides whether a sector counts, and a sector that
 * is being reused can be torn by an erase into arbitrary debris (old bytes,
 * zeros, ones). So its value is bound to the header: a CRC-32 tagged with
 * "SKCL", over header bytes 0..23, with bit 31 cleared (never 0xFFFFFFFF).
 * Debris of an interrupted compaction cannot produce it (short of a 2^-31
 * accident), while zeros could (docs/KEYSTORE.md §5.4).
 */
import { KEY_BYTES, DEVICE_ID_BYTES } from '../../../modules/platform/keys';
import { CRC32_START, crc32, crc32Finish, crc32Update, crc32UpdateU32 } from '../../../modules/keystore/crc32';

export const FORMAT_VERSION = 1;
export const SECTOR_MAGIC: readonly number[] = [0x4c, 0x4b, 0x53, 0x4a]; // "LKSJ"

export const SECTOR_HEADER_BYTES = 32;
export const HEADER_VERSION_OFFSET = 4;
export const HEADER_SECTOR_COUNT_OFFSET = 6;
export const HEADER_SECTOR_SIZE_OFFSET = 8;
export const HEADER_SEQUENCE_OFFSET = 12;
export const HEADER_DEVICE_ID_OFFSET = 16;
export const HEADER_CRC_OFFSET = 24;
export const SECTOR_COMMIT_OFFSET = 28;

export const SLOT_BYTES = 84;
export const RECORD_TYPE_OFFSET = 0;
export const RECORD_ID_OFFSET = 4;
export const RECORD_KEY_OFFSET = 8;
export const RECORD_CRC_OFFSET = 72;
export const RECORD_COMMIT_OFFSET = 76;
export const RECORD_PROMOTE_OFFSET = 80;

export const RECORD_ACTIVE = 0x41;
export const RECORD_FUTURE = 0x46;

/** Width of commit and promote words; every program is 4-byte aligned. */
export const WORD_BYTES = 4;

export const MAX_SEQUENCE = 0xffffffff;
export const MAX_KEY_ID = 0xffffffff;

export type WordState = 'set' | 'clear' | 'torn';

export function wordState(bytes: Uint8Array, at: number): WordState {
  let and = 0xff;
  let or = 0;
  for (let i = at; i < at + WORD_BYTES; i++) {
    and &= bytes[i] as number;
    or |= bytes[i] as number;
  }
  if (or === 0) return 'set';
  if (and === 0xff) return 'clear';
  return 'torn';
}

export function isBlank(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0xff) return false;
  return true;
}

/** Number of record slots in one sector. */
export function slotsPerSector(sectorSize: number): number {
  return Math.floor((sectorSize - SECTOR_HEADER_BYTES) / SLOT_BYTES);
}

/** Offset of a slot within its sector. */
export function slotOffset(slot: number): number {
  return SECTOR_HEADER_BYTES + slot * SLOT_BYTES;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export interface SectorHeader {
  readonly sectorCount: number;
  readonly sectorSize: number;
  readonly sequence: number;
  readonly deviceId: Uint8Array;
}

/** Writes a header at out[at..at+32) with its commit word left erased (0xFF). */
export function encodeSectorHeader(out: Uint8Array, at: number, header: SectorHeader): void {
  out.set(SECTOR_MAGIC, at);
  const v = view(out);
  v.setUint16(at + HEADER_VERSION_OFFSET, FORMAT_VERSION, true);
  v.setUint16(at + HEADER_SECTOR_COUNT_OFFSET, header.sectorCount, true);
  v.setUint32(at + HEADER_SECTOR_SIZE_OFFSET, header.sectorSize, true);
  v.setUint32(at + HEADER_SEQUENCE_OFFSET, header.sequence, true);
  out.set(header.deviceId, at + HEADER_DEVICE_ID_OFFSET);
  v.setUint32(at + HEADER_CRC_OFFSET, crc32(out, at, at + HEADER_CRC_OFFSET), true);
  out.fill(0xff, at + SECTOR_COMMIT_OFFSET, at + SECTOR_HEADER_BYTES);
}

export type HeaderCheck =
  | { readonly kind: 'valid'; readonly header: SectorHeader; readonly committed: boolean }
  | { readonly kind: 'blank' }
  | { readonly kind: 'foreign' }
  | { readonly kind: 'geometry'; readonly sectorCount: number; readonly sectorSize: number };

/** Classifies 32 header bytes; never throws. */
export function decodeSectorHeader(bytes: Uint8Array, sectorCount: number, sectorSize: number): HeaderCheck {
  if (bytes.length !== SECTOR_HEADER_BYTES) return { kind: 'foreign' };
  if (isBlank(bytes)) return { kind: 'blank' };
  for (let i = 0; i < SECTOR_MAGIC.length; i++) if (bytes[i] !== SECTOR_MAGIC[i]) return { kind: 'foreign' };
  const v = view(bytes);
  if (v.getUint32(HEADER_CRC_OFFSET, true) !== crc32(bytes, 0, HEADER_CRC_OFFSET)) return { kind: 'foreign' };
  if (v.getUint16(HEADER_VERSION_OFFSET, true) !== FORMAT_VERSION) return { kind: 'foreign' };
  const count = v.getUint16(HEADER_SECTOR_COUNT_OFFSET, true);
  const size = v.getUint32(HEADER_SECTOR_SIZE_OFFSET, true);
  if (count !== sectorCount || size !== sectorSize) return { kind: 'geometry', sectorCount: count, sectorSize: size };
  return {
    kind: 'valid',
    header: {
      sectorCount: count,
      sectorSize: size,
      sequence: v.getUint32(HEADER_SEQUENCE_OFFSET, true),
      deviceId: bytes.slice(HEADER_DEVICE_ID_OFFSET, HEADER_DEVICE_ID_OFFSET + DEVICE_ID_BYTES),
    },
    committed: v.getUint32(SECTOR_COMMIT_OFFSET, true) === sectorCommitValue(bytes, 0),
  };
}

const SECTOR_COMMIT_TAG = 0x4c434b53; // "SKCL" little-endian

/** The value a sector's commit word holds once committed (see the file header). */
export function sectorCommitValue(header: Uint8Array, at: number): number {
  const tagged = crc32UpdateU32(CRC32_START, SECTOR_COMMIT_TAG);
  return (crc32Finish(crc32Update(tagged, header, at, at + HEADER_CRC_OFFSET)) & 0x7fffffff) >>> 0;
}

/** The 4 bytes to program at SECTOR_COMMIT_OFFSET to commit the header at out[at..). */
export function sectorCommitWord(header: Uint8Array, at: number): Uint8Array {
  const word = new Uint8Array(WORD_BYTES);
  view(word).setUint32(0, sectorCommitValue(header, at), true);
  return word;
}

function recordCrc(bytes: Uint8Array, at: number, sequence: number, slot: number): number {
  let c = crc32UpdateU32(CRC32_START, sequence);
  c = crc32UpdateU32(c, slot);
  return crc32Finish(crc32Update(c, bytes, at, at + RECORD_CRC_OFFSET));
}

/**
 * Writes a record at out[at..at+84): body and CRC, the commit word set only
 * when `committed` (compaction writes records committed in one go because
 * the sector commit word guards them), the promote word erased.
 */
export function encodeRecord(
  out: Uint8Array,
  at: number,
  type: number,
  id: number,
  key: Uint8Array,
  sequence: number,
  slot: number,
  committed: boolean,
): void {
  out[at + RECORD_TYPE_OFFSET] = type;
  out.fill(0, at + 1, at + RECORD_ID_OFFSET);
  view(out).setUint32(at + RECORD_ID_OFFSET, id, true);
  out.set(key, at + RECORD_KEY_OFFSET);
  view(out).setUint32(at + RECORD_CRC_OFFSET, recordCrc(out, at, sequence, slot), true);
  out.fill(committed ? 0x00 : 0xff, at + RECORD_COMMIT_OFFSET, at + RECORD_PROMOTE_OFFSET);
  out.fill(0xff, at + RECORD_PROMOTE_OFFSET, at + SLOT_BYTES);
}

export type RecordCheck =
  | { readonly kind: 'record'; readonly type: number; readonly id: number; readonly key: Uint8Array; readonly promote: WordState }
  | { readonly kind: 'blank' }
  /** Non-blank but not a complete, committed record of this sector and slot. */
  | { readonly kind: 'invalid' };

/** Classifies an 84-byte slot; never throws. The returned key is a copy. */
export function decodeRecord(bytes: Uint8Array, sequence: number, slot: number): RecordCheck {
  if (bytes.length !== SLOT_BYTES) return { kind: 'invalid' };
  if (isBlank(bytes)) return { kind: 'blank' };
  if (wordState(bytes, RECORD_COMMIT_OFFSET) !== 'set') return { kind: 'invalid' };
  const v = view(bytes);
  if (v.getUint32(RECORD_CRC_OFFSET, true) !== recordCrc(bytes, 0, sequence, slot)) return { kind: 'invalid' };
  const type = bytes[RECORD_TYPE_OFFSET] as number;
  if (type !== RECORD_ACTIVE && type !== RECORD_FUTURE) return { kind: 'invalid' };
  if (bytes[1] !== 0 || bytes[2] !== 0 || bytes[3] !== 0) return { kind: 'invalid' };
  return {
    kind: 'record',
    type,
    id: v.getUint32(RECORD_ID_OFFSET, true),
    key: bytes.slice(RECORD_KEY_OFFSET, RECORD_KEY_OFFSET + KEY_BYTES),
    promote: wordState(bytes, RECORD_PROMOTE_OFFSET),
  };
}
