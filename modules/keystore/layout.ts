/**
 * The keystore's on-flash format, byte by byte (docs/KEYSTORE.md §3). All
 * integers little-endian. A partition is `sectorCount` sectors; each sector
 * is a 32-byte header followed by fixed-size record slots whose layout the
 * header's format version gives: version 2 (written by this code, 144-byte
 * slots) or version 1 (written by firmware before format v2, 84-byte slots:
 * read, and migrated in place, docs/KEYSTORE.md §11). A sector never mixes
 * versions.
 *
 * Sector header (32 bytes, both versions):
 *   0  4  magic "LKSJ"
 *   4  2  format version (2; 1 in images of older firmware)
 *   6  2  sector count of the partition
 *   8  4  sector size in bytes
 *  12  4  sequence (u32, +1 per compaction; the highest committed one is current)
 *  16  8  device id
 *  24  4  CRC-32 of bytes 0..23
 *  28  4  sector commit word: the header's commit value (below) once header
 *         and snapshot are complete; 0xFFFFFFFF until then
 *
 * Record slot, version 2 (144 bytes):
 *   0  1  type: 0x41 'A' active snapshot (slot 0 only), 0x46 'F' future key
 *   1  1  mode while this record's key is active: 0x43 'C' classic, 0x44 'D' dh
 *   2  1  shares length: 0x00 none, 0x40 (a dh-derived key: hub share ‖ device share)
 *   3  1  zero
 *   4  4  key id (u32)
 *   8 64  key
 *  72 32  hub share H (0xFF x 32 without shares)
 * 104 32  device share D (0xFF x 32 without shares)
 * 136  4  commit CRC: CRC-32 of (sector sequence u32 ‖ slot index u32 ‖
 *         bytes 0..135) with bit 31 cleared; 0xFFFFFFFF until committed
 * 140  4  promote word ('F'): 00000000 once this key became active;
 *         retired marker ('A'): 00000000 once the scrub began on it
 *
 * Credential slot, version 2 (144 bytes, docs/KEYSTORE.md §12): the
 * device's recovery credential (docs/PROTOCOL.md §12.6), at most one per
 * sector, never in slot 0:
 *   0  1  type: 0x53 'S' (static keys)
 *   1  3  zero
 *   4  4  hub static id (u32)
 *   8 32  device static private key s_d (wrapped under the KWK with key wrapping)
 *  40 32  device static public key S_d
 *  72 32  hub static public key S_h
 * 104 32  0xFF x 32
 * 136  4  commit CRC, as a key record's
 * 140  4  0xFFFFFFFF (unused)
 * Firmware before this record type (format v2 without it) reads the slot as
 * one it does not know (an invalid record) and skips it: no key it reads
 * changes, so the format version stays 2 (docs/KEYSTORE.md §12.3).
 *
 * Record slot, version 1 (84 bytes): type, 3 zero bytes, key id, key (8..71),
 * CRC-32 of (sequence ‖ slot ‖ bytes 0..71) at 72, commit word at 76
 * (00000000 once bytes 0..75 are complete), promote word / retired marker at 80.
 *
 * Why the v2 commit is the CRC itself: a value with bit 31 clear is never
 * the erased 0xFFFFFFFF, the body is programmed and read back before it, and
 * a torn program of it leaves a value that differs from the one intended
 * (unless every bit it had to clear is cleared: complete in effect), so the
 * record is committed exactly when its CRC matches — with one word less
 * than v1, which keeps 28 slots in a 4 KiB sector (docs/KEYSTORE.md §8).
 *
 * A promote word is "set" only when all four bytes are 0x00 and "clear" only
 * when all are 0xFF; anything else is a torn write and reads as not set.
 *
 * The sector commit word decides whether a sector counts, and a sector that
 * is being reused can be torn by an erase into arbitrary debris (old bytes,
 * zeros, ones). So its value is bound to the header: a CRC-32 tagged with
 * "SKCL", over header bytes 0..23, with bit 31 cleared (never 0xFFFFFFFF).
 * Debris of an interrupted compaction cannot produce it (short of a 2^-31
 * accident), while zeros could (docs/KEYSTORE.md §5.4).
 */
import type { RecoveryCredential } from '../crypto/recovery';
import type { KeyShares, RekeyMode } from '../platform/keys';
import { KEY_BYTES, DEVICE_ID_BYTES } from '../platform/keys';
import { CRC32_START, crc32, crc32Finish, crc32Update, crc32UpdateU32 } from './crc32';

/** The version this code writes. */
export const FORMAT_VERSION = 2;
/** The version of images written by firmware before format v2 (read and migrated). */
export const LEGACY_FORMAT_VERSION = 1;
export type FormatVersion = 1 | 2;
export const SECTOR_MAGIC: readonly number[] = [0x4c, 0x4b, 0x53, 0x4a]; // "LKSJ"

export const SECTOR_HEADER_BYTES = 32;
export const HEADER_VERSION_OFFSET = 4;
export const HEADER_SECTOR_COUNT_OFFSET = 6;
export const HEADER_SECTOR_SIZE_OFFSET = 8;
export const HEADER_SEQUENCE_OFFSET = 12;
export const HEADER_DEVICE_ID_OFFSET = 16;
export const HEADER_CRC_OFFSET = 24;
export const SECTOR_COMMIT_OFFSET = 28;

/** Version 2 record slot. */
export const SLOT_BYTES = 144;
export const RECORD_TYPE_OFFSET = 0;
export const RECORD_MODE_OFFSET = 1;
export const RECORD_SHARES_LENGTH_OFFSET = 2;
export const RECORD_ID_OFFSET = 4;
export const RECORD_KEY_OFFSET = 8;
export const RECORD_HUB_SHARE_OFFSET = 72;
export const RECORD_DEVICE_SHARE_OFFSET = 104;
export const RECORD_CRC_OFFSET = 136;
export const RECORD_PROMOTE_OFFSET = 140;
export const SHARE_BYTES = 32;
export const SHARES_LENGTH = 2 * SHARE_BYTES;

/** Version 1 record slot (read only). */
export const V1_SLOT_BYTES = 84;
export const V1_RECORD_CRC_OFFSET = 72;
export const V1_RECORD_COMMIT_OFFSET = 76;
export const V1_RECORD_PROMOTE_OFFSET = 80;

export const RECORD_ACTIVE = 0x41;
export const RECORD_FUTURE = 0x46;
/** The recovery credential (docs/KEYSTORE.md §12). */
export const RECORD_CREDENTIAL = 0x53; // 'S'
export const CREDENTIAL_HUB_ID_OFFSET = 4;
export const CREDENTIAL_PRIVATE_OFFSET = 8;
export const CREDENTIAL_PUBLIC_OFFSET = 40;
export const CREDENTIAL_HUB_PUBLIC_OFFSET = 72;
export const CREDENTIAL_UNUSED_OFFSET = 104;
export const STATIC_KEY_BYTES = 32;
export const MODE_CLASSIC = 0x43; // 'C'
export const MODE_DH = 0x44; // 'D'

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

export function modeByte(mode: RekeyMode): number {
  return mode === 'dh' ? MODE_DH : MODE_CLASSIC;
}

/** The mode a record byte names, or undefined for any other byte. */
export function modeOf(byte: number): RekeyMode | undefined {
  if (byte === MODE_CLASSIC) return 'classic';
  if (byte === MODE_DH) return 'dh';
  return undefined;
}

/** Slot size of a format version. */
export function slotBytes(version: FormatVersion): number {
  return version === FORMAT_VERSION ? SLOT_BYTES : V1_SLOT_BYTES;
}

/** Number of record slots in one sector of a format version. */
export function slotsPerSector(sectorSize: number, version: FormatVersion = FORMAT_VERSION): number {
  return Math.floor((sectorSize - SECTOR_HEADER_BYTES) / slotBytes(version));
}

/** Offset of a slot within its sector. */
export function slotOffset(slot: number, version: FormatVersion = FORMAT_VERSION): number {
  return SECTOR_HEADER_BYTES + slot * slotBytes(version);
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

/** Writes a version 2 header at out[at..at+32) with its commit word left erased (0xFF). */
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
  | { readonly kind: 'valid'; readonly version: FormatVersion; readonly header: SectorHeader; readonly committed: boolean }
  | { readonly kind: 'blank' }
  | { readonly kind: 'foreign' }
  /** A Lockstep header of a version this code does not know (a later firmware's). */
  | { readonly kind: 'version'; readonly version: number }
  | { readonly kind: 'geometry'; readonly sectorCount: number; readonly sectorSize: number };

/** Classifies 32 header bytes; never throws. */
export function decodeSectorHeader(bytes: Uint8Array, sectorCount: number, sectorSize: number): HeaderCheck {
  if (bytes.length !== SECTOR_HEADER_BYTES) return { kind: 'foreign' };
  if (isBlank(bytes)) return { kind: 'blank' };
  for (let i = 0; i < SECTOR_MAGIC.length; i++) if (bytes[i] !== SECTOR_MAGIC[i]) return { kind: 'foreign' };
  const v = view(bytes);
  if (v.getUint32(HEADER_CRC_OFFSET, true) !== crc32(bytes, 0, HEADER_CRC_OFFSET)) return { kind: 'foreign' };
  const version = v.getUint16(HEADER_VERSION_OFFSET, true);
  if (version !== FORMAT_VERSION && version !== LEGACY_FORMAT_VERSION) return { kind: 'version', version };
  const count = v.getUint16(HEADER_SECTOR_COUNT_OFFSET, true);
  const size = v.getUint32(HEADER_SECTOR_SIZE_OFFSET, true);
  if (count !== sectorCount || size !== sectorSize) return { kind: 'geometry', sectorCount: count, sectorSize: size };
  return {
    kind: 'valid',
    version,
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

/** The v2 commit CRC of the record at bytes[at..): bit 31 cleared, so never 0xFFFFFFFF. */
function recordCommitCrc(bytes: Uint8Array, at: number, sequence: number, slot: number): number {
  let c = crc32UpdateU32(CRC32_START, sequence);
  c = crc32UpdateU32(c, slot);
  return (crc32Finish(crc32Update(c, bytes, at, at + RECORD_CRC_OFFSET)) & 0x7fffffff) >>> 0;
}

/** What a v2 record holds. */
export interface RecordContent {
  readonly type: number;
  readonly mode: RekeyMode;
  readonly id: number;
  readonly key: Uint8Array;
  readonly shares?: KeyShares;
}

/**
 * Writes a v2 record at out[at..at+144): body, its commit CRC only when
 * `committed` (a compaction writes records committed in one go because the
 * sector commit word guards them; an append programs the CRC last, as its
 * commit point), the promote word erased.
 */
export function encodeRecord(out: Uint8Array, at: number, record: RecordContent, sequence: number, slot: number, committed: boolean): void {
  out[at + RECORD_TYPE_OFFSET] = record.type;
  out[at + RECORD_MODE_OFFSET] = modeByte(record.mode);
  out[at + RECORD_SHARES_LENGTH_OFFSET] = record.shares === undefined ? 0 : SHARES_LENGTH;
  out[at + 3] = 0;
  view(out).setUint32(at + RECORD_ID_OFFSET, record.id, true);
  out.set(record.key, at + RECORD_KEY_OFFSET);
  if (record.shares === undefined) out.fill(0xff, at + RECORD_HUB_SHARE_OFFSET, at + RECORD_CRC_OFFSET);
  else {
    out.set(record.shares.hub, at + RECORD_HUB_SHARE_OFFSET);
    out.set(record.shares.device, at + RECORD_DEVICE_SHARE_OFFSET);
  }
  if (committed) view(out).setUint32(at + RECORD_CRC_OFFSET, recordCommitCrc(out, at, sequence, slot), true);
  else out.fill(0xff, at + RECORD_CRC_OFFSET, at + RECORD_PROMOTE_OFFSET);
  out.fill(0xff, at + RECORD_PROMOTE_OFFSET, at + SLOT_BYTES);
}

/** The 4 bytes an append programs at RECORD_CRC_OFFSET to commit the record body at body[0..136). */
export function recordCommitWord(body: Uint8Array, sequence: number, slot: number): Uint8Array {
  const word = new Uint8Array(WORD_BYTES);
  view(word).setUint32(0, recordCommitCrc(body, 0, sequence, slot), true);
  return word;
}

export type RecordCheck =
  | {
      readonly kind: 'record';
      readonly type: number;
      readonly mode: RekeyMode;
      readonly id: number;
      readonly key: Uint8Array;
      readonly shares: KeyShares | undefined;
      readonly promote: WordState;
    }
  /** A committed credential record (v2 only); its keys are copies. */
  | { readonly kind: 'credential'; readonly credential: RecoveryCredential }
  | { readonly kind: 'blank' }
  /** Non-blank but not a complete, committed record of this sector and slot. */
  | { readonly kind: 'invalid' };

/** Classifies a slot of a sector of `version`; never throws. The returned key and shares are copies. */
export function decodeRecord(bytes: Uint8Array, version: FormatVersion, sequence: number, slot: number): RecordCheck {
  return version === FORMAT_VERSION ? decodeRecordV2(bytes, sequence, slot) : decodeRecordV1(bytes, sequence, slot);
}

function decodeRecordV2(bytes: Uint8Array, sequence: number, slot: number): RecordCheck {
  if (bytes.length !== SLOT_BYTES) return { kind: 'invalid' };
  if (isBlank(bytes)) return { kind: 'blank' };
  const v = view(bytes);
  if (v.getUint32(RECORD_CRC_OFFSET, true) !== recordCommitCrc(bytes, 0, sequence, slot)) return { kind: 'invalid' };
  const type = bytes[RECORD_TYPE_OFFSET] as number;
  if (type === RECORD_CREDENTIAL) return decodeCredential(bytes, v);
  const mode = modeOf(bytes[RECORD_MODE_OFFSET] as number);
  const sharesLength = bytes[RECORD_SHARES_LENGTH_OFFSET] as number;
  if (type !== RECORD_ACTIVE && type !== RECORD_FUTURE) return { kind: 'invalid' };
  if (mode === undefined || bytes[3] !== 0) return { kind: 'invalid' };
  // Shares only on a future key, and a dh-derived key is only ever active in the dh mode.
  if (sharesLength !== 0 && (sharesLength !== SHARES_LENGTH || type !== RECORD_FUTURE || mode !== 'dh')) return { kind: 'invalid' };
  return {
    kind: 'record',
    type,
    mode,
    id: v.getUint32(RECORD_ID_OFFSET, true),
    key: bytes.slice(RECORD_KEY_OFFSET, RECORD_KEY_OFFSET + KEY_BYTES),
    shares:
      sharesLength === 0
        ? undefined
        : { hub: bytes.slice(RECORD_HUB_SHARE_OFFSET, RECORD_DEVICE_SHARE_OFFSET), device: bytes.slice(RECORD_DEVICE_SHARE_OFFSET, RECORD_CRC_OFFSET) },
    promote: wordState(bytes, RECORD_PROMOTE_OFFSET),
  };
}

/** A credential slot whose CRC matched: the fixed bytes must be as the writer leaves them. */
function decodeCredential(bytes: Uint8Array, v: DataView): RecordCheck {
  if (bytes[1] !== 0 || bytes[2] !== 0 || bytes[3] !== 0) return { kind: 'invalid' };
  for (let i = CREDENTIAL_UNUSED_OFFSET; i < RECORD_CRC_OFFSET; i++) if (bytes[i] !== 0xff) return { kind: 'invalid' };
  if (wordState(bytes, RECORD_PROMOTE_OFFSET) !== 'clear') return { kind: 'invalid' };
  return {
    kind: 'credential',
    credential: {
      device: {
        privateKey: bytes.slice(CREDENTIAL_PRIVATE_OFFSET, CREDENTIAL_PRIVATE_OFFSET + STATIC_KEY_BYTES),
        publicKey: bytes.slice(CREDENTIAL_PUBLIC_OFFSET, CREDENTIAL_PUBLIC_OFFSET + STATIC_KEY_BYTES),
      },
      hubStaticId: v.getUint32(CREDENTIAL_HUB_ID_OFFSET, true),
      hubPublicKey: bytes.slice(CREDENTIAL_HUB_PUBLIC_OFFSET, CREDENTIAL_HUB_PUBLIC_OFFSET + STATIC_KEY_BYTES),
    },
  };
}

/**
 * Writes a v2 credential record at out[at..at+144), committed or not as
 * encodeRecord does.
 */
export function encodeCredentialRecord(out: Uint8Array, at: number, credential: RecoveryCredential, sequence: number, slot: number, committed: boolean): void {
  out[at + RECORD_TYPE_OFFSET] = RECORD_CREDENTIAL;
  out.fill(0, at + 1, at + CREDENTIAL_HUB_ID_OFFSET);
  view(out).setUint32(at + CREDENTIAL_HUB_ID_OFFSET, credential.hubStaticId, true);
  out.set(credential.device.privateKey, at + CREDENTIAL_PRIVATE_OFFSET);
  out.set(credential.device.publicKey, at + CREDENTIAL_PUBLIC_OFFSET);
  out.set(credential.hubPublicKey, at + CREDENTIAL_HUB_PUBLIC_OFFSET);
  out.fill(0xff, at + CREDENTIAL_UNUSED_OFFSET, at + RECORD_CRC_OFFSET);
  if (committed) view(out).setUint32(at + RECORD_CRC_OFFSET, recordCommitCrc(out, at, sequence, slot), true);
  else out.fill(0xff, at + RECORD_CRC_OFFSET, at + RECORD_PROMOTE_OFFSET);
  out.fill(0xff, at + RECORD_PROMOTE_OFFSET, at + SLOT_BYTES);
}

function v1RecordCrc(bytes: Uint8Array, sequence: number, slot: number): number {
  let c = crc32UpdateU32(CRC32_START, sequence);
  c = crc32UpdateU32(c, slot);
  return crc32Finish(crc32Update(c, bytes, 0, V1_RECORD_CRC_OFFSET));
}

/** A v1 record as firmware before format v2 wrote it: always classic, never shares. */
function decodeRecordV1(bytes: Uint8Array, sequence: number, slot: number): RecordCheck {
  if (bytes.length !== V1_SLOT_BYTES) return { kind: 'invalid' };
  if (isBlank(bytes)) return { kind: 'blank' };
  if (wordState(bytes, V1_RECORD_COMMIT_OFFSET) !== 'set') return { kind: 'invalid' };
  const v = view(bytes);
  if (v.getUint32(V1_RECORD_CRC_OFFSET, true) !== v1RecordCrc(bytes, sequence, slot)) return { kind: 'invalid' };
  const type = bytes[RECORD_TYPE_OFFSET] as number;
  if (type !== RECORD_ACTIVE && type !== RECORD_FUTURE) return { kind: 'invalid' };
  if (bytes[1] !== 0 || bytes[2] !== 0 || bytes[3] !== 0) return { kind: 'invalid' };
  return {
    kind: 'record',
    type,
    mode: 'classic',
    id: v.getUint32(RECORD_ID_OFFSET, true),
    key: bytes.slice(RECORD_KEY_OFFSET, RECORD_KEY_OFFSET + KEY_BYTES),
    shares: undefined,
    promote: wordState(bytes, V1_RECORD_PROMOTE_OFFSET),
  };
}

/** Offset of the promote word (the retired marker in slot 0) in a slot of `version`. */
export function promoteOffset(version: FormatVersion): number {
  return version === FORMAT_VERSION ? RECORD_PROMOTE_OFFSET : V1_RECORD_PROMOTE_OFFSET;
}

/**
 * A snapshot slot the scrub has retired: type 'A' and its retired marker
 * (the promote word) not clear, in a v2 sector with a valid mode byte, in a
 * v1 sector with its commit word set. The key and CRC are not looked at: the
 * scrub zeroes the key after setting the marker. Only consulted in a sector
 * that counts (its header-bound commit word is valid), whose slot 0 was
 * complete before that commit.
 */
export function isRetiredSnapshot(bytes: Uint8Array, version: FormatVersion): boolean {
  if (bytes[RECORD_TYPE_OFFSET] !== RECORD_ACTIVE) return false;
  if (version === FORMAT_VERSION) {
    return (
      bytes.length === SLOT_BYTES &&
      modeOf(bytes[RECORD_MODE_OFFSET] as number) !== undefined &&
      bytes[RECORD_SHARES_LENGTH_OFFSET] === 0 &&
      bytes[3] === 0 &&
      wordState(bytes, RECORD_PROMOTE_OFFSET) !== 'clear'
    );
  }
  return (
    bytes.length === V1_SLOT_BYTES &&
    bytes[1] === 0 &&
    bytes[2] === 0 &&
    bytes[3] === 0 &&
    wordState(bytes, V1_RECORD_COMMIT_OFFSET) === 'set' &&
    wordState(bytes, V1_RECORD_PROMOTE_OFFSET) !== 'clear'
  );
}

/** The key id and mode a retired snapshot still shows (ids and modes of later records must not go below them). */
export function retiredSnapshotFloor(bytes: Uint8Array, version: FormatVersion): { id: number; mode: RekeyMode } {
  const id = view(bytes).getUint32(RECORD_ID_OFFSET, true);
  return { id, mode: version === FORMAT_VERSION ? (modeOf(bytes[RECORD_MODE_OFFSET] as number) ?? 'classic') : 'classic' };
}
