/**
 * Power-cut injection for any Flash (notably the file image of
 * hosts/node/flash-file.ts), with the NOR model's cut semantics
 * (modules/flash/nor-flash.ts `CutPlan`):
 * - a torn program leaves a prefix of its bytes programmed and the byte in
 *   flight with a subset of its to-be-cleared bits cleared, nothing after;
 * - a torn erase leaves whatever the plan computes from the old content
 *   (written as erase-then-program, which yields exactly that content).
 * Then the power is off: every access throws PowerCut until
 * `restorePower()` (the next boot).
 */
import { LockstepError } from '../../modules/errors';
import { PowerCut, type CutPlan } from '../../modules/flash/nor-flash';
import type { Flash } from '../../modules/platform/flash';

export class CuttableFlash implements Flash {
  readonly size: number;
  readonly sectorSize: number;
  readonly #inner: Flash;
  #plan: CutPlan | undefined;
  #countdown = 0;
  #powered = true;
  /** Program and erase operations carried out (torn ones included). */
  operations = 0;
  cuts = 0;

  constructor(inner: Flash) {
    this.#inner = inner;
    this.size = inner.size;
    this.sectorSize = inner.sectorSize;
  }

  get isPowered(): boolean {
    return this.#powered;
  }

  /** Arms one cut, `plan.atOperation` program/erase operations from now. */
  armCut(plan: CutPlan): void {
    if (!Number.isInteger(plan.atOperation) || plan.atOperation < 0) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'cut operation');
    this.#plan = plan;
    this.#countdown = plan.atOperation;
  }

  disarmCut(): void {
    this.#plan = undefined;
  }

  restorePower(): void {
    this.#plan = undefined;
    this.#powered = true;
  }

  /** Closes the wrapped flash if it holds a resource (a file image). */
  close(): void {
    (this.#inner as Flash & { close?(): void }).close?.();
  }

  read(offset: number, length: number): Uint8Array {
    this.#requirePower();
    return this.#inner.read(offset, length);
  }

  program(offset: number, data: Uint8Array): void {
    this.#requirePower();
    this.operations++;
    const plan = this.#take();
    if (plan === undefined) {
      this.#inner.program(offset, data);
      return;
    }
    const planned = plan.programmedBytes ?? 0;
    const prefix = typeof planned === 'function' ? planned(data.length) : planned;
    const complete = Math.max(0, Math.min(data.length, Math.floor(prefix)));
    if (complete > 0) this.#inner.program(offset, data.subarray(0, complete));
    if (complete < data.length) {
      const old = this.#inner.read(offset + complete, 1)[0] as number;
      const toClear = old & ~(data[complete] as number) & 0xff;
      const left = old & ~(toClear & (plan.inFlightBits ?? 0)) & 0xff;
      if (left !== old) this.#inner.program(offset + complete, new Uint8Array([left]));
    }
    this.#powerOff();
  }

  erase(sector: number): void {
    this.#requirePower();
    this.operations++;
    const plan = this.#take();
    if (plan === undefined) {
      this.#inner.erase(sector);
      return;
    }
    const start = sector * this.sectorSize;
    const previous = this.#inner.read(start, this.sectorSize);
    const left = plan.tornErase === undefined ? previous.slice() : plan.tornErase(previous.slice());
    if (left.length !== this.sectorSize) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'torn erase size');
    this.#inner.erase(sector);
    this.#inner.program(start, left);
    this.#powerOff();
  }

  #take(): CutPlan | undefined {
    if (this.#plan === undefined) return undefined;
    if (this.#countdown > 0) {
      this.#countdown--;
      return undefined;
    }
    const plan = this.#plan;
    this.#plan = undefined;
    return plan;
  }

  #powerOff(): never {
    this.#powered = false;
    this.cuts++;
    throw new PowerCut();
  }

  #requirePower(): void {
    if (!this.#powered) throw new PowerCut();
  }
}
