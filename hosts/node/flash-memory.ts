/**
 * In-memory flash for Node: the NOR model of modules/flash (same semantics,
 * counters and cut injection), sized like the keystore partition by default.
 * Content is lost when the process exits; see flash-file.ts for an image
 * that survives restarts.
 */
import { NorFlash } from '../../modules/flash/nor-flash';

export const KEYSTORE_PARTITION_BYTES = 16 * 1024;
export const FLASH_SECTOR_BYTES = 4096;

/** A fresh (all 0xFF) flash, or one holding a copy of `image`. */
export function memoryFlash(options: { size?: number; sectorSize?: number; image?: Uint8Array } = {}): NorFlash {
  const sectorSize = options.sectorSize ?? FLASH_SECTOR_BYTES;
  const size = options.size ?? options.image?.length ?? KEYSTORE_PARTITION_BYTES;
  const base = { sectorSize, sectors: size / sectorSize };
  return new NorFlash(options.image === undefined ? base : { ...base, image: options.image });
}
