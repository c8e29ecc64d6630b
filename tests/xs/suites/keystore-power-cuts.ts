/**
 * The keystore journal on the NOR flash model with power cuts, on XS: the
 * portable exploration of tools/testing/cut-harness.ts (a cut at every
 * program and erase and at every byte of every program, then remount: the
 * keys are exactly those before or after the cut operation), on budgets small
 * enough for the interpreter. tests/keystore-power-cut.test.ts and
 * tests/keystore-migration.test.ts run the large budgets on Node; this proves
 * the same code holds on the real engine: format v2, scripts that move the
 * mode to dh with dh-derived futures (shares compared), and the migration of
 * images written by the v1 firmware.
 */
import { exploreCuts, exploreMigrationCuts, exploreRetryCuts, randomCutRun } from '../../../tools/testing/cut-harness';
import { assert, assertEqual, test } from '../harness';

const G = 'keystore';
const SMALL = { sectorSize: 512, sectors: 4 };

test(G, 'every cut of 8 rotations on 4 x 512 B (2 bit patterns per byte) mounts the state before or after', () => {
  const report = exploreCuts({ geometry: SMALL, rotations: 8, bitPatterns: 2, seed: 20240601 });
  assertEqual(report.operations, 16, 'operations');
  assert(report.compactions >= 2, `compactions ${report.compactions}`);
  assert(report.cutPoints >= 1000, `cut points ${report.cutPoints}`);
  assertEqual(report.mountedBefore + report.mountedAfter, report.cutPoints, 'every cut mounted before or after');
  assert(report.dhPromotions > 0, `dh promotions ${report.dhPromotions}`);
});

test(G, 'format v1 -> v2: every cut of the migration (2 v1 images, 1 bit pattern per byte) mounts before or after, and the v1 firmware never mounts a state the v2 journal moved past', () => {
  const report = exploreMigrationCuts({ geometry: SMALL, rotations: 1, bitPatterns: 1, seed: 13, opEvery: 2, startEvery: 2 });
  assertEqual(report.startImages, 2, 'start images');
  assert(report.cutPoints >= 500, `cut points ${report.cutPoints}`);
  assert(report.stillV1 > 0 && report.migrated > 0, `v1 ${report.stillV1}, v2 ${report.migrated}`);
  assertEqual(report.mountedBefore + report.mountedAfter, report.cutPoints, 'every cut mounted before or after');
});

test(G, 'two cuts (interrupted compaction, then a torn erase while storing another key) on the smallest ring', () => {
  const report = exploreRetryCuts({ geometry: { sectorSize: 512, sectors: 2 }, rotations: 3, bitPatterns: 1, seed: 7 });
  assert(report.cutPoints > 0, 'cut points');
  assertEqual(report.mountedBefore + report.mountedAfter, report.cutPoints, 'every cut mounted before or after');
});

test(G, 'seeded random cuts over 300 rotations on 4 x 4096 B', () => {
  const report = randomCutRun({ geometry: { sectorSize: 4096, sectors: 4 }, rotations: 300, seed: 4, cutProbability: 0.5 });
  assert(report.cuts > 100, `cuts ${report.cuts}`);
  assert(report.mountedAfter > 0, 'some cut operations completed');
});
