/**
 * The flash seam: NOR flash semantics as on the ESP32's SPI flash.
 * - erase(sector) sets every byte of that sector to 0xFF;
 * - program(offset, data) can only clear bits: new = old AND data;
 * - read returns a copy.
 * Implemented by modules/flash/nor-flash.ts (a model with power-cut
 * injection), hosts/node (memory and file images) and hosts/moddable
 * (the SDK's `flash` module on the keystore partition).
 */
export interface Flash {
  /** Total bytes; a multiple of sectorSize. */
  readonly size: number;
  /** Erase unit in bytes (4096 on ESP32). */
  readonly sectorSize: number;
  read(offset: number, length: number): Uint8Array;
  program(offset: number, data: Uint8Array): void;
  erase(sector: number): void;
}
