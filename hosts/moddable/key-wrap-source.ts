/**
 * Reading the key-wrap partition image (modules/keystore/key-wrap-image.ts)
 * on the two targets; the choice between wrapped and plain storage is
 * modules/keystore/wrapped-keystore.ts `openKeystore`.
 *
 * - ESP32: the SDK's `flash` module on the partition labelled
 *   `keyWrapPartition`. Its read is `esp_partition_read`
 *   (modules/files/flash/esp32/flash.c, xs_flash_read), which decrypts a
 *   partition flagged `encrypted` when flash encryption is on, so the chip
 *   sees the plain image while the flash chip holds only ciphertext.
 *   No such partition (the SDK constructor throws "can't find partition")
 *   means none; a failing read is an I/O error and propagates.
 * - Simulator: a file next to the keystore image (`keyWrapImage`); no file
 *   means none.
 *
 * Invariants: reads only the image's KEY_WRAP_IMAGE_BYTES; never writes;
 * the caller wipes the returned bytes once used. SDK objects are injected,
 * so this runs on Node in the tests.
 */
import { KEY_WRAP_IMAGE_BYTES } from '../../modules/keystore/key-wrap-image';

/** The part of the SDK's `flash` instance used here (modules/files/flash/flash.js). */
export interface SdkFlashReader {
  read(offset: number, byteLength: number): ArrayBuffer;
  readonly byteLength: number;
}

/** Returns the partition's first bytes, or undefined if the partition does not exist. */
export function readKeyWrapPartition(open: (label: string) => SdkFlashReader, label: string): Uint8Array | undefined {
  let partition: SdkFlashReader;
  try {
    partition = open(label);
  } catch {
    return undefined; // the only constructor failure: no data partition with that label
  }
  const length = Math.min(partition.byteLength, KEY_WRAP_IMAGE_BYTES);
  return new Uint8Array(partition.read(0, length));
}

/** The subset of the SDK's `file` module used here. */
export interface KeyWrapFiles {
  exists(path: string): boolean;
  /** Reads up to `count` bytes from the start of the file (SDK: new File(path).read(ArrayBuffer, count), then close). */
  readStart(path: string, count: number): ArrayBuffer;
}

/** Returns the file's first bytes, or undefined if there is no such file. */
export function readKeyWrapFile(files: KeyWrapFiles, path: string): Uint8Array | undefined {
  if (!files.exists(path)) return undefined;
  return new Uint8Array(files.readStart(path, KEY_WRAP_IMAGE_BYTES));
}
