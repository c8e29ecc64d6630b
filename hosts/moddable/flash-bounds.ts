/**
 * Argument checks shared by the flash adapters: every offset, length and
 * sector is validated before any I/O, and misuse is
 * LockstepError('LOCAL_BAD_ARGUMENT') with nothing written.
 */
import { LockstepError } from '../../modules/errors';

export function checkRange(size: number, offset: number, length: number): void {
  if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', `flash range ${offset}+${length} outside 0..${size}`);
  }
}

export function checkSector(size: number, sectorSize: number, sector: number): void {
  if (!Number.isInteger(sector) || sector < 0 || (sector + 1) * sectorSize > size) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', `flash sector ${sector} outside 0..${size / sectorSize - 1}`);
  }
}
