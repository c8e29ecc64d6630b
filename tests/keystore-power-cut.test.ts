// Power-cut injection on the keystore (docs/KEYSTORE.md §6), format v2.
// The scripts mix classic and dh-derived futures (with shares), so each run
// also moves the mode to dh by a promotion; every check compares ids, keys,
// the mode and the shares (keysEqual). The migration from format v1 is cut in
// tests/keystore-migration.test.ts.
// Exhaustive: for a 20-rotation script crossing several compactions, a cut at
// every program and erase, at every byte offset of every program, with every
// outcome of the byte in flight (all subsets of the bits it clears) on the
// 4 x 512-byte partition, sampled outcomes on the others, and 8 torn-erase
// patterns plus completion for every erase. After each cut: remount, the
// state must be exactly before or after the cut operation, and the journal
// must carry on. Two-cut runs: a compaction cut at every point, then the
// retry with another key torn at its erase; and seeded random cuts where a
// cut store is retried or replaced by another key. tools/keystore-soak.ts
// runs the larger sets.
import { NorFlash, PowerCut } from '../modules/flash/nor-flash';
import type { FlashOperation } from '../modules/flash/nor-flash';
import { SeededRandom, enumerateCuts, tornErasePatterns } from '../tools/testing/cut-injection';
import { exploreCuts, exploreRetryCuts, randomCutRun } from '../tools/testing/cut-harness';
import { Keystore } from '../modules/keystore/keystore';
import type { DeviceKeys } from '../modules/platform/keys';

const totals = { cutPoints: 0 };
afterAll(() => console.log(`keystore power-cut tests: ${totals.cutPoints} cut points tried in total`));

test.each([
  ['4 x 512 B, every in-flight bit pattern', { sectorSize: 512, sectors: 4 }, 'all' as const, 150_000],
  ['2 x 512 B (smallest ring), 16 bit patterns per byte', { sectorSize: 512, sectors: 2 }, 16, 50_000],
  ['4 x 4096 B (the default partition), 4 bit patterns per byte', { sectorSize: 4096, sectors: 4 }, 4, 15_000],
])('exhaustive cuts over 20+ rotations, classic then dh: %s', (name, geometry, bitPatterns, atLeast) => {
  // 30 rotations on 4 KiB sectors (27 futures per sector) so that one compaction happens there too.
  const rotations = geometry.sectorSize === 4096 ? 30 : 20;
  const report = exploreCuts({ geometry, rotations, bitPatterns, seed: 20240601 });
  console.log(`${name}: ${JSON.stringify(report)}`);
  totals.cutPoints += report.cutPoints;
  expect(report.operations).toBe(rotations * 2);
  expect(report.compactions).toBeGreaterThanOrEqual(geometry.sectorSize === 4096 ? 1 : 9);
  expect(report.dhPromotions).toBeGreaterThanOrEqual(5);
  expect(report.cutPoints).toBeGreaterThanOrEqual(atLeast);
  expect(report.mountedBefore + report.mountedAfter).toBe(report.cutPoints);
});

test('exhaustive cuts on a partition formatted in the dh mode (4 x 512 B, 8 bit patterns per byte)', () => {
  const report = exploreCuts({ geometry: { sectorSize: 512, sectors: 4 }, rotations: 8, bitPatterns: 8, seed: 41, initialMode: 'dh' });
  console.log(`dh from the start: ${JSON.stringify(report)}`);
  totals.cutPoints += report.cutPoints;
  expect(report.compactions).toBeGreaterThanOrEqual(3);
  expect(report.mountedBefore + report.mountedAfter).toBe(report.cutPoints);
});

test('two cuts: an interrupted compaction, then a torn erase while storing another key, never resurrects the first key', () => {
  const report = exploreRetryCuts({ geometry: { sectorSize: 512, sectors: 4 }, rotations: 20, bitPatterns: 2, seed: 7 });
  console.log(`retry after an interrupted compaction: ${JSON.stringify(report)}`);
  totals.cutPoints += report.cutPoints;
  expect(report.compactions).toBeGreaterThanOrEqual(9);
  expect(report.cutPoints).toBeGreaterThanOrEqual(20_000);
});

test.each([
  ['4 x 512 B', { sectorSize: 512, sectors: 4 }, 3],
  ['4 x 4096 B', { sectorSize: 4096, sectors: 4 }, 4],
])('seeded random cuts over 2,000 rotations: %s', (name, geometry, seed) => {
  const report = randomCutRun({ geometry, rotations: 2000, seed, cutProbability: 0.5 });
  console.log(`random run ${name}: ${JSON.stringify(report)}`);
  totals.cutPoints += report.cuts;
  expect(report.cuts).toBeGreaterThan(1000);
  expect(report.mountedAfter).toBeGreaterThan(0);
  expect(report.dhPromotions).toBeGreaterThan(1000);
});

describe('format (provisioning) under cuts', () => {
  const geometry = { sectorSize: 512, sectors: 4 };
  const newId = Uint8Array.of(9, 9, 9, 9, 9, 9, 9, 9);
  const newKeys: DeviceKeys = { mode: 'dh', active: { id: 1, key: new Uint8Array(64).fill(0x5a) } };

  function existingJournal(): { image: Uint8Array; keys: DeviceKeys } {
    const flash = new NorFlash(geometry);
    const keystore = new Keystore(flash);
    keystore.format(Uint8Array.of(1, 1, 1, 1, 1, 1, 1, 1), { id: 1, key: new Uint8Array(64).fill(1) }, 'classic');
    for (let id = 2; id < 12; id++) {
      keystore.storeFuture(id, new Uint8Array(64).fill(id));
      keystore.promote();
    }
    keystore.storeFuture(12, new Uint8Array(64).fill(12), { hub: new Uint8Array(32).fill(0xa1), device: new Uint8Array(32).fill(0xd1) });
    return { image: flash.image(), keys: keystore.keys };
  }

  test.each([
    ['a blank partition', () => ({ image: new Uint8Array(2048).fill(0xff), keys: undefined })],
    ['random bytes', () => ({ image: new SeededRandom(8).bytes(2048), keys: undefined })],
    ['an existing journal', existingJournal],
  ])('over %s: the old state (or none) or the new one, then formatting again works', (_name, start) => {
    const { image, keys: oldKeys } = start();
    const trace: FlashOperation[] = [];
    const traced = new NorFlash({ ...geometry, image });
    traced.observer = (op) => trace.push(op);
    new Keystore(traced).format(newId, newKeys.active, newKeys.mode);
    const enumeration = { bitPatterns: 8, erasePatterns: tornErasePatterns(9), random: new SeededRandom(10) };
    let cuts = 0;
    for (const cut of enumerateCuts(trace, enumeration)) {
      const flash = new NorFlash({ ...geometry, image });
      flash.armCut(cut.plan);
      expect(() => new Keystore(flash).format(newId, newKeys.active, newKeys.mode)).toThrow(PowerCut);
      flash.restorePower();
      const keystore = new Keystore(flash);
      const result = keystore.mount();
      if (result.provisioned && result.deviceId[0] === 9) {
        expect(result.keys).toEqual(newKeys);
      } else if (oldKeys === undefined) {
        expect(result.provisioned).toBe(false);
      } else {
        expect(result).toMatchObject({ provisioned: true, keys: oldKeys });
      }
      keystore.format(newId, newKeys.active, newKeys.mode);
      expect(new Keystore(flash).mount()).toEqual({ provisioned: true, deviceId: newId, keys: newKeys });
      cuts++;
    }
    totals.cutPoints += cuts;
    expect(cuts).toBeGreaterThan(500);
  });
});
