/**
 * A file-backed NOR flash image for the simulator, which has no `flash`
 * module: the same `Flash` seam (modules/platform/flash.ts) and the same
 * semantics as the ESP32's SPI flash, so the keystore journal runs unchanged.
 *
 * Invariants:
 * - erase(sector) writes 0xFF over the whole sector;
 * - program(offset, data) writes old AND data (bits only clear), read back
 *   from the file first, as NOR hardware does;
 * - the image is created erased (all 0xFF) if missing; an existing image of
 *   another size is refused (it belongs to another configuration);
 * - every write is flushed by the SDK's File.write (fflush; not fsync: it
 *   survives the simulator being killed, not the host OS crashing).
 *
 * The SDK's `File` class is injected (FileApi), so tests run on Node.
 */
import { LockstepError } from '../../modules/errors';
import type { Flash } from '../../modules/platform/flash';
import { checkRange, checkSector } from './flash-bounds';

/** The subset of the SDK's `file` module File instance used here (modules/files/file/file.js). */
export interface FileHandle {
  read(type: typeof ArrayBuffer, count: number): ArrayBuffer;
  /** The SDK's lin/mac implementation takes whole ArrayBuffers only (xsmcToArrayBuffer). */
  write(data: ArrayBuffer): void;
  position: number;
  readonly length: number;
  close(): void;
}

export interface FileApi {
  exists(path: string): boolean;
  /** Opens read-write, creating an empty file if missing (SDK: `new File(path, true)`). */
  openReadWrite(path: string): FileHandle;
}

export class FileNorFlash implements Flash {
  readonly size: number;
  readonly sectorSize: number;
  readonly #file: FileHandle;

  constructor(files: FileApi, path: string, size: number, sectorSize = 4096) {
    if (!Number.isInteger(sectorSize) || sectorSize <= 0 || !Number.isInteger(size) || size <= 0 || size % sectorSize !== 0) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', 'flash image size must be a positive multiple of the sector size');
    }
    const existed = files.exists(path);
    const file = files.openReadWrite(path);
    if (existed && file.length !== size) {
      const length = file.length;
      file.close();
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `flash image ${path} is ${length} bytes, expected ${size}`);
    }
    this.size = size;
    this.sectorSize = sectorSize;
    this.#file = file;
    if (!existed) {
      for (let sector = 0; sector < size / sectorSize; sector++) this.erase(sector);
    }
  }

  read(offset: number, length: number): Uint8Array {
    checkRange(this.size, offset, length);
    return this.#readAt(offset, length);
  }

  program(offset: number, data: Uint8Array): void {
    checkRange(this.size, offset, data.length);
    if (data.length === 0) return;
    const cells = this.#readAt(offset, data.length);
    for (let i = 0; i < cells.length; i++) cells[i] = (cells[i] as number) & (data[i] as number);
    this.#writeAt(offset, cells);
  }

  erase(sector: number): void {
    checkSector(this.size, this.sectorSize, sector);
    this.#writeAt(sector * this.sectorSize, new Uint8Array(this.sectorSize).fill(0xff));
  }

  close(): void {
    this.#file.close();
  }

  #readAt(offset: number, length: number): Uint8Array<ArrayBuffer> {
    if (length === 0) return new Uint8Array(0);
    this.#file.position = offset;
    const bytes = new Uint8Array(this.#file.read(ArrayBuffer, length));
    if (bytes.length !== length) throw new LockstepError('STORAGE_CORRUPT', `flash image short read at ${offset}`);
    return bytes;
  }

  /** `bytes` must own its whole buffer (the SDK writes ArrayBuffers, not views). */
  #writeAt(offset: number, bytes: Uint8Array<ArrayBuffer>): void {
    this.#file.position = offset;
    this.#file.write(bytes.buffer);
  }
}
