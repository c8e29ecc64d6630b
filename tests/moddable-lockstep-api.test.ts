/**
 * The Lockstep application API (hosts/moddable/lockstep) with the SDK's
 * socket and timers faked (tools/testing/channel-rig.ts), on Node. The same
 * scenarios run on the XS engine in tests/xs (group `api`). A deliberately
 * broken channel shows the scenarios can fail.
 */
import { nodeAead } from '../hosts/node/crypto';
import type { KeyStorage } from '../modules/keystore/key-storage';
import { CHANNEL_SCENARIOS } from '../tools/testing/channel-scenarios';

describe('Lockstep API on the SDK fakes', () => {
  for (const scenario of CHANNEL_SCENARIOS) test(scenario.name, () => scenario.run(nodeAead));
});

describe('the scenarios fail on a broken variant', () => {
  test('a keystore that reports a promotion without writing it: the rotation scenario sees the flash disagree', () => {
    const rotation = CHANNEL_SCENARIOS.find((scenario) => scenario.name.startsWith('a rotation'))!;
    const forgetful = (storage: KeyStorage): KeyStorage =>
      Object.assign(Object.create(Object.getPrototypeOf(storage) as object) as KeyStorage, storage, {
        mount: () => storage.mount(),
        storeFuture: (id: number, key: Uint8Array) => storage.storeFuture(id, key),
        promote: () => storage.keys.future!, // claims success, writes nothing
        get keys() {
          return storage.keys;
        },
      });
    expect(() => rotation.run(nodeAead, { wrapStorage: forgetful })).toThrow(/key 4 active in flash|rotation/);
    expect(() => rotation.run(nodeAead)).not.toThrow();
  });
});
