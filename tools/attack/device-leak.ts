/**
 * What the attacker extracts from a dump of a device's flash: the keystore
 * partition (keystore.bin) and, with key wrapping, the key-wrap partition
 * (keywrap.bin) — read as docs/KEYSTORE.md §3 and §10 lay them out, with
 * node:crypto and zlib's CRC-32, not with the project's keystore code.
 *
 * A forensic reading, not a mount: every record of every sector whose
 * header and record CRCs check is taken, active or future, current sector or
 * not — whatever the journal left in the flash is the attacker's. Retired
 * keys the scrub zeroed (§4.1) fail their CRC and yield nothing.
 *
 * Sector header (32 bytes, little-endian): magic "LKSJ", version u16 (1 or
 * 2), sector count u16, sector size u32, sequence u32, device id (8), CRC-32
 * of bytes 0..23, commit word. Record slots from offset 32, in the layout of
 * the sector's version:
 * - v2 (144 bytes): type ('A' snapshot, 'F' future), mode, shares length, 0,
 *   key id u32, key (64), H (32), D (32), commit CRC = CRC-32 of (sequence
 *   u32 ‖ slot index u32 ‖ bytes 0..135) with bit 31 cleared, promote word;
 * - v1 (84 bytes): type, 3 zero bytes, key id u32, key (64), CRC-32 of
 *   (sequence ‖ slot index ‖ bytes 0..71), commit word, promote word.
 *
 * Key wrap (§10.2): IV = HMAC-SHA-512(KWK[0..32], "lockstep keywrap v1" ‖
 * device id ‖ key id u32 BE)[0..16]; key = AES-256-CBC-decrypt(KWK[32..64],
 * IV, stored), no padding.
 */
import { createCipheriv, createDecipheriv, createHmac } from 'node:crypto';
import { crc32 } from 'node:zlib';
import type { LeakedKey, LeakedState } from './knowledge';

const SECTOR_MAGIC = 'LKSJ';
const WRAP_MAGIC = 'LKWK';
const SECTOR_HEADER_BYTES = 32;
/** Per format version: slot size, and whether the record is complete (its CRC or commit word). */
const LAYOUTS: Readonly<Record<number, { slotBytes: number; committed: (image: Buffer, base: number, sequence: number, slot: number) => boolean }>> = {
  1: {
    slotBytes: 84,
    committed: (image, base, sequence, slot) => image.readUInt32LE(base + 76) === 0 && crc32(recordCrcInput(image, base, sequence, slot, 72)) === image.readUInt32LE(base + 72),
  },
  2: {
    slotBytes: 144,
    committed: (image, base, sequence, slot) => ((crc32(recordCrcInput(image, base, sequence, slot, 136)) & 0x7fff_ffff) >>> 0) === image.readUInt32LE(base + 136),
  },
};

function recordCrcInput(image: Buffer, base: number, sequence: number, slot: number, bodyBytes: number): Buffer {
  const input = Buffer.alloc(8 + bodyBytes);
  input.writeUInt32LE(sequence, 0);
  input.writeUInt32LE(slot, 4);
  image.copy(input, 8, base, base + bodyBytes);
  return input;
}
const WRAP_LABEL = Buffer.from('lockstep keywrap v1', 'ascii');

/** The KWK of a key-wrap partition image (§10.1), or undefined if it is not a valid one. */
export function readKeyWrapImage(image: Uint8Array): Uint8Array | undefined {
  const bytes = Buffer.from(image.buffer, image.byteOffset, image.byteLength);
  if (bytes.length < 76 || bytes.toString('latin1', 0, 4) !== WRAP_MAGIC) return undefined;
  if (bytes.readUInt16LE(4) !== 1 || bytes.readUInt16LE(6) !== 64) return undefined;
  if (crc32(bytes.subarray(0, 72)) !== bytes.readUInt32LE(72)) return undefined;
  return new Uint8Array(bytes.subarray(8, 72));
}

function wrapIv(kwk: Uint8Array, deviceId: Uint8Array, keyId: number): Buffer {
  const id = Buffer.alloc(4);
  id.writeUInt32BE(keyId >>> 0);
  return createHmac('sha512', kwk.subarray(0, 32)).update(WRAP_LABEL).update(deviceId).update(id).digest().subarray(0, 16);
}

export function unwrapDeviceKey(kwk: Uint8Array, deviceId: Uint8Array, keyId: number, stored: Uint8Array): Uint8Array {
  const decipher = createDecipheriv('aes-256-cbc', kwk.subarray(32, 64), wrapIv(kwk, deviceId, keyId)).setAutoPadding(false);
  return new Uint8Array(Buffer.concat([decipher.update(stored), decipher.final()]));
}

/** The stored form of `key` under `kwk` (for file scans: what a wrapped journal would hold). */
export function wrapDeviceKey(kwk: Uint8Array, deviceId: Uint8Array, keyId: number, key: Uint8Array): Uint8Array {
  const cipher = createCipheriv('aes-256-cbc', kwk.subarray(32, 64), wrapIv(kwk, deviceId, keyId)).setAutoPadding(false);
  return new Uint8Array(Buffer.concat([cipher.update(key), cipher.final()]));
}

interface JournalRecord {
  readonly keyId: number;
  readonly stored: Uint8Array;
  readonly where: string;
}

/** Every CRC-valid committed record in the partition, with the device id of its sector. */
function scanJournal(image: Buffer): { deviceId: Uint8Array | undefined; records: JournalRecord[]; notes: string[] } {
  const notes: string[] = [];
  let deviceId: Uint8Array | undefined;
  const records: JournalRecord[] = [];
  // The geometry is in every valid header; try the first one found at a 4 KiB or smaller power-of-two stride.
  let sectorSize = 0;
  for (let size = 512; size <= image.length && sectorSize === 0; size *= 2) {
    for (let at = 0; at + SECTOR_HEADER_BYTES <= image.length; at += size) {
      if (validHeader(image, at) && image.readUInt32LE(at + 8) === size) {
        sectorSize = size;
        break;
      }
    }
  }
  if (sectorSize === 0) {
    notes.push('no valid keystore sector header');
    return { deviceId, records, notes };
  }
  for (let at = 0; at + sectorSize <= image.length; at += sectorSize) {
    if (!validHeader(image, at)) continue;
    const sequence = image.readUInt32LE(at + 12);
    const layout = LAYOUTS[image.readUInt16LE(at + 4)]!;
    deviceId ??= new Uint8Array(image.subarray(at + 16, at + 24));
    const slots = Math.floor((sectorSize - SECTOR_HEADER_BYTES) / layout.slotBytes);
    for (let slot = 0; slot < slots; slot++) {
      const base = at + SECTOR_HEADER_BYTES + slot * layout.slotBytes;
      const type = image[base];
      if (type !== 0x41 && type !== 0x46) continue;
      if (!layout.committed(image, base, sequence, slot)) continue; // torn, never complete, or scrubbed
      records.push({ keyId: image.readUInt32LE(base + 4), stored: new Uint8Array(image.subarray(base + 8, base + 72)), where: `sector ${at / sectorSize} slot ${slot} '${String.fromCharCode(type)}'` });
    }
  }
  return { deviceId, records, notes };
}

function validHeader(image: Buffer, at: number): boolean {
  if (image.toString('latin1', at, at + 4) !== SECTOR_MAGIC) return false;
  if (LAYOUTS[image.readUInt16LE(at + 4)] === undefined) return false;
  return crc32(image.subarray(at, at + 24)) === image.readUInt32LE(at + 24);
}

/** Reads a device's flash dump: the keystore image, and the key-wrap image when the device wraps its keys. */
export function readDeviceLeak(images: { readonly keystore: Uint8Array; readonly keyWrap?: Uint8Array }): LeakedState {
  const image = Buffer.from(images.keystore.buffer, images.keystore.byteOffset, images.keystore.byteLength);
  const { deviceId, records, notes } = scanJournal(image);
  const kwk = images.keyWrap === undefined ? undefined : readKeyWrapImage(images.keyWrap);
  if (images.keyWrap !== undefined && kwk === undefined) notes.push('the key-wrap image is not valid: keys read as stored');
  const keys: LeakedKey[] = [];
  if (deviceId !== undefined) {
    const hexId = Buffer.from(deviceId).toString('hex');
    for (const record of records) {
      if (record.stored.every((b) => b === 0)) continue;
      const key = kwk === undefined ? record.stored : unwrapDeviceKey(kwk, deviceId, record.keyId, record.stored);
      if (keys.some((k) => k.keyId === record.keyId && Buffer.from(k.key).equals(Buffer.from(key)))) continue;
      keys.push({ deviceId: hexId, keyId: record.keyId, key, source: `device flash: ${record.where}${kwk === undefined ? '' : ', unwrapped'}` });
    }
  }
  // §11.7: the device never writes its ephemeral private key; a dump holds none to find.
  return { keys, ephemerals: [], notes };
}
