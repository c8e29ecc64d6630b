/**
 * The `Flash` seam (modules/platform/flash.ts) over the Moddable SDK's
 * `flash` module on an ESP32 data partition (modules/files/flash/esp32/flash.c:
 * esp_partition_read / esp_partition_write / esp_partition_erase_range).
 *
 * Invariants:
 * - NOR semantics come from the chip itself: esp_partition_write on an
 *   erased-or-programmed, *unencrypted* partition only clears bits. A
 *   partition with the `encrypted` flag breaks them (ESP-IDF requires
 *   16-byte aligned writes there, each block written once per erase), see
 *   docs/FIRMWARE.md "Flash encryption";
 * - the partition's erase unit must be the seam's sector size (4096);
 * - reads return fresh copies; ranges are checked before any I/O.
 *
 * The SDK object is injected (SdkFlash), so tests run on Node.
 */
import { LockstepError } from '../../modules/errors';
import type { Flash } from '../../modules/platform/flash';
import { checkRange, checkSector } from './flash-bounds';

/** The subset of the SDK's `flash` instance used here (modules/files/flash/flash.js). */
export interface SdkFlash {
  read(offset: number, byteLength: number): ArrayBuffer;
  write(offset: number, byteLength: number, buffer: Uint8Array): void;
  erase(sector: number): void;
  readonly byteLength: number;
  readonly blockSize: number;
}

export class PartitionFlash implements Flash {
  readonly size: number;
  readonly sectorSize: number;
  readonly #flash: SdkFlash;

  constructor(flash: SdkFlash) {
    const size = flash.byteLength;
    const sectorSize = flash.blockSize;
    if (!(sectorSize > 0) || !(size > 0) || size % sectorSize !== 0) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `partition of ${size} bytes is not whole ${sectorSize}-byte sectors`);
    }
    this.#flash = flash;
    this.size = size;
    this.sectorSize = sectorSize;
  }

  read(offset: number, length: number): Uint8Array {
    checkRange(this.size, offset, length);
    if (length === 0) return new Uint8Array(0);
    const bytes = new Uint8Array(this.#flash.read(offset, length));
    if (bytes.length !== length) throw new LockstepError('STORAGE_CORRUPT', `partition short read at ${offset}`);
    return bytes;
  }

  program(offset: number, data: Uint8Array): void {
    checkRange(this.size, offset, data.length);
    if (data.length === 0) return; // the SDK rejects zero-length writes
    this.#flash.write(offset, data.length, data);
  }

  erase(sector: number): void {
    checkSector(this.size, this.sectorSize, sector);
    this.#flash.erase(sector);
  }
}
