// The recovery credential and the recovered key in the keystore
// (docs/KEYSTORE.md §12): storeCredential / storeRecovered under every cut
// point (before or after, keys AND credential), the credential carried by
// every compaction, s_d wrapped under the KWK, the replaced future key erased
// from flash, refusals that change nothing, mount total on corrupted
// credential records. A broken variant (a keystore whose compaction forgets
// the credential) is refuted by the same exploration.
import { randomBytes } from 'node:crypto';
import { NorFlash } from '../modules/flash/nor-flash';
import { Keystore } from '../modules/keystore/keystore';
import { KeyWrapper } from '../modules/keystore/key-wrap';
import { WrappedKeystore } from '../modules/keystore/wrapped-keystore';
import { RECORD_CREDENTIAL, SLOT_BYTES, slotOffset } from '../modules/keystore/layout';
import type { RecoveryCredential } from '../modules/crypto/recovery';
import { exploreRecoveryCuts, type OpenKeyStorage } from '../tools/testing/cut-harness';
import { SeededRandom } from '../tools/testing/cut-injection';
import { nodePrimitives } from '../hosts/node/crypto';
import { LockstepError } from '../modules/errors';

const geometry = { sectorSize: 512, sectors: 4 };
const deviceId = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
const bytes = (n: number) => new Uint8Array(randomBytes(n));
function credential(hubStaticId = 1): RecoveryCredential {
  return { device: { privateKey: bytes(32), publicKey: bytes(32) }, hubStaticId, hubPublicKey: bytes(32) };
}
function occurrences(image: Uint8Array, needle: Uint8Array): number {
  let count = 0;
  outer: for (let i = 0; i + needle.length <= image.length; i++) {
    for (let j = 0; j < needle.length; j++) if (image[i + j] !== needle[j]) continue outer;
    count++;
  }
  return count;
}
function code(run: () => unknown): string | undefined {
  try {
    run();
  } catch (error) {
    return error instanceof LockstepError ? error.code : `not typed: ${String(error)}`;
  }
  return undefined;
}

describe('every cut point of storeCredential and storeRecovered ends before or after', () => {
  test.each([
    ['plain, 4 x 512 B (3 slots: every future after the credential compacts), 4 bit patterns per byte', undefined, geometry, false, 4, 8],
    ['plain, formatted with the credential, 2 x 512 B', undefined, { sectorSize: 512, sectors: 2 }, true, 2, 6],
    ['plain, 4 x 1024 B (appends before compactions)', undefined, { sectorSize: 1024, sectors: 4 }, false, 2, 7],
    ['wrapped (s_d under the KWK), 4 x 512 B', 'wrapped', geometry, false, 2, 6],
  ])('%s', (_name, wrapped, shape, formatWithCredential, bitPatterns, rotations) => {
    const kwk = bytes(64);
    const open: OpenKeyStorage | undefined = wrapped === undefined ? undefined : (flash) => new WrappedKeystore(flash, new KeyWrapper(nodePrimitives, kwk));
    const report = exploreRecoveryCuts({ geometry: shape, rotations, bitPatterns, seed: 1414, ...(open === undefined ? {} : { open }), formatWithCredential });
    console.log(`${_name}: ${JSON.stringify(report)}`);
    expect(report.credentialStores).toBe(formatWithCredential ? 0 : 1);
    expect(report.recoveredStores).toBeGreaterThanOrEqual(3);
    expect(report.recoveredReplacements).toBeGreaterThanOrEqual(1);
    if (!formatWithCredential) expect(report.recoveredReplacements).toBeLessThan(report.recoveredStores); // some without a future: appended
    expect(report.compactions).toBeGreaterThanOrEqual(3);
    expect(report.cutPoints).toBeGreaterThan(500);
    expect(report.mountedBefore + report.mountedAfter).toBe(report.cutPoints);
    expect(report.mountedAfter).toBeGreaterThan(0);
  });

  test('broken variant: a compaction that forgets the credential is caught', () => {
    // The broken keystore drops the credential from every sector it writes (as firmware before §12 does).
    class Forgetful extends Keystore {
      override storeFuture(id: number, key: Uint8Array, shares?: Parameters<Keystore['storeFuture']>[2]): void {
        const held = this.credential;
        super.storeFuture(id, key, shares);
        if (held !== undefined && this.credential !== undefined && this.keys.future?.id === id) {
          // Simulate the loss by reformatting without the credential when a compaction happened.
          const state = this.keys;
          this.format(this.deviceId, state.active, state.mode);
          if (state.future !== undefined) super.storeFuture(state.future.id, state.future.key, state.future.shares);
        }
      }
    }
    const open: OpenKeyStorage = (flash) => new Forgetful(flash);
    expect(() => exploreRecoveryCuts({ geometry, rotations: 4, bitPatterns: 2, seed: 3, open })).toThrow(/credential|expected/);
  });
});

describe('API', () => {
  function mounted(formatWith?: RecoveryCredential, shape = geometry) {
    const flash = new NorFlash(shape);
    const keystore = new Keystore(flash);
    keystore.format(deviceId, { id: 5, key: bytes(64) }, 'dh', formatWith);
    return { flash, keystore };
  }

  test('the same credential again writes nothing; another one is STATIC_KEY_LOCKED and changes nothing', () => {
    const { flash, keystore } = mounted();
    expect(keystore.credential).toBeUndefined();
    const first = credential(3);
    keystore.storeCredential(first);
    const image = flash.image();
    keystore.storeCredential({ ...first, device: { ...first.device } });
    expect(flash.image()).toEqual(image);
    expect(code(() => keystore.storeCredential(credential(3)))).toBe('STATIC_KEY_LOCKED');
    expect(code(() => keystore.storeCredential(credential(4)))).toBe('STATIC_KEY_LOCKED');
    expect(flash.image()).toEqual(image);
    const again = new Keystore(flash).mount();
    expect(again.provisioned && again.credential).toEqual(first);
  });

  test('bad arguments are LOCAL_BAD_ARGUMENT and write nothing', () => {
    const { flash, keystore } = mounted();
    const image = flash.image();
    const good = credential();
    for (const bad of [
      { ...good, hubStaticId: -1 },
      { ...good, hubStaticId: 2 ** 32 },
      { ...good, hubPublicKey: bytes(31) },
      { ...good, device: { privateKey: bytes(33), publicKey: bytes(32) } },
      null,
    ]) {
      expect(code(() => keystore.storeCredential(bad as RecoveryCredential))).toBe('LOCAL_BAD_ARGUMENT');
    }
    expect(code(() => keystore.storeRecovered(5, bytes(64)))).toBe('LOCAL_BAD_ARGUMENT');
    expect(code(() => keystore.storeRecovered(9, bytes(63)))).toBe('LOCAL_BAD_ARGUMENT');
    expect(code(() => keystore.storeRecovered(2 ** 32, bytes(64)))).toBe('LOCAL_BAD_ARGUMENT');
    expect(flash.image()).toEqual(image);
  });

  test('storeRecovered needs an id above the future too; it replaces the future and erases its bytes from flash', () => {
    const { flash, keystore } = mounted(credential());
    const future = bytes(64);
    keystore.storeFuture(6, future);
    expect(code(() => keystore.storeRecovered(6, bytes(64)))).toBe('LOCAL_BAD_ARGUMENT');
    const recovered = bytes(64);
    keystore.storeRecovered(1000, recovered);
    expect(keystore.keys.future).toEqual({ id: 1000, key: recovered });
    expect(occurrences(flash.image(), future)).toBe(0); // the replaced key is zeroed in the superseded sector
    expect(occurrences(flash.image(), recovered)).toBe(1);
    const image = flash.image();
    keystore.storeRecovered(1000, recovered); // idempotent
    expect(flash.image()).toEqual(image);
    const again = new Keystore(flash);
    const result = again.mount();
    expect(result.provisioned && result.keys).toEqual({ mode: 'dh', active: keystore.keys.active, future: { id: 1000, key: recovered } });
    // The recovered key is promoted like any future key; the credential stays.
    again.promote(1000);
    expect(again.credential).toEqual(keystore.credential);
  });

  test('the credential survives many compactions; superseded copies of s_d are zeroed', () => {
    const held = credential();
    const { flash, keystore } = mounted(held);
    for (let id = 6; id < 40; id++) {
      keystore.storeFuture(id, bytes(64));
      keystore.promote(id);
    }
    expect(keystore.credential).toEqual(held);
    expect(occurrences(flash.image(), held.device.privateKey)).toBe(1);
    const result = new Keystore(flash).mount();
    expect(result.provisioned && result.credential).toEqual(held);
  });

  test('WrappedKeystore: s_d is never in flash in clear, and mounts back', () => {
    const flash = new NorFlash(geometry);
    const kwk = bytes(64);
    const store = new WrappedKeystore(flash, new KeyWrapper(nodePrimitives, kwk));
    const held = credential(7);
    store.format(deviceId, { id: 1, key: bytes(64) }, 'dh', held);
    for (let id = 2; id < 8; id++) {
      store.storeFuture(id, bytes(64));
      store.promote(id);
    }
    expect(occurrences(flash.image(), held.device.privateKey)).toBe(0);
    expect(occurrences(flash.image(), held.device.publicKey)).toBe(1); // public parts as they are
    const again = new WrappedKeystore(flash, new KeyWrapper(nodePrimitives, kwk));
    const result = again.mount();
    expect(result.provisioned && result.credential).toEqual(held);
    expect(again.credential).toEqual(held);
    // The same credential again is a no-op through the wrapper too (deterministic wrapping).
    const image = flash.image();
    again.storeCredential(held);
    expect(flash.image()).toEqual(image);
    expect(code(() => again.storeCredential(credential(7)))).toBe('STATIC_KEY_LOCKED');
  });

  test('a sector of 2 slots cannot carry a credential: STORAGE_FULL, nothing written', () => {
    const small = { sectorSize: 32 + 2 * SLOT_BYTES, sectors: 2 };
    const { flash, keystore } = mounted(undefined, small);
    const image = flash.image();
    expect(code(() => keystore.storeCredential(credential()))).toBe('STORAGE_FULL');
    expect(flash.image()).toEqual(image);
  });
});

test('mount stays total on corrupted credential records: the credential is either intact or absent', () => {
  const random = new SeededRandom(14);
  const held = credential(2);
  const flash = new NorFlash(geometry);
  const keystore = new Keystore(flash);
  keystore.format(deviceId, { id: 1, key: bytes(64) }, 'classic', held);
  const base = flash.image();
  const at = slotOffset(1); // the credential record in sector 0
  expect(base[at]).toBe(RECORD_CREDENTIAL);
  for (let trial = 0; trial < 2000; trial++) {
    const image = base.slice();
    const flips = 1 + random.below(4);
    for (let f = 0; f < flips; f++) {
      const i = at + random.below(SLOT_BYTES);
      image[i] = (image[i] as number) ^ (1 << random.below(8));
    }
    const result = new Keystore(new NorFlash({ ...geometry, image })).mount();
    expect(result.provisioned).toBe(true);
    if (result.provisioned && result.credential !== undefined) expect(result.credential).toEqual(held);
  }
});
