/**
 * The Lockstep application API (hosts/moddable/lockstep) with the SDK's
 * socket and timers faked (tools/testing/channel-rig.ts), on Node. The same
 * scenarios run on the XS engine in tests/xs (group `api`). A deliberately
 * broken channel shows the scenarios can fail.
 */
import { nodeAead } from '../hosts/node/crypto';
import type { KeyStorage } from '../modules/keystore/key-storage';
import { checkChannelSettings } from '../hosts/moddable/lockstep/channel';
import type { LockstepOptions } from '../hosts/moddable/lockstep/lockstep';
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

describe('checkChannelSettings: options over mc/config', () => {
  const der = new Uint8Array(300);
  der.set([0x30, 0x82, 0x01, 0x28]);

  test('the pin as bytes (e.g. a Resource) or hex; options override config, a hub option drops a config port for another hub', () => {
    const fromBytes = checkChannelSettings({ tls: { ca: der.buffer } }, { hub: 'hub.local', port: '9000' }, '');
    expect(fromBytes.ok && [...fromBytes.checked.settings.hubCa!]).toEqual([...der]);
    expect(fromBytes.ok && fromBytes.checked.settings).toMatchObject({ tls: true, tlsVerify: true, hubHost: 'hub.local', hubPort: 9000 });
    const hex = checkChannelSettings({ hub: 'other:7800', tls: { ca: Buffer.from(der).toString('hex'), verify: true } }, { hub: 'hub.local', port: '9000', hubCa: '' }, '');
    expect(hex.ok && hex.checked.settings).toMatchObject({ hubHost: 'other', hubPort: 7800, tls: true });
    const plain = checkChannelSettings({ tls: false }, { hubTls: 'true' }, '');
    expect(plain.ok && plain.checked.settings.tls).toBe(false);
    expect(checkChannelSettings({}, {}, '')).toMatchObject({ ok: true, checked: { outboxMessages: 8, maxMessageBytes: 1024, inboxMessages: 4 } });
  });

  test('a pin that is not a DER certificate is refused, as bytes or hex', () => {
    expect(checkChannelSettings({ tls: { ca: new Uint8Array(10) } }, {}, '')).toEqual({ ok: false, problems: ['option tls.ca: not a DER certificate (expected one SEQUENCE spanning the value)'] });
    expect(checkChannelSettings(null as never, {}, '')).toEqual({ ok: false, problems: ['option: expected an object'] });
  });
});

describe('the callback and bound scenarios fail on broken variants', () => {
  const scenario = (prefix: string) => CHANNEL_SCENARIOS.find((entry) => entry.name.startsWith(prefix))!;

  test('a channel that loses the outboxMessages bound: the back-pressure scenario fails', () => {
    const run = scenario('back-pressure').run;
    expect(() => run(nodeAead, { rewriteOptions: (options) => ({ ...options, outboxMessages: 8 }) })).toThrow(/outbox full/);
    expect(() => run(nodeAead)).not.toThrow();
  });

  test('a channel that never reports rekeying (or closed): the state scenario fails', () => {
    const run = scenario('every state callback').run;
    const without = (key: 'onRekeying' | 'onClosed') => (options: LockstepOptions): LockstepOptions => {
      const copy: Record<string, unknown> = { ...options };
      delete copy[key];
      return copy as LockstepOptions;
    };
    expect(() => run(nodeAead, { rewriteOptions: without('onRekeying') })).toThrow(/rotation callbacks/);
    expect(() => run(nodeAead, { rewriteOptions: without('onClosed') })).toThrow(/closed once/);
  });
});
