// The keystore with wrapped keys (modules/keystore/wrapped-keystore.ts,
// docs/KEYSTORE.md §10): plain keys in and out, only wrapped bytes in flash,
// the journal's API rules unchanged, the same power-cut exploration as the
// plain journal (tools/testing/cut-harness.ts) on a small geometry, and
// openKeystore's choice between wrapped and plain storage.
import { randomBytes } from 'node:crypto';
import { exploreCuts, exploreRetryCuts, randomCutRun } from '../tools/testing/cut-harness';
import type { OpenKeyStorage } from '../tools/testing/cut-harness';
import { KeyWrapper } from '../modules/keystore/key-wrap';
import { encodeKeyWrapImage } from '../modules/keystore/key-wrap-image';
import { Keystore } from '../modules/keystore/keystore';
import { WrappedKeystore, openKeystore } from '../modules/keystore/wrapped-keystore';
import { NorFlash } from '../modules/flash/nor-flash';
import { isLockstepError } from '../modules/errors';
import { nodePrimitives } from '../hosts/node/crypto';

const bytes = (n: number) => new Uint8Array(randomBytes(n));
const geometry = { sectorSize: 512, sectors: 4 };

function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(haystack).indexOf(Buffer.from(needle)) >= 0;
}

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (error) {
    return isLockstepError(error) ? error.code : `not typed: ${String(error)}`;
  }
  return undefined;
}

describe('WrappedKeystore', () => {
  const kwk = bytes(64);
  const wrapper = () => new KeyWrapper(nodePrimitives, kwk);

  test('plain keys in and out; only wrapped keys in flash, where the plain journal finds them', () => {
    const flash = new NorFlash(geometry);
    const deviceId = bytes(8);
    const active = { id: 10, key: bytes(64) };
    const future = { id: 11, key: bytes(64) };
    const store = new WrappedKeystore(flash, wrapper());
    store.format(deviceId, active, 'classic');
    store.storeFuture(future.id, future.key);
    expect(store.keys).toEqual({ mode: 'classic', active, future });
    expect(new WrappedKeystore(flash, wrapper()).mount()).toEqual({ provisioned: true, deviceId, keys: { mode: 'classic', active, future } });

    const image = flash.image();
    expect(contains(image, active.key) || contains(image, future.key)).toBe(false);
    expect(contains(image, active.key.subarray(0, 16)) || contains(image, future.key.subarray(48))).toBe(false);
    const raw = new Keystore(flash).mount();
    expect(raw).toMatchObject({ provisioned: true, keys: { active: { id: 10 }, future: { id: 11 } } });
    if (raw.provisioned) expect(raw.keys.active.key).toEqual(wrapper().wrap(deviceId, 10, active.key));

    expect(store.promote(11)).toEqual(future);
    expect(store.promote(11)).toEqual(future); // idempotent, as the journal
    expect(new WrappedKeystore(flash, wrapper()).mount()).toEqual({ provisioned: true, deviceId, keys: { mode: 'classic', active: future } });
  });

  test("the journal's rules hold on wrapped keys: same future again is a no-op, another is LOCAL_BUSY, bad ids refused", () => {
    const flash = new NorFlash(geometry);
    const store = new WrappedKeystore(flash, wrapper());
    expect(codeOf(() => store.storeFuture(2, bytes(64)))).toBe('LOCAL_NOT_READY');
    store.format(bytes(8), { id: 5, key: bytes(64) }, 'classic');
    const key = bytes(64);
    store.storeFuture(6, key);
    const before = flash.image();
    store.storeFuture(6, key.slice());
    expect(flash.image()).toEqual(before);
    expect(codeOf(() => store.storeFuture(6, bytes(64)))).toBe('LOCAL_BUSY');
    expect(codeOf(() => store.storeFuture(7, bytes(64)))).toBe('LOCAL_BUSY');
    expect(codeOf(() => store.promote(7))).toBe('LOCAL_BAD_ARGUMENT');
    expect(codeOf(() => store.storeFuture(6, bytes(63)))).toBe('LOCAL_BAD_ARGUMENT');
    expect(codeOf(() => store.format(bytes(8), { id: -1, key: bytes(64) }, 'classic'))).toBe('LOCAL_BAD_ARGUMENT');
    expect(flash.image()).toEqual(before);
  });

  test('mounted with another KWK: the journal mounts, the keys are different (the hub will reject them)', () => {
    const flash = new NorFlash(geometry);
    const active = { id: 1, key: bytes(64) };
    new WrappedKeystore(flash, wrapper()).format(bytes(8), active, 'classic');
    const other = new WrappedKeystore(flash, new KeyWrapper(nodePrimitives, bytes(64))).mount();
    expect(other.provisioned).toBe(true);
    if (other.provisioned) expect(other.keys.active.key).not.toEqual(active.key);
    const blank = new WrappedKeystore(new NorFlash(geometry), wrapper()).mount();
    expect(blank).toMatchObject({ provisioned: false, reason: 'erased' });
  });
});

describe('WrappedKeystore under power cuts (the plain journal exploration, through the wrapper)', () => {
  const kwk = bytes(64);
  const open: OpenKeyStorage = (flash) => new WrappedKeystore(flash, new KeyWrapper(nodePrimitives, kwk));

  test('exhaustive cuts, 4 x 512 B, 16 rotations (classic then dh), 4 bit patterns per byte', () => {
    const report = exploreCuts({ geometry, rotations: 16, bitPatterns: 4, seed: 71, open });
    console.log(`wrapped, exhaustive: ${JSON.stringify(report)}`);
    expect(report.compactions).toBeGreaterThanOrEqual(2);
    expect(report.dhPromotions).toBeGreaterThan(0);
    expect(report.cutPoints).toBeGreaterThan(8000);
    expect(report.mountedBefore + report.mountedAfter).toBe(report.cutPoints);
  });

  test('two cuts: interrupted compaction, then a torn erase while storing another key', () => {
    const report = exploreRetryCuts({ geometry, rotations: 6, bitPatterns: 2, seed: 72, open });
    console.log(`wrapped, two cuts: ${JSON.stringify(report)}`);
    expect(report.compactions).toBeGreaterThanOrEqual(2);
    expect(report.cutPoints).toBeGreaterThan(1000);
  });

  test('seeded random cuts over 300 rotations', () => {
    const report = randomCutRun({ geometry, rotations: 300, seed: 73, cutProbability: 0.5, open });
    console.log(`wrapped, random: ${JSON.stringify(report)}`);
    expect(report.cuts).toBeGreaterThan(100);
    expect(report.mountedAfter).toBeGreaterThan(0);
  });
});

describe('openKeystore', () => {
  const kwk = bytes(64);
  const deviceId = bytes(8);
  const active = { id: 3, key: bytes(64) };

  function open(keyWrapImage: Uint8Array | undefined, requireKeyWrap = false, flash = new NorFlash(geometry)) {
    const warnings: string[] = [];
    const storage = openKeystore({ openFlash: () => flash, keyWrapImage, primitives: nodePrimitives, requireKeyWrap, warn: (line) => warnings.push(line) });
    return { storage, warnings, flash };
  }

  test('a valid key-wrap image gives wrapped storage, silently', () => {
    const image = encodeKeyWrapImage(kwk);
    const { storage, warnings, flash } = open(image);
    expect(storage).toBeInstanceOf(WrappedKeystore);
    expect(warnings).toEqual([]);
    storage.format(deviceId, active, 'classic');
    expect(contains(flash.image(), active.key)).toBe(false);
    expect(open(image, true, flash).storage.mount()).toEqual({ provisioned: true, deviceId, keys: { mode: 'classic', active } });
  });

  test('no partition or an erased one: plain storage with a loud warning, or UNPROVISIONED when required', () => {
    for (const image of [undefined, new Uint8Array(4096).fill(0xff)]) {
      const { storage, warnings } = open(image);
      expect(storage).toBeInstanceOf(Keystore);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/WARNING: .*PLAINTEXT/);
      expect(codeOf(() => open(image, true))).toBe('UNPROVISIONED');
    }
  });

  test('a foreign, corrupt or truncated key-wrap partition is STORAGE_CORRUPT, never a fallback to plain keys', () => {
    const corrupt = encodeKeyWrapImage(kwk);
    corrupt[10]! ^= 4;
    for (const image of [new Uint8Array(4096), bytes(4096), corrupt, encodeKeyWrapImage(kwk).slice(0, 70)]) {
      expect(codeOf(() => open(image))).toBe('STORAGE_CORRUPT');
      expect(codeOf(() => open(image, true))).toBe('STORAGE_CORRUPT');
    }
  });
});

test('a dh future through the wrapper: the key is wrapped, the shares are stored as they are (public) and come back; the mode moves to dh', () => {
  const kwk = bytes(64);
  const flash = new NorFlash(geometry);
  const store = new WrappedKeystore(flash, new KeyWrapper(nodePrimitives, kwk));
  const deviceId = bytes(8);
  store.format(deviceId, { id: 1, key: bytes(64) }, 'classic');
  const future = { id: 2, key: bytes(64), shares: { hub: bytes(32), device: bytes(32) } };
  store.storeFuture(future.id, future.key, future.shares);
  const image = flash.image();
  expect(contains(image, future.key.subarray(0, 16))).toBe(false);
  expect(contains(image, future.shares.hub) && contains(image, future.shares.device)).toBe(true);
  expect(new WrappedKeystore(flash, new KeyWrapper(nodePrimitives, kwk)).mount()).toMatchObject({ provisioned: true, keys: { mode: 'classic', future } });
  store.promote(2);
  expect(new WrappedKeystore(flash, new KeyWrapper(nodePrimitives, kwk)).mount()).toEqual({ provisioned: true, deviceId, keys: { mode: 'dh', active: { id: 2, key: future.key } } });
});
