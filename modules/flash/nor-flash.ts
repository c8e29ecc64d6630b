/**
 * A NOR flash model with the semantics of the ESP32's SPI flash, plus
 * power-cut injection, for the keystore's tests and the wear benchmark.
 *
 * Invariants (the `Flash` seam, modules/platform/flash.ts):
 * - erase(sector) sets every byte of the sector to 0xFF;
 * - program(offset, data) only clears bits: new = old AND data;
 * - read returns a copy.
 *
 * Power cuts (docs/KEYSTORE.md §5): `armCut` picks one future program or
 * erase. When it starts, that operation is torn as the plan says:
 * - program: a prefix of the bytes is fully programmed, and the byte in
 *   flight has a subset of its to-be-cleared bits cleared; nothing after it;
 * - erase: the sector is left with whatever content the plan produces
 *   (unchanged, half erased, zeros, random...).
 * Then the power is off: every later read, program or erase throws
 * `PowerCut` until `restorePower()`, which models the next boot.
 *
 * Counters: programs and erases per sector (a program that spans two
 * sectors counts for each), total bytes programmed; torn operations count.
 */
import { LockstepError } from '../errors';
import type { Flash } from '../platform/flash';

/** Thrown by the model when the injected power cut happens, and while off. */
export class PowerCut extends Error {
  constructor() {
    super('power cut (simulated)');
    // Defined, not assigned: Moddable's XS freezes Error.prototype.
    Object.defineProperty(this, 'name', { value: 'PowerCut', configurable: true, writable: true });
  }
}

/** The content a torn erase leaves, computed from the sector's previous content. */
export type TornErase = (previous: Uint8Array) => Uint8Array;

export interface CutPlan {
  /** Which operation is torn: 0 = the next program or erase after arming. */
  readonly atOperation: number;
  /**
   * Program cuts: how many leading bytes were fully programmed. A value
   * >= the program's length means the program completed and the power
   * failed right after it. A function receives the program's length.
   */
  readonly programmedBytes?: number | ((length: number) => number);
  /** Program cuts: which of the in-flight byte's to-be-cleared bits did clear (a mask). */
  readonly inFlightBits?: number;
  /** Erase cuts: the content left behind; default: the erase did nothing. */
  readonly tornErase?: TornErase;
}

/** One program or erase, as reported to an observer (before it takes effect). */
export type FlashOperation =
  | { readonly kind: 'program'; readonly offset: number; readonly data: Uint8Array; readonly previous: Uint8Array }
  | { readonly kind: 'erase'; readonly sector: number; readonly previous: Uint8Array };

export interface NorFlashOptions {
  /** Erase unit in bytes; default 4096 as on the ESP32. */
  readonly sectorSize?: number;
  /** Number of sectors; default 4 (16 KiB). */
  readonly sectors?: number;
  /** Initial content (copied); default all 0xFF (a freshly erased chip). */
  readonly image?: Uint8Array;
}

export class NorFlash implements Flash {
  readonly size: number;
  readonly sectorSize: number;
  /** Erases per sector since creation (including torn ones). */
  readonly sectorErases: Uint32Array;
  /** Program calls touching each sector since creation (including torn ones). */
  readonly sectorPrograms: Uint32Array;
  /** Total program and erase operations started since creation. */
  operations = 0;
  programs = 0;
  erases = 0;
  programmedBytes = 0;
  /** Test hook: sees each program/erase before it takes effect (not called while off). */
  observer: ((operation: FlashOperation) => void) | undefined;

  private readonly cells: Uint8Array;
  private cut: CutPlan | undefined;
  private cutOperation = 0;
  private powered = true;

  constructor(options: NorFlashOptions = {}) {
    const sectorSize = options.sectorSize ?? 4096;
    const sectors = options.sectors ?? 4;
    if (!Number.isInteger(sectorSize) || sectorSize <= 0 || !Number.isInteger(sectors) || sectors <= 0) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', 'flash geometry');
    }
    this.sectorSize = sectorSize;
    this.size = sectorSize * sectors;
    this.cells = new Uint8Array(this.size).fill(0xff);
    if (options.image !== undefined) {
      if (options.image.length !== this.size) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'image size');
      this.cells.set(options.image);
    }
    this.sectorErases = new Uint32Array(sectors);
    this.sectorPrograms = new Uint32Array(sectors);
  }

  get isPowered(): boolean {
    return this.powered;
  }

  read(offset: number, length: number): Uint8Array {
    this.requirePower();
    this.checkRange(offset, length);
    return this.cells.slice(offset, offset + length);
  }

  program(offset: number, data: Uint8Array): void {
    this.requirePower();
    this.checkRange(offset, data.length);
    if (this.observer !== undefined) {
      const previous = this.cells.slice(offset, offset + data.length);
      this.observer({ kind: 'program', offset, data: data.slice(), previous });
    }
    this.operations++;
    this.programs++;
    if (data.length > 0) {
      const first = Math.floor(offset / this.sectorSize);
      const last = Math.floor((offset + data.length - 1) / this.sectorSize);
      for (let s = first; s <= last; s++) this.sectorPrograms[s] = (this.sectorPrograms[s] as number) + 1;
    }
    let complete = data.length;
    let inFlightBits = 0;
    const cutNow = this.takeCut();
    if (cutNow !== undefined) {
      const planned = cutNow.programmedBytes ?? 0;
      const prefix = typeof planned === 'function' ? planned(data.length) : planned;
      complete = Math.max(0, Math.min(data.length, Math.floor(prefix)));
      inFlightBits = cutNow.inFlightBits ?? 0;
    }
    for (let i = 0; i < complete; i++) {
      this.cells[offset + i] = (this.cells[offset + i] as number) & (data[i] as number);
    }
    this.programmedBytes += complete;
    if (cutNow === undefined) return;
    if (complete < data.length) {
      // The byte in flight: only bits the program meant to clear can clear.
      const at = offset + complete;
      const old = this.cells[at] as number;
      const toClear = old & ~(data[complete] as number) & 0xff;
      this.cells[at] = old & ~(toClear & inFlightBits) & 0xff;
    }
    this.powerOff();
  }

  erase(sector: number): void {
    this.requirePower();
    if (!Number.isInteger(sector) || sector < 0 || sector >= this.sectorErases.length) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `sector ${sector}`);
    }
    const start = sector * this.sectorSize;
    if (this.observer !== undefined) {
      this.observer({ kind: 'erase', sector, previous: this.cells.slice(start, start + this.sectorSize) });
    }
    this.operations++;
    this.erases++;
    this.sectorErases[sector] = (this.sectorErases[sector] as number) + 1;
    const cutNow = this.takeCut();
    if (cutNow === undefined) {
      this.cells.fill(0xff, start, start + this.sectorSize);
      return;
    }
    const previous = this.cells.slice(start, start + this.sectorSize);
    const left = cutNow.tornErase === undefined ? previous : cutNow.tornErase(previous);
    if (left.length !== this.sectorSize) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'torn erase size');
    this.cells.set(left, start);
    this.powerOff();
  }

  /** Arms one power cut, counted from the next program or erase. Replaces any armed cut. */
  armCut(plan: CutPlan): void {
    if (!Number.isInteger(plan.atOperation) || plan.atOperation < 0) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', 'cut operation');
    }
    this.cut = plan;
    this.cutOperation = this.operations + plan.atOperation;
  }

  /** Disarms a cut that has not happened (e.g. the operation did fewer writes). */
  disarmCut(): void {
    this.cut = undefined;
  }

  /** The next boot: power is back, nothing armed. */
  restorePower(): void {
    this.cut = undefined;
    this.powered = true;
  }

  /** A copy of the whole content (for snapshots and images). */
  image(): Uint8Array {
    return this.cells.slice();
  }

  private takeCut(): CutPlan | undefined {
    const plan = this.cut;
    // `operations` was already incremented for the operation under way.
    if (plan === undefined || this.operations - 1 !== this.cutOperation) return undefined;
    this.cut = undefined;
    return plan;
  }

  private powerOff(): never {
    this.powered = false;
    throw new PowerCut();
  }

  private requirePower(): void {
    if (!this.powered) throw new PowerCut();
  }

  private checkRange(offset: number, length: number): void {
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `range ${offset}+${length}`);
    }
  }
}
