/**
 * Format v1 -> v2 (docs/KEYSTORE.md §11). Images written by the firmware
 * before format v2 (the frozen tools/testing/keystore-v1: fresh, rotated,
 * compacted, scrubbed, with torn operations and interrupted scrubs) mount on
 * the current code as they are (mode classic) and are migrated in place by
 * the first write, which `scrub()` at boot is:
 * - cut at every byte of every program and every erase of the migration
 *   (and of a storeFuture / promote that migrates first), the remount is the
 *   state before or after, the image v1 or v2, and the v1 firmware mounts
 *   only the state before the migration or nothing; two cuts (a migration cut
 *   before its commit, then another key's migration torn at its erase);
 * - after it, no v1 key is left (retired keys stay erased) and the v1
 *   firmware refuses the image; a v2 image, or one of a later version, is
 *   refused by the v1 firmware / this code with a reason, never read as keys.
 */
import { randomBytes } from 'node:crypto';
import { nodePrimitives } from '../hosts/node/crypto';
import { NorFlash } from '../modules/flash/nor-flash';
import { crc32 } from '../modules/keystore/crc32';
import { KeyWrapper } from '../modules/keystore/key-wrap';
import type { KeyStorage } from '../modules/keystore/key-storage';
import { Keystore } from '../modules/keystore/keystore';
import { WrappedKeystore } from '../modules/keystore/wrapped-keystore';
import type { Flash } from '../modules/platform/flash';
import type { DeviceKeys, KeyShares, KeySlot, RekeyMode } from '../modules/platform/keys';
import { exploreMigrationCuts } from '../tools/testing/cut-harness';
import { SeededRandom } from '../tools/testing/cut-injection';
import { Keystore as KeystoreV1 } from '../tools/testing/keystore-v1/keystore';

const totals = { cutPoints: 0 };
afterAll(() => console.log(`keystore migration tests: ${totals.cutPoints} cut points tried in total`));

const holds = (image: Uint8Array, bytes: Uint8Array) => Buffer.from(image).indexOf(Buffer.from(bytes)) >= 0;

/** A v1 image after `rotations` rotations of the v1 firmware, the last future left pending if `pending`; every key it wrote. */
function v1Image(geometry: { sectorSize: number; sectors: number }, rotations: number, pending: boolean, seed = 1) {
  const random = new SeededRandom(seed);
  const flash = new NorFlash(geometry);
  const v1 = new KeystoreV1(flash);
  const deviceId = random.bytes(8);
  const written: KeySlot[] = [{ id: 1, key: random.bytes(64) }];
  v1.format(deviceId, written[0] as KeySlot, 'classic');
  for (let r = 0; r < rotations; r++) {
    const next = { id: r + 2, key: random.bytes(64) };
    written.push(next);
    v1.storeFuture(next.id, next.key);
    if (r < rotations - 1 || !pending) v1.promote(next.id);
  }
  const mounted = v1.mount();
  if (!mounted.provisioned) throw new Error('v1 image does not mount on v1');
  return { flash, deviceId, written, keys: mounted.keys };
}

describe('a v1 image on the current code', () => {
  test.each([
    ['fresh', 0, false],
    ['rotated, scrubbed, a compaction behind it', 8, false],
    ['with a pending future', 9, true],
    ['after the ring wrapped', 30, true],
  ])('%s: mounts as it is (mode classic, format 1, mount writes nothing); scrub() migrates it; v1 keys are gone; the v1 firmware refuses it', (_name, rotations, pending) => {
    const { flash, deviceId, written, keys } = v1Image({ sectorSize: 512, sectors: 4 }, rotations, pending);
    const keystore = new Keystore(flash);
    const operations = flash.operations;
    expect(keystore.mount()).toEqual({ provisioned: true, deviceId, keys: { ...keys, mode: 'classic' } });
    expect(keystore.formatVersion).toBe(1);
    expect(flash.operations).toBe(operations);
    keystore.scrub();
    expect(keystore.formatVersion).toBe(2);
    expect(keystore.keys).toEqual(keys);
    const migrated = new Keystore(flash);
    expect(migrated.mount()).toEqual({ provisioned: true, deviceId, keys });
    expect(migrated.formatVersion).toBe(2);
    // Only the live keys are left, once each (the v2 records); the retired ones stay erased.
    const image = flash.image();
    for (const slot of written) {
      const live = slot.id === keys.active.id || slot.id === keys.future?.id;
      expect({ id: slot.id, held: holds(image, slot.key.subarray(0, 16)) }).toEqual({ id: slot.id, held: live });
    }
    expect(new KeystoreV1(new NorFlash({ sectorSize: 512, sectors: 4, image })).mount()).toMatchObject({ provisioned: false });
    // A second scrub finds nothing to do.
    const again = flash.operations;
    migrated.scrub();
    expect(flash.operations).toBe(again);
    // And the journal carries on in v2: a dh rotation.
    if (keys.future !== undefined) migrated.promote(keys.future.id);
    const id = migrated.keys.active.id + 1;
    const shares: KeyShares = { hub: new Uint8Array(32).fill(1), device: new Uint8Array(32).fill(2) };
    migrated.storeFuture(id, new Uint8Array(64).fill(3), shares);
    migrated.promote(id);
    expect(new Keystore(flash).mount()).toMatchObject({ provisioned: true, keys: { mode: 'dh', active: { id } } });
  });

  test('a refusal on a v1 image writes nothing (no migration); an idempotent repeat neither', () => {
    const { flash, keys } = v1Image({ sectorSize: 512, sectors: 4 }, 3, true);
    const keystore = new Keystore(flash);
    keystore.mount();
    const operations = flash.operations;
    expect(() => keystore.storeFuture(1, new Uint8Array(64))).toThrow(expect.objectContaining({ code: 'LOCAL_BUSY' }));
    expect(() => keystore.promote(99)).toThrow(expect.objectContaining({ code: 'LOCAL_BAD_ARGUMENT' }));
    const future = keys.future as KeySlot;
    keystore.storeFuture(future.id, future.key); // the stored future again: a no-op
    expect(flash.operations).toBe(operations);
    expect(keystore.formatVersion).toBe(1);
  });

  test('format over a v1 image writes a v2 journal and erases the v1 one', () => {
    const { flash, written } = v1Image({ sectorSize: 512, sectors: 4 }, 6, true);
    const keystore = new Keystore(flash);
    keystore.format(Uint8Array.of(7, 7, 7, 7, 7, 7, 7, 7), { id: 1, key: new Uint8Array(64).fill(0x77) }, 'dh');
    expect(keystore.formatVersion).toBe(2);
    for (const slot of written) expect(holds(flash.image(), slot.key.subarray(0, 16))).toBe(false);
    expect(new Keystore(flash).mount()).toMatchObject({ provisioned: true, keys: { mode: 'dh', active: { id: 1 } } });
  });
});

describe('compatibility: what each firmware does with the other format', () => {
  test('a v2 image on the v1 firmware: refused at mount (foreign), never read as keys; also after rotations and a wrap of the ring', () => {
    for (const rotations of [0, 1, 5, 40]) {
      const flash = new NorFlash({ sectorSize: 512, sectors: 4 });
      const keystore = new Keystore(flash);
      keystore.format(new Uint8Array(8).fill(1), { id: 1, key: new Uint8Array(64).fill(1) }, 'classic');
      for (let id = 2; id < rotations + 2; id++) {
        keystore.storeFuture(id, new Uint8Array(64).fill(id), id % 2 ? { hub: new Uint8Array(32), device: new Uint8Array(32).fill(9) } : undefined);
        keystore.promote(id);
      }
      expect(new KeystoreV1(flash).mount()).toMatchObject({ provisioned: false, reason: 'foreign' });
    }
  });

  test('an image of a later format version is refused with reason "version"', () => {
    const flash = new NorFlash({ sectorSize: 512, sectors: 4 });
    new Keystore(flash).format(new Uint8Array(8).fill(1), { id: 1, key: new Uint8Array(64).fill(1) }, 'dh');
    const image = flash.image();
    image[4] = 3; // version 3, with a matching header CRC
    new DataView(image.buffer).setUint32(24, crc32(image, 0, 24), true);
    expect(new Keystore(new NorFlash({ sectorSize: 512, sectors: 4, image })).mount()).toMatchObject({ provisioned: false, reason: 'version' });
  });
});

describe('the migration under power cuts', () => {
  test('4 x 512 B: every v1 state over 8 rotations (some torn), scrub() and the next operation cut at every byte (2 bit patterns), two cuts', () => {
    const report = exploreMigrationCuts({ geometry: { sectorSize: 512, sectors: 4 }, rotations: 8, bitPatterns: 2, seed: 13, opEvery: 2 });
    console.log(`migration, 4 x 512 B: ${JSON.stringify(report)}`);
    totals.cutPoints += report.cutPoints + report.retryCutPoints;
    expect(report.startImages).toBe(17);
    expect(report.tornStartImages).toBeGreaterThan(0);
    expect(report.mountedBefore + report.mountedAfter).toBe(report.cutPoints);
    expect(report.stillV1).toBeGreaterThan(1000);
    expect(report.migrated).toBeGreaterThan(1000);
    expect(report.oldFirmwareMounted).toBeGreaterThan(0); // the window before the cleanup, where v1 still shows the state before
    expect(report.retryCutPoints).toBeGreaterThan(100);
  });

  test('4 x 4096 B (the field geometry): v1 images across a v1 compaction, every byte (1 bit pattern)', () => {
    const report = exploreMigrationCuts({ geometry: { sectorSize: 4096, sectors: 4 }, rotations: 49, bitPatterns: 1, seed: 14, startEvery: 98, opEvery: 1 });
    console.log(`migration, 4 x 4096 B: ${JSON.stringify(report)}`);
    totals.cutPoints += report.cutPoints + report.retryCutPoints;
    expect(report.startImages).toBe(2); // fresh, and after 49 rotations: a v1 compaction behind it
    expect(report.mountedBefore + report.mountedAfter).toBe(report.cutPoints);
    expect(report.migrated).toBeGreaterThan(1000);
  });

  test('wrapped keys: a wrapped v1 image migrates under cuts too (the KWK is not needed to move wrapped bytes)', () => {
    const kwk = new Uint8Array(randomBytes(64));
    const wrapper = () => new KeyWrapper(nodePrimitives, kwk);
    const report = exploreMigrationCuts({
      geometry: { sectorSize: 512, sectors: 4 },
      rotations: 2,
      bitPatterns: 1,
      seed: 15,
      open: (flash) => new WrappedKeystore(flash, wrapper()),
      openV1: (flash) => new WrappedV1(flash, wrapper()),
    });
    console.log(`migration, wrapped: ${JSON.stringify(report)}`);
    totals.cutPoints += report.cutPoints + report.retryCutPoints;
    expect(report.mountedBefore + report.mountedAfter).toBe(report.cutPoints);
    expect(report.migrated).toBeGreaterThan(200);
  });
});

/** The v1 firmware's wrapped keystore: the frozen v1 journal on keys wrapped as today (key-wrap.ts did not change). */
class WrappedV1 implements KeyStorage {
  readonly #journal: KeystoreV1;
  readonly #wrapper: KeyWrapper;
  constructor(flash: Flash, wrapper: KeyWrapper) {
    this.#journal = new KeystoreV1(flash);
    this.#wrapper = wrapper;
  }
  mount() {
    const result = this.#journal.mount();
    return result.provisioned ? { ...result, keys: this.#unwrap(result.deviceId, result.keys) } : result;
  }
  get keys(): DeviceKeys {
    return this.#unwrap(this.#journal.deviceId, this.#journal.keys);
  }
  get deviceId(): Uint8Array {
    return this.#journal.deviceId;
  }
  format(deviceId: Uint8Array, initial: KeySlot, mode: RekeyMode): void {
    this.#journal.format(deviceId, { id: initial.id, key: this.#wrapper.wrap(deviceId, initial.id, initial.key) }, mode);
  }
  storeFuture(id: number, key: Uint8Array): void {
    this.#journal.storeFuture(id, this.#wrapper.wrap(this.#journal.deviceId, id, key));
  }
  promote(expectedId?: number): KeySlot {
    const slot = this.#journal.promote(expectedId);
    return { id: slot.id, key: this.#wrapper.unwrap(this.#journal.deviceId, slot.id, slot.key) };
  }
  scrub(): void {
    this.#journal.scrub();
  }
  #unwrap(deviceId: Uint8Array, keys: DeviceKeys): DeviceKeys {
    const unwrap = (slot: KeySlot) => ({ id: slot.id, key: this.#wrapper.unwrap(deviceId, slot.id, slot.key) });
    return keys.future === undefined ? { mode: keys.mode, active: unwrap(keys.active) } : { mode: keys.mode, active: unwrap(keys.active), future: unwrap(keys.future) };
  }
}
