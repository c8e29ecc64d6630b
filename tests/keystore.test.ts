// Keystore API (modules/keystore/keystore.ts): mount/format/storeFuture/
// promote, refusals that change nothing, durability after every call,
// compaction around the ring, secret copies, flash failures.
import { NorFlash } from '../modules/flash/nor-flash';
import { SeededRandom } from '../tools/testing/cut-injection';
import { Keystore } from '../modules/keystore/keystore';
import type { DeviceKeys } from '../modules/platform/keys';
import type { Flash } from '../modules/platform/flash';

const deviceId = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
const key = (n: number) => new Uint8Array(64).fill(n & 0xff);
const code = (c: string) => expect.objectContaining({ code: c });

function provisioned(geometry = { sectorSize: 4096, sectors: 4 }) {
  const flash = new NorFlash(geometry);
  const keystore = new Keystore(flash);
  keystore.format(deviceId, { id: 1, key: key(1) }, 'classic');
  return { flash, keystore };
}

function remount(flash: Flash): DeviceKeys {
  const result = new Keystore(flash).mount();
  if (!result.provisioned) throw new Error(`unprovisioned: ${result.reason}`);
  return result.keys;
}

describe('lifecycle', () => {
  test('a blank partition mounts as unprovisioned; operations say so', () => {
    const keystore = new Keystore(new NorFlash());
    expect(() => keystore.keys).toThrow(code('LOCAL_NOT_READY'));
    expect(keystore.mount()).toEqual({ provisioned: false, reason: 'erased', detail: expect.any(String) });
    expect(() => keystore.storeFuture(2, key(2))).toThrow(code('UNPROVISIONED'));
    expect(() => keystore.promote()).toThrow(code('UNPROVISIONED'));
  });

  test('format, store, promote: each durable when it returns', () => {
    const { flash, keystore } = provisioned();
    expect(new Keystore(flash).mount()).toEqual({ provisioned: true, deviceId, keys: { mode: 'classic', active: { id: 1, key: key(1) } } });
    keystore.storeFuture(5, key(5));
    expect(remount(flash)).toEqual({ mode: 'classic', active: { id: 1, key: key(1) }, future: { id: 5, key: key(5) } });
    expect(keystore.promote()).toEqual({ id: 5, key: key(5) });
    expect(remount(flash)).toEqual({ mode: 'classic', active: { id: 5, key: key(5) } });
    expect(keystore.keys).toEqual({ mode: 'classic', active: { id: 5, key: key(5) } });
    expect(keystore.deviceId).toEqual(deviceId);
  });

  test('the largest u32 id can be stored; nothing can follow it', () => {
    const { flash, keystore } = provisioned();
    keystore.storeFuture(0xffffffff, key(9));
    keystore.promote();
    expect(remount(flash).active.id).toBe(0xffffffff);
    expect(() => keystore.storeFuture(0xffffffff, key(9))).toThrow(code('LOCAL_BAD_ARGUMENT'));
  });

  test('geometry the journal cannot use is refused', () => {
    for (const geometry of [{ sectorSize: 4096, sectors: 1 }, { sectorSize: 316, sectors: 4 }, { sectorSize: 322, sectors: 4 }, { sectorSize: 200, sectors: 4 }]) {
      expect(() => new Keystore(new NorFlash(geometry))).toThrow(code('LOCAL_BAD_ARGUMENT'));
    }
    expect(() => new Keystore({ size: 10000, sectorSize: 4096, read: () => new Uint8Array(0), program: () => {}, erase: () => {} })).toThrow(
      code('LOCAL_BAD_ARGUMENT'),
    );
    expect(() => new Keystore(new NorFlash({ sectorSize: 320, sectors: 2 }))).not.toThrow(); // 2 slots of 144 bytes: the minimum
  });
});

describe('refusals change no state and write nothing', () => {
  function refused(setup: (k: Keystore) => void, call: (k: Keystore) => unknown, errorCode: string) {
    const { flash, keystore } = provisioned();
    setup(keystore);
    const before = keystore.keys;
    const operations = flash.operations;
    expect(() => call(keystore)).toThrow(code(errorCode));
    expect(flash.operations).toBe(operations);
    expect(keystore.keys).toEqual(before);
    expect(remount(flash)).toEqual(before);
  }
  const none = () => {};
  const withFuture = (k: Keystore) => k.storeFuture(10, key(10));

  test.each([
    ['id equal to the active id', none, (k: Keystore) => k.storeFuture(1, key(2)), 'LOCAL_BAD_ARGUMENT'],
    ['id below the active id', (k: Keystore) => (k.storeFuture(8, key(8)), k.promote()), (k: Keystore) => k.storeFuture(7, key(7)), 'LOCAL_BAD_ARGUMENT'],
    ['negative id', none, (k: Keystore) => k.storeFuture(-1, key(2)), 'LOCAL_BAD_ARGUMENT'],
    ['id above u32', none, (k: Keystore) => k.storeFuture(2 ** 32, key(2)), 'LOCAL_BAD_ARGUMENT'],
    ['fractional id', none, (k: Keystore) => k.storeFuture(2.5, key(2)), 'LOCAL_BAD_ARGUMENT'],
    ['NaN id', none, (k: Keystore) => k.storeFuture(Number.NaN, key(2)), 'LOCAL_BAD_ARGUMENT'],
    ['short key', none, (k: Keystore) => k.storeFuture(2, new Uint8Array(63)), 'LOCAL_BAD_ARGUMENT'],
    ['long key', none, (k: Keystore) => k.storeFuture(2, new Uint8Array(65)), 'LOCAL_BAD_ARGUMENT'],
    ['a second future, other id', withFuture, (k: Keystore) => k.storeFuture(11, key(11)), 'LOCAL_BUSY'],
    ['a second future, same id, other key', withFuture, (k: Keystore) => k.storeFuture(10, key(99)), 'LOCAL_BUSY'],
    ['promote without a future', none, (k: Keystore) => k.promote(), 'LOCAL_NOT_READY'],
    ['promote of another id than the future', withFuture, (k: Keystore) => k.promote(11), 'LOCAL_BAD_ARGUMENT'],
    ['promote of an id that is neither future nor active', none, (k: Keystore) => k.promote(5), 'LOCAL_NOT_READY'],
  ])('%s', (_name, setup, call, errorCode) => refused(setup, call, errorCode));

  test('storing the stored future again is idempotent and writes nothing', () => {
    const { flash, keystore } = provisioned();
    keystore.storeFuture(10, key(10));
    const operations = flash.operations;
    keystore.storeFuture(10, key(10));
    expect(flash.operations).toBe(operations);
    expect(remount(flash)).toEqual({ mode: 'classic', active: { id: 1, key: key(1) }, future: { id: 10, key: key(10) } });
  });

  test('promote(id) of the key that is already active is idempotent and writes nothing', () => {
    const { flash, keystore } = provisioned();
    keystore.storeFuture(10, key(10));
    expect(keystore.promote(10)).toEqual({ id: 10, key: key(10) });
    const operations = flash.operations;
    expect(keystore.promote(10)).toEqual({ id: 10, key: key(10) });
    expect(flash.operations).toBe(operations);
    expect(remount(flash)).toEqual({ mode: 'classic', active: { id: 10, key: key(10) } });
  });

  test('format refuses a bad device id or key', () => {
    const keystore = new Keystore(new NorFlash());
    expect(() => keystore.format(new Uint8Array(7), { id: 1, key: key(1) }, 'classic')).toThrow(code('LOCAL_BAD_ARGUMENT'));
    expect(() => keystore.format(deviceId, { id: 1, key: new Uint8Array(32) }, 'classic')).toThrow(code('LOCAL_BAD_ARGUMENT'));
    expect(() => keystore.format(deviceId, { id: -1, key: key(1) }, 'classic')).toThrow(code('LOCAL_BAD_ARGUMENT'));
  });
});

describe('secrets', () => {
  test('returned keys are copies; the caller may wipe its own key after storing', () => {
    const { flash, keystore } = provisioned();
    const mine = key(3);
    keystore.storeFuture(3, mine);
    mine.fill(0);
    keystore.keys.future?.key.fill(0);
    keystore.promote().key.fill(0);
    expect(keystore.keys.active).toEqual({ id: 3, key: key(3) });
    expect(remount(flash).active).toEqual({ id: 3, key: key(3) });
  });

  test('format wipes earlier keys from the whole partition', () => {
    const { flash, keystore } = provisioned({ sectorSize: 512, sectors: 4 });
    const old = new SeededRandom(1);
    const written: Uint8Array[] = [];
    for (let id = 2; id < 30; id++) {
      const k = old.bytes(64);
      written.push(k);
      keystore.storeFuture(id, k);
      keystore.promote();
    }
    keystore.format(Uint8Array.of(9, 9, 9, 9, 9, 9, 9, 9), { id: 1, key: key(0x5a) }, 'classic');
    const image = Buffer.from(flash.image());
    for (const k of written) expect(image.includes(Buffer.from(k.subarray(0, 16)))).toBe(false);
    expect(new Keystore(flash).mount()).toMatchObject({ provisioned: true, deviceId: Uint8Array.of(9, 9, 9, 9, 9, 9, 9, 9) });
  });
});

describe('journal', () => {
  test.each([
    [2, 512],
    [4, 512],
    [3, 320],
    [4, 4096],
  ])('%i sectors of %i bytes: 500 rotations, state right after every call, erases spread evenly', (sectors, sectorSize) => {
    const random = new SeededRandom(sectors * sectorSize);
    const { flash, keystore } = provisioned({ sectorSize, sectors });
    const erasesAfterFormat = flash.sectorErases.slice();
    let id = 1;
    for (let rotation = 0; rotation < 500; rotation++) {
      const previous = id;
      id += 1 + random.below(1000);
      const k = random.bytes(64);
      keystore.storeFuture(id, k);
      if (rotation % 7 === 0) expect(remount(flash)).toEqual({ mode: 'classic', active: { id: previous, key: expect.any(Uint8Array) }, future: { id, key: k } });
      keystore.promote();
      if (rotation % 5 === 0) expect(remount(flash)).toEqual({ mode: 'classic', active: { id, key: k } });
    }
    const erases = Array.from(flash.sectorErases, (n, s) => n - (erasesAfterFormat[s] as number));
    expect(Math.max(...erases) - Math.min(...erases)).toBeLessThanOrEqual(1);
    expect(Math.max(...erases)).toBeGreaterThan(0);
  });

  test('a new Keystore continues where the last one stopped, also on a full sector', () => {
    const { flash } = provisioned({ sectorSize: 512, sectors: 3 });
    for (let id = 2; id < 40; id++) {
      const keystore = new Keystore(flash);
      keystore.mount();
      keystore.storeFuture(id, key(id));
      const next = new Keystore(flash);
      next.mount();
      next.promote();
    }
    expect(remount(flash)).toEqual({ mode: 'classic', active: { id: 39, key: key(39) } });
  });
});

describe('flash failures', () => {
  /** A flash that fails (throws, or silently drops) the n-th program. */
  function failing(inner: NorFlash, mode: 'throw' | 'drop', at: number): Flash & { programs: number } {
    const wrapper = {
      size: inner.size,
      sectorSize: inner.sectorSize,
      programs: 0,
      read: (offset: number, length: number) => inner.read(offset, length),
      erase: (sector: number) => inner.erase(sector),
      program: (offset: number, data: Uint8Array) => {
        if (wrapper.programs++ === at) {
          if (mode === 'throw') throw new Error('SPI error');
          return;
        }
        inner.program(offset, data);
      },
    };
    return wrapper;
  }

  test('an I/O error drops the in-memory state until mount; the journal then carries on', () => {
    const { flash } = provisioned();
    const broken = failing(flash, 'throw', 1); // the commit word of the first store
    const keystore = new Keystore(broken);
    keystore.mount();
    expect(() => keystore.storeFuture(2, key(2))).toThrow('SPI error');
    expect(() => keystore.keys).toThrow(code('LOCAL_NOT_READY'));
    expect(keystore.mount()).toMatchObject({ provisioned: true, keys: { active: { id: 1 } } });
    keystore.storeFuture(2, key(2));
    expect(remount(flash)).toEqual({ mode: 'classic', active: { id: 1, key: key(1) }, future: { id: 2, key: key(2) } });
  });

  test('a write that does not stick is caught by the read-back (STORAGE_CORRUPT), never committed', () => {
    const { flash } = provisioned();
    const keystore = new Keystore(failing(flash, 'drop', 0)); // the record body
    keystore.mount();
    expect(() => keystore.storeFuture(2, key(2))).toThrow(code('STORAGE_CORRUPT'));
    expect(remount(flash)).toEqual({ mode: 'classic', active: { id: 1, key: key(1) } });
  });
});

describe('rekey mode and key shares (docs/PROTOCOL.md §11)', () => {
  const shares = (n: number) => ({ hub: new Uint8Array(32).fill(n), device: new Uint8Array(32).fill(n + 1) });

  test('format stores the mode; a dh future keeps its shares across remounts; its promotion moves the mode to dh for good', () => {
    const flash = new NorFlash({ sectorSize: 512, sectors: 4 });
    const keystore = new Keystore(flash);
    keystore.format(deviceId, { id: 1, key: key(1) }, 'classic');
    expect(keystore.formatVersion).toBe(2);
    expect(remount(flash)).toEqual({ mode: 'classic', active: { id: 1, key: key(1) } });
    keystore.storeFuture(2, key(2), shares(2));
    expect(remount(flash)).toEqual({ mode: 'classic', active: { id: 1, key: key(1) }, future: { id: 2, key: key(2), shares: shares(2) } });
    expect(keystore.keys).toEqual(remount(flash));
    keystore.promote(2);
    expect(remount(flash)).toEqual({ mode: 'dh', active: { id: 2, key: key(2) } });
    // A classic future after that (not what the protocol sends) keeps the mode dh, across compactions too.
    for (let id = 3; id < 12; id++) {
      keystore.storeFuture(id, key(id), id % 3 === 0 ? undefined : shares(id));
      keystore.promote(id);
      expect(remount(flash)).toEqual({ mode: 'dh', active: { id, key: key(id) } });
    }
    const dh = new Keystore(new NorFlash());
    dh.format(deviceId, { id: 1, key: key(1) }, 'dh');
    expect(dh.keys.mode).toBe('dh');
  });

  test('the same future with the same shares is a no-op; other shares are another future (LOCAL_BUSY); bad shares are refused; nothing written', () => {
    const { flash, keystore } = provisioned();
    keystore.storeFuture(2, key(2), shares(2));
    const operations = flash.operations;
    keystore.storeFuture(2, key(2), shares(2));
    expect(() => keystore.storeFuture(2, key(2), shares(3))).toThrow(code('LOCAL_BUSY'));
    expect(() => keystore.storeFuture(2, key(2))).toThrow(code('LOCAL_BUSY'));
    expect(flash.operations).toBe(operations);
    const fresh = provisioned();
    for (const bad of [{ hub: new Uint8Array(31), device: new Uint8Array(32) }, { hub: new Uint8Array(32), device: new Uint8Array(33) }, { hub: new Uint8Array(32) }, null]) {
      const before = fresh.flash.operations;
      expect(() => fresh.keystore.storeFuture(2, key(2), bad as never)).toThrow(code('LOCAL_BAD_ARGUMENT'));
      expect(fresh.flash.operations).toBe(before);
    }
    expect(() => fresh.keystore.format(deviceId, { id: 1, key: key(1) }, 'weak' as never)).toThrow(code('LOCAL_BAD_ARGUMENT'));
    expect(remount(fresh.flash)).toEqual({ mode: 'classic', active: { id: 1, key: key(1) } });
  });

  test('returned shares are copies', () => {
    const { flash, keystore } = provisioned();
    const mine = shares(4);
    keystore.storeFuture(4, key(4), mine);
    mine.hub.fill(0);
    keystore.keys.future?.shares?.device.fill(0);
    expect(keystore.keys.future?.shares).toEqual(shares(4));
    expect(remount(flash).future?.shares).toEqual(shares(4));
  });
});
