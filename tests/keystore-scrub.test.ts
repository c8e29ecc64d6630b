/**
 * Finding 8, device side (issue 12): a retired key is gone from flash once
 * its successor's promotion is done — in the plain journal (its raw bytes)
 * and in the wrapped keystore (its wrapped bytes, and the raw bytes never
 * were there) — in the NOR model's image and in the file image the Node
 * host writes. Before, keystore.bin kept retired keys until the journal
 * ring wrapped (docs/KEYSTORE.md §4). The scrub programs them to 0x00 after
 * the promotion's commit point (docs/KEYSTORE.md §4.1):
 *
 * - after every complete promotion, over rotations that cross compactions,
 *   on three geometries, plain and wrapped: no retired key, nor any 16-byte
 *   piece of one, in the image (and the live keys' stored forms are there:
 *   the scan is not blind);
 * - a power cut at every byte of every program of every promotion (every
 *   in-flight bit pattern on 4 x 512): the mount is before or after (the
 *   exhaustive tests in keystore-power-cut check that too), and the retired
 *   key is gone once the promotion is repeated (idempotently) or `scrub()`
 *   runs, or the next rotation is done.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodePrimitives } from '../hosts/node/crypto';
import { FileFlash } from '../hosts/node/flash-file';
import { enumerateCuts, SeededRandom, tornErasePatterns } from '../tools/testing/cut-injection';
import { NorFlash, PowerCut, type FlashOperation } from '../modules/flash/nor-flash';
import { KeyWrapper } from '../modules/keystore/key-wrap';
import { Keystore } from '../modules/keystore/keystore';
import { WrappedKeystore, type KeyStorage } from '../modules/keystore/wrapped-keystore';
import type { Flash } from '../modules/platform/flash';
import type { KeySlot } from '../modules/platform/keys';

const kwk = randomBytes(64);
/** Promotions in the exhaustive cut run: on 4 x 512 B (4 'F' slots per sector) 6 cross a compaction and the first promotion after it, which scrubs the old sector. */
const PROMOTIONS = 6;
type Open = (flash: Flash) => KeyStorage & { scrub(): void };
type StoredForm = (deviceId: Uint8Array, slot: KeySlot) => Uint8Array;
/** [name, open, the form a key is stored in, bit patterns per byte in the exhaustive cut run]. */
const variants: [string, Open, StoredForm, 'all' | number][] = [
  ['plain journal', (flash) => new Keystore(flash), (_d, slot) => slot.key, 'all'],
  ['wrapped keystore', (flash) => new WrappedKeystore(flash, new KeyWrapper(nodePrimitives, kwk)), (d, slot) => new KeyWrapper(nodePrimitives, kwk).wrap(d, slot.id, slot.key), 16],
];

/** Pieces of a stored form that must not be on flash: the whole 64 bytes and each 16-byte quarter. */
function pieces(form: Uint8Array): Buffer[] {
  const out = [Buffer.from(form)];
  for (let at = 0; at < form.length; at += 16) out.push(Buffer.from(form.subarray(at, at + 16)));
  return out;
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a).equals(Buffer.from(b));
}

function holds(image: Uint8Array, form: Uint8Array): boolean {
  const bytes = Buffer.from(image);
  return pieces(form).some((piece) => bytes.indexOf(piece) >= 0);
}

describe.each(variants)('%s', (_name, open, storedForm, bitPatterns) => {
  test.each([
    ['4 x 512 B', { sectorSize: 512, sectors: 4 }],
    ['2 x 512 B', { sectorSize: 512, sectors: 2 }],
    ['4 x 4096 B', { sectorSize: 4096, sectors: 4 }],
  ])('after every promotion no retired key is on flash in any form: %s', (_g, geometry) => {
    const random = new SeededRandom(5);
    const flash = new NorFlash(geometry);
    const keystore = open(flash);
    const deviceId = random.bytes(8);
    let active: KeySlot = { id: 1, key: random.bytes(64) };
    keystore.format(deviceId, active, 'classic');
    const retired: KeySlot[] = [];
    const rotations = geometry.sectorSize === 4096 ? 100 : 40;
    for (let r = 0; r < rotations; r++) {
      const next = { id: active.id + 1, key: random.bytes(64) };
      keystore.storeFuture(next.id, next.key);
      keystore.promote(next.id);
      retired.push(active);
      active = next;
      const image = flash.image();
      const left = retired.filter((slot) => holds(image, storedForm(deviceId, slot)) || holds(image, slot.key));
      expect({ rotation: r, left: left.map((s) => s.id) }).toEqual({ rotation: r, left: [] });
      expect(holds(image, storedForm(deviceId, active))).toBe(true);
      // The journal still mounts to the right state from this image.
      expect(open(new NorFlash({ ...geometry, image })).mount()).toMatchObject({ provisioned: true, keys: { active } });
    }
  });

  test(`a power cut anywhere in a promotion (every program, every byte, ${bitPatterns === 'all' ? 'all' : bitPatterns} bit patterns): before or after, and the retired key is gone once the promotion is repeated, scrub() runs, or the next rotation is done`, () => {
    const geometry = { sectorSize: 512, sectors: 4 };
    const random = new SeededRandom(11);
    const enumeration = { bitPatterns, erasePatterns: tornErasePatterns(12), random };
    const flash = new NorFlash(geometry);
    const keystore = open(flash);
    const deviceId = random.bytes(8);
    let active: KeySlot = { id: 1, key: random.bytes(64) };
    keystore.format(deviceId, active, 'classic');
    let cuts = 0;
    let duringScrub = 0;
    for (let r = 0; r < PROMOTIONS; r++) {
      const next = { id: active.id + 1, key: random.bytes(64) };
      keystore.storeFuture(next.id, next.key);
      const before = flash.image();
      const trace: FlashOperation[] = [];
      const traced = new NorFlash({ ...geometry, image: before });
      const tracer = open(traced);
      tracer.mount();
      traced.observer = (op) => trace.push(op);
      tracer.promote(next.id);
      expect(trace.length).toBeGreaterThanOrEqual(2); // the commit point, then the scrub
      for (const cut of enumerateCuts(trace, enumeration)) {
        const torn = new NorFlash({ ...geometry, image: before });
        const victim = open(torn);
        victim.mount();
        torn.armCut(cut.plan);
        expect(() => victim.promote(next.id)).toThrow(PowerCut);
        torn.restorePower();
        const resumed = open(torn);
        const mounted = resumed.mount();
        if (!mounted.provisioned) throw new Error(`${cut.label}: unprovisioned`);
        const isAfter = mounted.keys.active.id === next.id;
        const keys = mounted.keys;
        const ok = isAfter
          ? keys.future === undefined && same(keys.active.key, next.key)
          : keys.active.id === active.id && same(keys.active.key, active.key) && keys.future?.id === next.id && same(keys.future.key, next.key);
        if (!ok) throw new Error(`promotion ${r}, ${cut.label}: mounted neither before nor after`);
        if (isAfter && cut.plan.atOperation > 0) duringScrub++;
        // Three ways to finish, chosen in turn: repeat the promotion, scrub(), or rotate once more.
        const way = cuts % 3;
        let retiredNow = [active];
        if (way === 0 || !isAfter) resumed.promote(next.id);
        else if (way === 1) resumed.scrub();
        else {
          const third = { id: next.id + 1, key: random.bytes(64) };
          resumed.storeFuture(third.id, third.key);
          resumed.promote(third.id);
          retiredNow = [active, next];
        }
        const image = torn.image();
        for (const slot of retiredNow) if (holds(image, storedForm(deviceId, slot))) throw new Error(`promotion ${r}, ${cut.label}: retired key ${slot.id} still on flash`);
        cuts++;
      }
      keystore.promote(next.id);
      active = next;
    }
    expect(duringScrub).toBeGreaterThan(1000);
    console.log(`${_name}: ${cuts} cut points in ${PROMOTIONS} promotions, ${duringScrub} of them in the scrub`);
  });
});

test('the Node host\'s file image (keystore.bin) holds no retired key after a rotation', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lockstep-scrub-'));
  try {
    const path = join(dir, 'keystore.bin');
    const flash = new FileFlash(path);
    const keystore = new Keystore(flash);
    const deviceId = randomBytes(8);
    let active: KeySlot = { id: 1, key: new Uint8Array(randomBytes(64)) };
    keystore.format(deviceId, active, 'classic');
    for (let r = 0; r < 60; r++) {
      const next = { id: active.id + 1, key: new Uint8Array(randomBytes(64)) };
      keystore.storeFuture(next.id, next.key);
      keystore.promote(next.id);
      expect(holds(readFileSync(path), active.key)).toBe(false);
      expect(holds(readFileSync(path), next.key)).toBe(true);
      active = next;
    }
    flash.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
