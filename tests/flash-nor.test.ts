// The NOR flash model (modules/flash/nor-flash.ts): ESP32 SPI flash
// semantics, counters, and power-cut injection.
import { NorFlash, PowerCut } from '../modules/flash/nor-flash';
import { SeededRandom, enumerateCuts, tornErasePatterns } from '../tools/testing/cut-injection';
import type { FlashOperation } from '../modules/flash/nor-flash';
import { isLockstepError } from '../modules/errors';

const small = () => new NorFlash({ sectorSize: 256, sectors: 2 });

describe('NOR semantics', () => {
  test('starts erased; erase sets a whole sector to 0xFF', () => {
    const flash = small();
    expect(flash.size).toBe(512);
    expect(flash.read(0, 512).every((b) => b === 0xff)).toBe(true);
    flash.program(0, new Uint8Array(512));
    flash.erase(1);
    expect(flash.read(0, 256).every((b) => b === 0)).toBe(true);
    expect(flash.read(256, 256).every((b) => b === 0xff)).toBe(true);
  });

  test('program only clears bits: new = old AND data', () => {
    const flash = small();
    flash.program(10, Uint8Array.of(0b1010_1010, 0x0f));
    flash.program(10, Uint8Array.of(0b1100_1100, 0xff));
    expect(Array.from(flash.read(10, 2))).toEqual([0b1000_1000, 0x0f]);
  });

  test('read returns a copy', () => {
    const flash = small();
    flash.read(0, 4).fill(0);
    expect(Array.from(flash.read(0, 4))).toEqual([0xff, 0xff, 0xff, 0xff]);
  });

  test('out-of-range access is a typed error', () => {
    const flash = small();
    for (const call of [() => flash.read(510, 4), () => flash.program(-1, new Uint8Array(1)), () => flash.erase(2), () => flash.read(0.5, 1)]) {
      expect(call).toThrow(expect.objectContaining({ code: 'LOCAL_BAD_ARGUMENT' }));
    }
  });

  test('counts programs and erases per sector', () => {
    const flash = small();
    flash.program(250, new Uint8Array(10)); // spans both sectors
    flash.program(0, new Uint8Array(1));
    flash.erase(1);
    expect(Array.from(flash.sectorPrograms)).toEqual([2, 1]);
    expect(Array.from(flash.sectorErases)).toEqual([0, 1]);
    expect([flash.programs, flash.erases, flash.operations, flash.programmedBytes]).toEqual([2, 1, 3, 11]);
  });
});

describe('power cuts', () => {
  test('a torn program writes a prefix and a subset of the in-flight byte, then the power stays off', () => {
    const flash = small();
    flash.program(0, Uint8Array.of(0xf0)); // byte 0 will not change again below
    flash.armCut({ atOperation: 1, programmedBytes: 2, inFlightBits: 0b0000_0101 });
    flash.program(100, Uint8Array.of(1, 2, 3)); // operation 0 after arming: completes
    expect(() => flash.program(0, Uint8Array.of(0x00, 0x11, 0b1111_0000, 0x44))).toThrow(PowerCut);
    expect(flash.isPowered).toBe(false);
    expect(() => flash.read(0, 1)).toThrow(PowerCut);
    expect(() => flash.erase(0)).toThrow(PowerCut);
    flash.restorePower();
    // bytes 0,1 programmed; byte 2 meant to clear bits 0..3, only bits 0 and 2 did; byte 3 untouched
    expect(Array.from(flash.read(0, 4))).toEqual([0x00, 0x11, 0b1111_1010, 0xff]);
    expect(Array.from(flash.read(100, 3))).toEqual([1, 2, 3]);
  });

  test('in-flight bits never clear a bit the program keeps', () => {
    const flash = small();
    flash.armCut({ atOperation: 0, programmedBytes: 0, inFlightBits: 0xff });
    expect(() => flash.program(0, Uint8Array.of(0b1111_0000))).toThrow(PowerCut);
    flash.restorePower();
    expect(flash.read(0, 1)[0]).toBe(0b1111_0000);
  });

  test('a program cut after completion has fully taken effect', () => {
    const flash = small();
    flash.armCut({ atOperation: 0, programmedBytes: (length) => length });
    expect(() => flash.program(0, Uint8Array.of(1, 2))).toThrow(PowerCut);
    flash.restorePower();
    expect(Array.from(flash.read(0, 2))).toEqual([1, 2]);
  });

  test('a torn erase leaves what the pattern says; disarm cancels', () => {
    const flash = small();
    flash.program(256, new Uint8Array(256));
    flash.armCut({ atOperation: 0, tornErase: (previous) => previous.fill(0xff, 0, 100) });
    expect(() => flash.erase(1)).toThrow(PowerCut);
    flash.restorePower();
    const sector = flash.read(256, 256);
    expect(sector.subarray(0, 100).every((b) => b === 0xff) && sector.subarray(100).every((b) => b === 0)).toBe(true);
    flash.armCut({ atOperation: 5 });
    flash.disarmCut();
    for (let i = 0; i < 8; i++) flash.erase(0);
    expect(flash.isPowered).toBe(true);
  });

  test('torn-erase patterns keep the sector size; random ones are seeded', () => {
    const previous = new SeededRandom(1).bytes(256);
    const a = tornErasePatterns(7).map((p) => p.tornErase(previous.slice()));
    const b = tornErasePatterns(7).map((p) => p.tornErase(previous.slice()));
    expect(a.every((content) => content.length === 256)).toBe(true);
    expect(a).toEqual(b);
    expect(new Set(a.map((content) => Array.from(content).join())).size).toBe(a.length);
  });

  test('cut enumeration: every byte offset, every subset of its to-be-cleared bits, plus completion', () => {
    const trace: FlashOperation[] = [
      { kind: 'program', offset: 0, data: Uint8Array.of(0x00, 0xff, 0xfe), previous: Uint8Array.of(0xff, 0xff, 0xff) },
      { kind: 'erase', sector: 1, previous: new Uint8Array(256) },
    ];
    const options = { bitPatterns: 'all' as const, erasePatterns: tornErasePatterns(1), random: new SeededRandom(1) };
    const cuts = Array.from(enumerateCuts(trace, options));
    // byte 0: 256 subsets; byte 1: nothing to clear (1); byte 2: one bit (2); completed (1)
    expect(cuts.filter((c) => c.operation === 0)).toHaveLength(256 + 1 + 2 + 1);
    expect(cuts.filter((c) => c.operation === 1)).toHaveLength(options.erasePatterns.length + 1);
    const sampled = Array.from(enumerateCuts(trace, { ...options, bitPatterns: 6 }));
    expect(sampled.filter((c) => c.operation === 0)).toHaveLength(6 + 1 + 2 + 1);
  });

  test('a bad cut plan is a typed error; the cut itself is not a LockstepError', () => {
    const flash = small();
    expect(() => flash.armCut({ atOperation: -1 })).toThrow(expect.objectContaining({ code: 'LOCAL_BAD_ARGUMENT' }));
    flash.armCut({ atOperation: 0 });
    let thrown: unknown;
    try {
      flash.erase(0);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(PowerCut);
    expect(isLockstepError(thrown)).toBe(false);
  });
});
