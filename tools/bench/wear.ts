/**
 * Wear benchmark for the keystore journal (docs/KEYSTORE.md §8).
 * For 8, 16 and 32 KiB partitions (4 KiB sectors) it runs rotations
 * (storeFuture + promote) on the NOR model and prints programs and erases per
 * rotation, the most-erased sector's erases per rotation, and the projected
 * years until that sector reaches its rated erase cycles at one rotation per
 * minute. Format v2 in the dh mode (every future with its two shares; the
 * classic mode writes records of the same size). For comparison, in the
 * same run: format v1 (84-byte records, the firmware before format v2,
 * tools/testing/keystore-v1) on 16 KiB, and a naive design with two fixed
 * slots (one sector each) that erases and rewrites a slot on every change.
 *
 * Exported `run()` is called by tools/bench/index.ts (npm run bench);
 * `tsx tools/bench/wear.ts` runs it alone.
 */
import { NorFlash } from '../../modules/flash/nor-flash';
import { SeededRandom } from '../testing/cut-injection';
import { Keystore } from '../../modules/keystore/keystore';
import { KEY_BYTES } from '../../modules/platform/keys';
import type { KeyStorage } from '../../modules/keystore/key-storage';
import { Keystore as KeystoreV1 } from '../testing/keystore-v1/keystore';

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

/** The journal (format v2, dh rotations: every future with its shares; `format: 1`: the v1 firmware's) on `sectors` x 4 KiB. */
export function measureJournal(sectors: number, rotations = ROTATIONS, format: 1 | 2 = 2): WearFigures {
  const random = new SeededRandom(sectors);
  const flash = new NorFlash({ sectorSize: SECTOR_BYTES, sectors });
  const keystore: KeyStorage = format === 2 ? new Keystore(flash) : new KeystoreV1(flash);
  keystore.format(random.bytes(8), { id: 1, key: random.bytes(KEY_BYTES) }, format === 2 ? 'dh' : 'classic');
  const programsBefore = flash.programs;
  const erasesBefore = flash.sectorErases.slice();
  for (let id = 2; id < rotations + 2; id++) {
    if (format === 2) keystore.storeFuture(id, random.bytes(KEY_BYTES), { hub: random.bytes(32), device: random.bytes(32) });
    else keystore.storeFuture(id, random.bytes(KEY_BYTES));
    keystore.promote();
  }
  return figures(`journal${format === 1 ? ' v1' : ''}, ${(sectors * SECTOR_BYTES) / 1024} KiB`, flash, programsBefore, erasesBefore, rotations);
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
  return [measureJournal(2), measureJournal(4), measureJournal(8), measureJournal(4, ROTATIONS, 1), measureNaive()];
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
  const rows = wearTable();
  for (const row of rows) console.log(format(row));
  const [v2, v1] = [rows[1] as WearFigures, rows[3] as WearFigures];
  console.log(`format v2 / v1 lifetime on 16 KiB: ${(v2.years / v1.years).toFixed(3)} (records of 144 vs 84 bytes: 27 vs 47 futures per sector)`);
}

// Run alone: `tsx tools/bench/wear.ts` (importing this module has no side effects).
if (/[\\/]tools[\\/]bench[\\/]wear\.ts$/.test(process.argv[1] ?? '')) void run();
