// Mount on garbage: never throws, never returns a key that was not written.
// Random bytes, 0x00, 0xFF, truncated images, another geometry, another
// layout (an ESP-IDF NVS-like page), forged headers, and random corruption
// of real journals.
import fc from 'fast-check';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { NorFlash } from '../modules/flash/nor-flash';
import { SeededRandom } from '../tools/testing/cut-injection';
import { Keystore } from '../modules/keystore/keystore';
import type { MountResult } from '../modules/keystore/keystore';
import type { FutureSlot, KeySlot } from '../modules/platform/keys';

const geometry = { sectorSize: 512, sectors: 4 };

function mountImage(image: Uint8Array, g = geometry): MountResult {
  return new Keystore(new NorFlash({ ...g, image })).mount();
}

/** A journal after `rotations` rotations (every other future dh-derived, with shares), with every future ever written. */
function journal(rotations: number, seed: number, g = geometry) {
  const random = new SeededRandom(seed);
  const flash = new NorFlash(g);
  const keystore = new Keystore(flash);
  const written: FutureSlot[] = [{ id: 1, key: random.bytes(64) }];
  keystore.format(random.bytes(8), written[0] as KeySlot, 'classic');
  for (let id = 2; id < rotations + 2; id++) {
    const slot: FutureSlot = id % 2 === 0 ? { id, key: random.bytes(64), shares: { hub: random.bytes(32), device: random.bytes(32) } } : { id, key: random.bytes(64) };
    written.push(slot);
    keystore.storeFuture(slot.id, slot.key, slot.shares);
    if (id < rotations + 1) keystore.promote(); // leave the last one pending
  }
  return { image: flash.image(), keys: keystore.keys, written, deviceId: keystore.deviceId };
}

const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

/** Written with that id, key and (for a future) those shares: a dh key's shares are part of what was written. */
function wasWritten(slot: FutureSlot, written: readonly FutureSlot[], asFuture = false): boolean {
  return written.some((w) => {
    if (w.id !== slot.id || !same(w.key, slot.key)) return false;
    if (!asFuture) return true;
    if (w.shares === undefined || slot.shares === undefined) return w.shares === slot.shares;
    return same(w.shares.hub, slot.shares.hub) && same(w.shares.device, slot.shares.device);
  });
}

test('0xFF, 0x00 and random bytes mount as unprovisioned with a reason', () => {
  expect(mountImage(new Uint8Array(2048).fill(0xff))).toMatchObject({ provisioned: false, reason: 'erased' });
  expect(mountImage(new Uint8Array(2048))).toMatchObject({ provisioned: false, reason: 'foreign' });
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 2048, maxLength: 2048 }), (image) => {
      expect(mountImage(image)).toMatchObject({ provisioned: false, reason: 'foreign' });
    }),
    { numRuns: 300 },
  );
  const big = new SeededRandom(3).bytes(16384);
  expect(mountImage(big, { sectorSize: 4096, sectors: 4 })).toMatchObject({ provisioned: false, reason: 'foreign' });
});

test('another layout: an NVS-like page (state, sequence, CRC, 32-byte entries) is foreign', () => {
  const page = new Uint8Array(2048).fill(0xff);
  const view = new DataView(page.buffer);
  view.setUint32(0, 0xfffffffe, true); // "active" page state
  view.setUint32(4, 7, true);
  page[8] = 0xfe;
  view.setUint32(28, zlibCrc32(page.subarray(4, 28)), true);
  page.set(new TextEncoder().encode('\x01\x01\x01\xffkeys\0\0\0\0\0\0\0\0\0\0\0'), 64);
  page.set(new SeededRandom(4).bytes(64), 96);
  expect(mountImage(page)).toMatchObject({ provisioned: false, reason: 'foreign' });
});

test('a journal written for another geometry is refused with reason "geometry"', () => {
  const { image } = journal(3, 1, { sectorSize: 512, sectors: 4 });
  // The same bytes seen as 2 sectors of 1024, or as the first 2 of 4 sectors of 512.
  expect(mountImage(image, { sectorSize: 1024, sectors: 2 })).toMatchObject({ provisioned: false, reason: 'geometry' });
  expect(mountImage(image.slice(0, 1024), { sectorSize: 512, sectors: 2 })).toMatchObject({ provisioned: false, reason: 'geometry' });
});

test('forged headers: valid magic with a bad CRC is foreign; a valid header with junk records is corrupt', () => {
  const { image } = journal(0, 2);
  const badCrc = image.slice();
  badCrc[25] = (badCrc[25] as number) ^ 1;
  expect(mountImage(badCrc)).toMatchObject({ provisioned: false, reason: 'foreign' });
  const junk = image.slice();
  junk.set(new SeededRandom(5).bytes(84), 32);
  expect(mountImage(junk)).toMatchObject({ provisioned: false, reason: 'corrupt' });
  const uncommitted = image.slice();
  uncommitted.fill(0xff, 28, 32); // as if the format was cut before its commit word
  expect(mountImage(uncommitted)).toMatchObject({ provisioned: false, reason: 'incomplete' });
  const zeroCommit = uncommitted.slice();
  zeroCommit.fill(0, 28, 32); // torn-erase debris must not commit a sector
  expect(mountImage(zeroCommit)).toMatchObject({ provisioned: false, reason: 'incomplete' });
});

test('a truncated provisioning image mounts to its key or not at all, whatever fills the rest', () => {
  const { image, keys } = journal(0, 6);
  for (let length = 0; length <= image.length; length += 4) {
    for (const fill of [0xff, 0x00, -1]) {
      const partial = fill === -1 ? new SeededRandom(length).bytes(image.length) : new Uint8Array(image.length).fill(fill);
      partial.set(image.subarray(0, length));
      const result = mountImage(partial);
      if (result.provisioned) expect(result.keys).toEqual(keys);
      else expect(length).toBeLessThan(32 + 144); // the snapshot is complete at 176 bytes
    }
  }
});

test('random corruption of a rotated journal: never throws, every key returned was written', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 40 }),
      fc.array(fc.record({ at: fc.nat(2047), value: fc.nat(255), mode: fc.constantFrom('set', 'flip', 'erase-run') }), { minLength: 1, maxLength: 8 }),
      (rotations, damage) => {
        const { image, written, deviceId } = journal(rotations, rotations);
        for (const d of damage) {
          if (d.mode === 'set') image[d.at] = d.value;
          else if (d.mode === 'flip') image[d.at] = (image[d.at] as number) ^ (1 << (d.value & 7));
          else image.fill(0xff, d.at, d.at + d.value);
        }
        const result = mountImage(image);
        if (!result.provisioned) return;
        expect(result.deviceId).toEqual(deviceId);
        expect(wasWritten(result.keys.active, written)).toBe(true);
        if (result.keys.future !== undefined) {
          expect(wasWritten(result.keys.future, written, true)).toBe(true);
          expect(result.keys.future.id).toBeGreaterThan(result.keys.active.id);
        }
        // The mode is never one no record gave: dh only once a dh-derived key is active.
        const dhActive = written.some((w) => w.shares !== undefined && w.id <= result.keys.active.id);
        if (result.keys.mode === 'dh') expect(dhActive).toBe(true);
      },
    ),
    { numRuns: 400 },
  );
});

test('a torn-looking slot in the middle is skipped, and the journal appends after it', () => {
  const wide = { sectorSize: 1024, sectors: 4 }; // 6 slots of 144 bytes
  const { image, keys } = journal(2, 7, wide); // slots: A(1), F(2) promoted, F(3) pending
  const flash = new NorFlash({ ...wide, image });
  const keystore = new Keystore(flash);
  keystore.mount();
  keystore.promote();
  flash.program(32 + 3 * 144, Uint8Array.of(0x46, 0x44)); // a half-written record in slot 3
  const again = new Keystore(flash);
  expect(again.mount()).toMatchObject({ provisioned: true, keys: { active: { id: 3 } } });
  again.storeFuture(4, new Uint8Array(64).fill(4));
  expect(new Keystore(flash).mount()).toMatchObject({ keys: { active: { id: 3 }, future: { id: 4 } } });
  expect(flash.read(32 + 4 * 144, 1)[0]).toBe(0x46);
  expect(keys.future?.id).toBe(3);
});

test("a bit flipped anywhere in a pending future's record, shares included, drops that future: never a share that was not written", () => {
  const { image, keys, written } = journal(3, 9); // slots: A(1), F(2) promoted, F(3) ... ; id 4 (dh, with shares) pending
  const future = keys.future;
  expect(future?.shares).toBeDefined();
  const mounted = mountImage(image);
  if (!mounted.provisioned) throw new Error('journal does not mount');
  const at = findRecord(image, future as FutureSlot);
  let dropped = 0;
  for (let byte = 0; byte < 140; byte++) {
    for (const bit of [0, 7]) {
      const damaged = image.slice();
      damaged[at + byte] = (damaged[at + byte] as number) ^ (1 << bit);
      const result = mountImage(damaged);
      if (!result.provisioned) continue;
      if (result.keys.future !== undefined) expect(wasWritten(result.keys.future, written, true)).toBe(true);
      else dropped++;
    }
  }
  expect(dropped).toBe(280); // every flip invalidates the record (its CRC covers bytes 0..135, the CRC itself is 136..139)
});

/** Offset of the record holding `slot` (its id and key) in a v2 image. */
function findRecord(image: Uint8Array, slot: FutureSlot): number {
  for (let at = 0; at + 144 <= image.length; at += 4) {
    if (new DataView(image.buffer, image.byteOffset + at + 4, 4).getUint32(0, true) === slot.id && same(image.subarray(at + 8, at + 72), slot.key)) return at;
  }
  throw new Error(`record ${slot.id} not found`);
}
