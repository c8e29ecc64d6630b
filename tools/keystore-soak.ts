/**
 * The keystore's long fault runs (docs/KEYSTORE.md §6), behind
 * `npm run soak:keystore`:
 * 1. seeded random cuts over 100,000 rotations on the default 16 KiB
 *    partition and on 4 x 512-byte sectors (a compaction every 4 rotations);
 * 2. the exhaustive cut exploration with every in-flight bit pattern on all
 *    three test geometries (CI samples the patterns on two of them);
 * 3. the two-cut exploration (an interrupted compaction, then a torn erase
 *    while storing another key) with every bit pattern (CI: two per byte);
 * 4. the migration of v1 images (tools/testing/keystore-v1) to format v2,
 *    cut at every byte: every bit pattern on 4 x 512 B, 8 per byte on the
 *    field geometry (CI: 2 and 1).
 * Every script mixes classic and dh-derived futures (the mode moves to dh).
 * Any violation throws with the seed and the cut point; exit code 1.
 *
 *   tsx tools/keystore-soak.ts [--seed N] [--rotations N] [--skip-exhaustive]
 */
import { Command, InvalidArgumentError } from 'commander';
import { exploreCuts, exploreMigrationCuts, exploreRetryCuts, randomCutRun } from './testing/cut-harness';
import type { FlashGeometry } from './testing/cut-harness';

function parseCount(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
}

const options = new Command()
  .name('keystore-soak')
  .option('--seed <n>', 'seed of the random runs', parseCount, 1)
  .option('--rotations <n>', 'rotations per random run', parseCount, 100_000)
  .option('--skip-exhaustive', 'only the random runs', false)
  .parse(process.argv)
  .opts<{ seed: number; rotations: number; skipExhaustive: boolean }>();

const label = (g: FlashGeometry) => `${g.sectors} x ${g.sectorSize} B`;
let cutPoints = 0;
const started = Date.now();

for (const [index, geometry] of [{ sectorSize: 4096, sectors: 4 }, { sectorSize: 512, sectors: 4 }].entries()) {
  const seed = options.seed + index;
  const t = Date.now();
  const report = randomCutRun({
    geometry,
    rotations: options.rotations,
    seed,
    cutProbability: 0.5,
    onProgress: (done) => {
      if (done % 10_000 === 0) process.stderr.write(`  ${label(geometry)}: ${done} rotations\n`);
    },
  });
  cutPoints += report.cuts;
  console.log(`random run, ${label(geometry)}, seed ${seed}: ${JSON.stringify(report)} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
}

if (!options.skipExhaustive) {
  // Rotations per geometry: with 144-byte records a 512-byte sector holds 3, so 24 rotations
  // compact 12 times (the ring wraps 3 times); 40 on 4 KiB sectors cross a compaction.
  const sets: Array<[FlashGeometry, number]> = [
    [{ sectorSize: 512, sectors: 4 }, 24],
    [{ sectorSize: 512, sectors: 2 }, 24],
    [{ sectorSize: 4096, sectors: 4 }, 40],
  ];
  const twoCutRotations = (g: FlashGeometry, rotations: number) => (g.sectorSize === 512 ? 16 : rotations);
  for (const [geometry, rotations] of sets) {
    const t = Date.now();
    const report = exploreCuts({ geometry, rotations, bitPatterns: 'all', seed: 20240601 });
    cutPoints += report.cutPoints;
    console.log(`exhaustive, ${label(geometry)}, ${rotations} rotations, all bit patterns: ${JSON.stringify(report)} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
  }
  for (const [geometry, allRotations] of sets) {
    const rotations = twoCutRotations(geometry, allRotations);
    const t = Date.now();
    const report = exploreRetryCuts({ geometry, rotations, bitPatterns: 'all', seed: 7 });
    cutPoints += report.cutPoints;
    console.log(`two cuts, ${label(geometry)}, ${rotations} rotations, all bit patterns: ${JSON.stringify(report)} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
  }
  const migrations: Array<[FlashGeometry, number, 'all' | number, number]> = [
    [{ sectorSize: 512, sectors: 4 }, 8, 'all', 1],
    [{ sectorSize: 4096, sectors: 4 }, 60, 8, 20],
  ];
  for (const [geometry, rotations, bitPatterns, startEvery] of migrations) {
    const t = Date.now();
    const report = exploreMigrationCuts({ geometry, rotations, bitPatterns, seed: 13, startEvery });
    cutPoints += report.cutPoints + report.retryCutPoints;
    console.log(`migration v1 -> v2, ${label(geometry)}, ${rotations} v1 rotations, ${bitPatterns} bit patterns: ${JSON.stringify(report)} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
  }
}

console.log(`keystore soak passed: ${cutPoints} cut points in ${((Date.now() - started) / 1000).toFixed(0)} s`);
