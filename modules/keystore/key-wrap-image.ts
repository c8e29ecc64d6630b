/**
 * The key-wrap partition image (docs/KEYSTORE.md §10.1): the per-device
 * key-wrapping key (KWK), written once at provisioning into a small
 * partition flagged `encrypted` (ESP32 flash encryption), never written by
 * the firmware.
 *
 *   offset  size  field (integers little-endian, as in the journal)
 *   0       4     magic 4C 4B 57 4B ("LKWK")
 *   4       2     format version = 1
 *   6       2     KWK length = 64
 *   8       64    KWK (IV-derivation key ‖ AES-256 key, modules/keystore/key-wrap.ts)
 *   72      4     CRC-32 (IEEE, as modules/keystore/crc32.ts) of bytes 0..71
 *   76      ...   0xFF up to the image size
 *
 * Invariants: parsing is total (never throws on content, only reports why
 * an image is not usable); an image is accepted only with magic, version,
 * length and CRC all right; returned keys are fresh copies.
 */
import { LockstepError } from '../errors';
import { crc32 } from './crc32';
import { KEY_WRAP_KEY_BYTES } from './key-wrap';

export const KEY_WRAP_MAGIC: readonly number[] = [0x4c, 0x4b, 0x57, 0x4b]; // "LKWK"
export const KEY_WRAP_FORMAT_VERSION = 1;
export const KEY_WRAP_KEY_OFFSET = 8;
export const KEY_WRAP_CRC_OFFSET = KEY_WRAP_KEY_OFFSET + KEY_WRAP_KEY_BYTES;
/** Bytes of the image that carry information; the rest of the partition is 0xFF. */
export const KEY_WRAP_IMAGE_BYTES = KEY_WRAP_CRC_OFFSET + 4;
/** The partition (and image file) size: one 4 KiB flash sector. */
export const KEY_WRAP_PARTITION_BYTES = 4096;

/**
 * Why an image is not usable. `erased`: every byte 0xFF (nothing provisioned;
 * on a flash-encrypted chip an erased partition reads as garbage instead,
 * i.e. `foreign`). `foreign`: no magic (zeros, random, other data).
 * `unsupported`: another version or key length. `corrupt`: CRC mismatch.
 * `truncated`: fewer than KEY_WRAP_IMAGE_BYTES bytes.
 */
export type KeyWrapImageProblem = 'erased' | 'foreign' | 'unsupported' | 'corrupt' | 'truncated';

export type KeyWrapImage =
  | { readonly ok: true; readonly kwk: Uint8Array }
  | { readonly ok: false; readonly reason: KeyWrapImageProblem; readonly detail: string };

/** Builds a partition image of `size` bytes (>= KEY_WRAP_IMAGE_BYTES) holding `kwk`. */
export function encodeKeyWrapImage(kwk: Uint8Array, size = KEY_WRAP_PARTITION_BYTES): Uint8Array {
  if (!(kwk instanceof Uint8Array) || kwk.length !== KEY_WRAP_KEY_BYTES) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', `key-wrapping key must be ${KEY_WRAP_KEY_BYTES} bytes`);
  }
  if (!Number.isInteger(size) || size < KEY_WRAP_IMAGE_BYTES) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', `key-wrap image needs at least ${KEY_WRAP_IMAGE_BYTES} bytes`);
  }
  const image = new Uint8Array(size).fill(0xff);
  const view = new DataView(image.buffer);
  image.set(KEY_WRAP_MAGIC, 0);
  view.setUint16(4, KEY_WRAP_FORMAT_VERSION, true);
  view.setUint16(6, KEY_WRAP_KEY_BYTES, true);
  image.set(kwk, KEY_WRAP_KEY_OFFSET);
  view.setUint32(KEY_WRAP_CRC_OFFSET, crc32(image, 0, KEY_WRAP_CRC_OFFSET), true);
  return image;
}

/** Reads an image (the partition's first bytes, or more). Never throws. */
export function decodeKeyWrapImage(bytes: Uint8Array): KeyWrapImage {
  if (bytes.length < KEY_WRAP_IMAGE_BYTES) {
    return { ok: false, reason: 'truncated', detail: `${bytes.length} bytes, need ${KEY_WRAP_IMAGE_BYTES}` };
  }
  let erased = true;
  for (let i = 0; i < KEY_WRAP_IMAGE_BYTES; i++) if (bytes[i] !== 0xff) erased = false;
  if (erased) return { ok: false, reason: 'erased', detail: 'every byte is 0xFF: no key-wrapping key provisioned' };
  for (let i = 0; i < KEY_WRAP_MAGIC.length; i++) {
    if (bytes[i] !== KEY_WRAP_MAGIC[i]) return { ok: false, reason: 'foreign', detail: 'no LKWK magic' };
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, KEY_WRAP_IMAGE_BYTES);
  const version = view.getUint16(4, true);
  const length = view.getUint16(6, true);
  if (version !== KEY_WRAP_FORMAT_VERSION || length !== KEY_WRAP_KEY_BYTES) {
    return { ok: false, reason: 'unsupported', detail: `version ${version}, key length ${length}` };
  }
  if (view.getUint32(KEY_WRAP_CRC_OFFSET, true) !== crc32(bytes, 0, KEY_WRAP_CRC_OFFSET)) {
    return { ok: false, reason: 'corrupt', detail: 'CRC-32 mismatch' };
  }
  return { ok: true, kwk: bytes.slice(KEY_WRAP_KEY_OFFSET, KEY_WRAP_CRC_OFFSET) };
}

/**
 * The KWK of a valid image, else a typed error: UNPROVISIONED for an erased
 * partition, STORAGE_CORRUPT for anything else.
 */
export function keyWrapKeyFromImage(bytes: Uint8Array): Uint8Array {
  const image = decodeKeyWrapImage(bytes);
  if (image.ok) return image.kwk;
  throw keyWrapImageError(image.reason, image.detail);
}

export function keyWrapImageError(reason: KeyWrapImageProblem, detail: string): LockstepError {
  return new LockstepError(reason === 'erased' ? 'UNPROVISIONED' : 'STORAGE_CORRUPT', `key-wrap partition ${reason}: ${detail}`);
}
