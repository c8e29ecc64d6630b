/**
 * A flash partition image in a file, with NOR semantics (erase sets a sector
 * to 0xFF, program only clears bits) so the simulator and the hub demo keep
 * device keys across restarts. Every program and erase is written with
 * pwrite and fsync'd before returning: durable when the call returns, as the
 * keystore requires (docs/KEYSTORE.md §2).
 *
 * The file is exactly the partition: the same bytes can be flashed at the
 * keystore partition's offset on an ESP32.
 */
import { closeSync, fsyncSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { LockstepError } from '../../modules/errors';
import type { Flash } from '../../modules/platform/flash';
import { FLASH_SECTOR_BYTES, KEYSTORE_PARTITION_BYTES } from './flash-memory';

export interface FileFlashOptions {
  /** Partition size in bytes; default 16 KiB. An existing file must have exactly this size. */
  readonly size?: number;
  /** Default 4096. */
  readonly sectorSize?: number;
  /** Create a blank (all 0xFF) image if the file does not exist; default true. */
  readonly create?: boolean;
}

export class FileFlash implements Flash {
  readonly size: number;
  readonly sectorSize: number;
  private fd: number | undefined;

  constructor(path: string, options: FileFlashOptions = {}) {
    this.size = options.size ?? KEYSTORE_PARTITION_BYTES;
    this.sectorSize = options.sectorSize ?? FLASH_SECTOR_BYTES;
    if (this.size <= 0 || this.sectorSize <= 0 || this.size % this.sectorSize !== 0) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', 'flash geometry');
    }
    let fd: number;
    let created = false;
    try {
      fd = openSync(path, 'r+');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || options.create === false) throw error;
      fd = openSync(path, 'wx+', 0o600); // holds keys: owner only
      created = true;
    }
    this.fd = fd;
    if (created) {
      writeSync(fd, new Uint8Array(this.size).fill(0xff), 0, this.size, 0);
      fsyncSync(fd);
    } else if (fstatSync(fd).size !== this.size) {
      const actual = fstatSync(fd).size;
      this.close();
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `${path} is ${actual} bytes, expected ${this.size}`);
    }
  }

  read(offset: number, length: number): Uint8Array {
    this.checkRange(offset, length);
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.handle(), out, done, length - done, offset + done);
      if (n === 0) throw new LockstepError('STORAGE_CORRUPT', 'flash image shorter than expected');
      done += n;
    }
    return out;
  }

  program(offset: number, data: Uint8Array): void {
    this.checkRange(offset, data.length);
    const cells = this.read(offset, data.length);
    for (let i = 0; i < cells.length; i++) cells[i] = (cells[i] as number) & (data[i] as number);
    this.writeDurably(cells, offset);
    cells.fill(0);
  }

  erase(sector: number): void {
    if (!Number.isInteger(sector) || sector < 0 || sector >= this.size / this.sectorSize) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `sector ${sector}`);
    }
    this.writeDurably(new Uint8Array(this.sectorSize).fill(0xff), sector * this.sectorSize);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private writeDurably(bytes: Uint8Array, offset: number): void {
    const fd = this.handle();
    let done = 0;
    while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, offset + done);
    fsyncSync(fd);
  }

  private handle(): number {
    if (this.fd === undefined) throw new LockstepError('LOCAL_NOT_READY', 'flash image closed');
    return this.fd;
  }

  private checkRange(offset: number, length: number): void {
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `range ${offset}+${length}`);
    }
  }
}
