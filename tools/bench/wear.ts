/**
 * Wear benchmark for the keystore journal (docs/KEYSTORE.md §8).
 * For 8, 16 and 32 KiB partitions (4 KiB sectors) it runs rotations
 * (storeFuture + promote) on the NOR model and prints programs and erases per
 * rotation, the most-erased sector's erases per rotation, and the projected
 * years until that sector reaches its rated erase cycles at one rotation per
 * minute. For comparison: a naive design with two fixed slots (one sector
 * each) that erases and rewrites a slot on every change.
 *
 * Exported `run()` is called by tools/bench/index.ts (npm run bench);
 * `tsx tools/bench/wear.ts` runs it alone.
 */
import { NorFlash } from '../../modules/flash/nor-flash';
import { SeededRandom } from '../testing/cut-injection';
import { Keystore } from '../../modules/keystore/keystore';
import { KEY_BYTES } from '../../modules/platform/keys';

export const RATED_ERASE_CYCLES = 100_000;
const MINUTES_PER_YEAR = 365.25 * 24 * 60;
const SECTOR_BYTES = 4096;
const ROTATIONS = 20_000;

export interface WearFigures {
  readonly design: string;
  readonly programsPerRotation: number;
  readonly erasesPerRotation: number;
  readonly maxSectorErasesPerRotation: number;
  /** At one rotation per minute, until the most-erased sector reaches RATED_ERASE_CYCLES. */
  readonly years: number;
}

function figures(design: string, flash: NorFlash, programsBefore: number, erasesBefore: Uint32Array, rotations: number): WearFigures {
  let erases = 0;
  let maxSector = 0;
  flash.sectorErases.forEach((count, sector) => {
    const delta = count - (erasesBefore[sector] as number);
    erases += delta;
    maxSector = Math.max(maxSector, delta);
  });
  const maxPerRotation = maxSector / rotations;
  return {
    design,
    programsPerRotation: (flash.programs - programsBefore) / rotations,
    erasesPerRotation: erases / rotations,
    maxSectorErasesPerRotation: maxPerRotation,
    years: RATED_ERASE_CYCLES / maxPerRotation / MINUTES_PER_YEAR,
  };
}

/** The journal on a partition of `sectors` x 4 KiB. */
export function measureJournal(sectors: number, rotations = ROTATIONS): WearFigures {
  const random = new SeededRandom(sectors);
  const flash = new NorFlash({ sectorSize: SECTOR_BYTES, sectors });
  const keystore = new Keystore(flash);
  keystore.format(random.bytes(8), { id: 1, key: random.bytes(KEY_BYTES) }, 'classic');
  const programsBefore = flash.programs;
  const erasesBefore = flash.sectorErases.slice();
  for (let id = 2; id < rotations + 2; id++) {
    keystore.storeFuture(id, random.bytes(KEY_BYTES));
    keystore.promote();
  }
  return figures(`journal, ${(sectors * SECTOR_BYTES) / 1024} KiB`, flash, programsBefore, erasesBefore, rotations);
}

/**
 * The naive design: sector 0 holds the active key, sector 1 the future key;
 * every change erases the slot's sector and programs the new record.
 * (It is not even power-safe: a cut after the erase loses that slot.)
 */
export function measureNaive(rotations = ROTATIONS): WearFigures {
  const random = new SeededRandom(2);
  const flash = new NorFlash({ sectorSize: SECTOR_BYTES, sectors: 2 });
  const writeSlot = (sector: number, id: number, key: Uint8Array): void => {
    const record = new Uint8Array(4 + KEY_BYTES);
    new DataView(record.buffer).setUint32(0, id, true);
    record.set(key, 4);
    flash.erase(sector);
    flash.program(sector * SECTOR_BYTES, record);
  };
  writeSlot(0, 1, random.bytes(KEY_BYTES));
  const programsBefore = flash.programs;
  const erasesBefore = flash.sectorErases.slice();
  for (let id = 2; id < rotations + 2; id++) {
    const key = random.bytes(KEY_BYTES);
    writeSlot(1, id, key); // store future
    writeSlot(0, id, key); // promote: rewrite the active slot
  }
  return figures('naive two slots, 8 KiB', flash, programsBefore, erasesBefore, rotations);
}

export function wearTable(): WearFigures[] {
  return [measureJournal(2), measureJournal(4), measureJournal(8), measureNaive()];
}

function format(f: WearFigures): string {
  const years = f.years >= 1 ? `${f.years.toFixed(1)} years` : `${(f.years * 365.25).toFixed(0)} days`;
  return [
    f.design.padEnd(26),
    f.programsPerRotation.toFixed(3).padStart(8),
    f.erasesPerRotation.toFixed(4).padStart(8),
    f.maxSectorErasesPerRotation.toFixed(5).padStart(10),
    years.padStart(12),
  ].join('  ');
}

export async function run(): Promise<void> {
  console.log(`keystore wear: ${ROTATIONS} rotations (storeFuture + promote), 4 KiB sectors, ${RATED_ERASE_CYCLES} erase cycles, 1 rotation/min`);
  console.log(['design'.padEnd(26), 'prog/rot'.padStart(8), 'erase/rot'.padStart(8), 'max sector'.padStart(10), 'lifetime'.padStart(12)].join('  '));
  for (const row of wearTable()) console.log(format(row));
}

// Run alone: `tsx tools/bench/wear.ts` (importing this module has no side effects).
if (/[\\/]tools[\\/]bench[\\/]wear\.ts$/.test(process.argv[1] ?? '')) void run();
