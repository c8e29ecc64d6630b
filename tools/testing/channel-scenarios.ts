/**
 * Scenarios of the Lockstep application API on the channel rig
 * (channel-rig.ts), written once as functions of an AEAD and run by jest on
 * Node (tests/moddable-lockstep-api.test.ts) and by the XS test host
 * (tests/xs/suites/lockstep-api.ts): send/receive, back-pressure, every
 * state callback, a rotation, reconnects (hub SIGKILL, device power cut),
 * bad configuration. No Node or jest imports.
 */
import { bytesEqual, toHex } from '../../modules/bytes';
import type { Aead } from '../../modules/crypto/primitives';
import { isLockstepError } from '../../modules/errors';
import { Keystore } from '../../modules/keystore/keystore';
import type { LockstepChannel } from '../../hosts/moddable/lockstep/channel';
import type { LockstepOptions } from '../../hosts/moddable/lockstep/lockstep';
import { ChannelRig, type RigOptions } from './channel-rig';

export interface ChannelScenario {
  readonly name: string;
  readonly run: (aead: Aead, rigOptions?: Partial<RigOptions>) => void;
}

function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

function same(actual: unknown, expected: unknown, what: string): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}

/** Every callback, recorded as `name(args)`. */
function recorder(): { calls: string[]; options: LockstepOptions } {
  const calls: string[] = [];
  const options: LockstepOptions = {
    onConnecting: (attempt) => calls.push(`connecting(${attempt})`),
    onEstablished: (keyId) => calls.push(`established(${keyId})`),
    onDisconnected: (reason) => calls.push(`disconnected(${reason})`),
    onRekeying: (keyId) => calls.push(`rekeying(${keyId})`),
    onKeyPromoted: (keyId) => calls.push(`keyPromoted(${keyId})`),
    onRecovery: (detail) => calls.push(`recovery(${detail})`),
    onDelivered: (id) => calls.push(`delivered(${id})`),
    onWritable: (count) => calls.push(`writable(${count})`),
    onReadable: (count) => calls.push(`readable(${count})`),
    onError: (error) => calls.push(`error(${error.code})`),
    onClosed: () => calls.push('closed'),
  };
  return { calls, options };
}

function established(aead: Aead, options: LockstepOptions = {}, rigOptions: Partial<RigOptions> = {}): { rig: ChannelRig; channel: LockstepChannel } {
  const rig = new ChannelRig({ ...rigOptions, aead });
  const channel = rig.open(options);
  rig.advance(100);
  check(channel.state === 'established', `established after the first connection (state ${channel.state}; ${rig.lines.join(' | ')})`);
  return { rig, channel };
}

function writeId(channel: LockstepChannel, payload: ArrayBuffer | ArrayBufferView): number {
  const id = channel.write(payload);
  if (typeof id !== 'number') throw new Error(`write refused: ${id.message}`);
  return id;
}

/** Rotates until the device holds one key more than before, and the hub agrees. */
function rotateOnce(rig: ChannelRig, channel: LockstepChannel): number {
  const before = channel.keyId;
  rig.rotate();
  rig.advance(2_000);
  check(channel.keyId === before + 1, `rotation: device key ${channel.keyId}, expected ${before + 1}`);
  check(rig.hubKeys.active.id === channel.keyId && rig.hubKeys.pending === undefined, `rotation: hub holds ${rig.hubKeys.active.id}/${rig.hubKeys.pending?.id}`);
  return channel.keyId;
}

export const CHANNEL_SCENARIOS: readonly ChannelScenario[] = [
  {
    name: 'send and receive: write answers the id the core assigned, onDelivered names it, the hub gets the bytes; hub messages are read in order',
    run(aead) {
      const { calls, options } = recorder();
      const { rig, channel } = established(aead, options);
      const first = writeId(channel, Uint8Array.of(1, 2, 3));
      const second = writeId(channel, new Uint8Array([4]).buffer);
      same([first, second], [1, 2], 'ids');
      check(channel.outboxLength === 2, 'two unacknowledged');
      rig.advance(100);
      same(rig.hubReceived.map((payload) => toHex(payload)), ['010203', '04'], 'hub received');
      check(calls.includes('delivered(1)') && calls.includes('delivered(2)'), `delivered: ${calls.join(',')}`);
      check(channel.outboxLength === 0, 'outbox empty after the acknowledgements');
      rig.hubSend(Uint8Array.of(0xa1));
      rig.hubSend(Uint8Array.of(0xa2));
      rig.advance(100);
      same([channel.read()?.[0], channel.read()?.[0], channel.read()], [0xa1, 0xa2, undefined], 'read');
      check(calls.includes('readable(1)'), 'onReadable with the count waiting');
      // A view into a larger buffer sends only its bytes.
      const big = Uint8Array.of(9, 9, 7, 9);
      writeId(channel, big.subarray(2, 3));
      rig.advance(100);
      same(toHex(rig.hubReceived[2] as Uint8Array), '07', 'subarray');
    },
  },
  {
    name: 'back-pressure: outboxMessages bounds the outbox (LOCAL_OUTBOX_FULL, nothing queued), onWritable reports room again; maxMessageBytes bounds a message',
    run(aead, rigOptions) {
      const { calls, options } = recorder();
      const { rig, channel } = established(aead, { ...options, outboxMessages: 2, maxMessageBytes: 16 }, rigOptions);
      rig.hubUp = false;
      rig.killHub(); // no acknowledgements while the hub is away
      rig.run();
      writeId(channel, Uint8Array.of(1));
      writeId(channel, Uint8Array.of(2));
      const full = channel.write(Uint8Array.of(3));
      check(typeof full !== 'number' && full.code === 'LOCAL_OUTBOX_FULL', 'third write refused: outbox full');
      const tooLarge = channel.write(new Uint8Array(17));
      check(typeof tooLarge !== 'number' && tooLarge.code === 'LOCAL_PAYLOAD_TOO_LARGE', 'payload over maxMessageBytes refused');
      check(channel.outboxLength === 2, 'nothing queued by refused writes');
      calls.length = 0;
      rig.hubUp = true;
      rig.advance(120_000);
      check(channel.state === 'established', `reconnected (${channel.state})`);
      same(rig.hubReceived.map((payload) => payload[0]), [1, 2], 'exactly the accepted messages arrive, once');
      check(calls.includes('writable(2)'), `room reported again: ${calls.join(',')}`);
      check(typeof channel.write(Uint8Array.of(4)) === 'number', 'writable again');
      let threw = false;
      try {
        channel.write('text' as unknown as Uint8Array);
      } catch (error) {
        threw = isLockstepError(error, 'LOCAL_BAD_ARGUMENT');
      }
      check(threw, 'a write of a non-buffer is local misuse');
    },
  },
  {
    name: 'every state callback in order: connecting, established, rekeying, key promoted, disconnected, connecting again, established, closed; no recovery callback without a rollback',
    run(aead, rigOptions) {
      const { calls, options } = recorder();
      const rig = new ChannelRig({ ...rigOptions, aead });
      const channel = rig.open(options);
      check(channel.state === 'starting' && calls.length === 0, 'nothing happens inside the constructor');
      rig.advance(100);
      same(calls.filter((call) => !call.startsWith('writable')), ['connecting(0)', 'established(1)'], 'first session');
      calls.length = 0;
      rig.rotate();
      rig.run();
      check(channel.state === 'established' || channel.state === 'rekeying', channel.state);
      rig.advance(2_000);
      same(calls.filter((call) => call.startsWith('rekeying') || call.startsWith('keyPromoted')), ['rekeying(2)', 'keyPromoted(2)'], 'rotation callbacks');
      check(channel.state === 'established' && channel.keyId === 2, `after the rotation: ${channel.state} ${channel.keyId}`);
      calls.length = 0;
      rig.killHub();
      rig.run();
      check(channel.state === 'connecting', `after the hub died: ${channel.state}`);
      rig.advance(120_000);
      const kinds = calls.map((call) => call.replace(/\(.*/, ''));
      check(kinds[0] === 'disconnected', `first the close: ${calls.join(',')}`);
      check(kinds.indexOf('connecting') > 0 && kinds.indexOf('established') > kinds.indexOf('connecting'), `then connecting, established: ${calls.join(',')}`);
      check(calls.includes('established(2)'), 'the new session under the promoted key');
      calls.length = 0;
      channel.close();
      channel.close();
      same(calls, ['closed'], 'closed once');
      check(channel.state === 'closed', 'closed is final');
      const refused = channel.write(Uint8Array.of(1));
      check(typeof refused !== 'number' && refused.code === 'LOCAL_NOT_READY', 'no writes after close');
      rig.hubUp = true;
      rig.advance(120_000);
      same(calls, ['closed'], 'no callback after closed, no reconnect');
      check(!calls.some((call) => call.startsWith('recovery')), 'no recovery callback without a rollback (onRecovery is exercised by the simulator run of docs/FIRMWARE.md)');
    },
  },
  {
    name: 'a rotation: both sides end on the new key, and it is in the flash (a fresh mount reads it)',
    run(aead, rigOptions) {
      const rig = new ChannelRig({ aead, ...rigOptions });
      const channel = rig.open();
      rig.advance(100);
      const oldKey = new Keystore(rig.flash);
      const mountedBefore = oldKey.mount();
      check(mountedBefore.provisioned, 'provisioned');
      for (let i = 0; i < 3; i++) rotateOnce(rig, channel);
      const mounted = new Keystore(rig.flash).mount();
      check(mounted.provisioned && mounted.keys.active.id === 4 && mounted.keys.future === undefined, 'key 4 active in flash');
      check(mounted.provisioned && bytesEqual(mounted.keys.active.key, rig.hubKeys.active.key), 'the same key as the hub');
      writeId(channel, Uint8Array.of(0x55));
      rig.advance(100);
      same(rig.hubReceived.map((payload) => payload[0]), [0x55], 'data under the new key');
    },
  },
  {
    name: 'a reconnect: the hub is killed (SIGKILL) mid-rotation and restarts from its database; messages written meanwhile arrive after',
    run(aead) {
      const { calls, options } = recorder();
      const { rig, channel } = established(aead, options);
      rig.rotate();
      rig.run();
      rig.killHub();
      writeId(channel, Uint8Array.of(0x42));
      rig.advance(120_000);
      check(channel.state === 'established', `reconnected: ${channel.state}`);
      check(channel.keyId === rig.hubKeys.active.id && rig.hubKeys.pending === undefined, `in sync: device ${channel.keyId}, hub ${rig.hubKeys.active.id}/${rig.hubKeys.pending?.id}`);
      same(rig.hubReceived.map((payload) => payload[0]), [0x42], 'delivered after the reconnect');
      check(calls.includes('delivered(1)'), 'acknowledged');
      check(channel.stats.sessions >= 2 && channel.stats.closes >= 1, `stats ${JSON.stringify(channel.stats)}`);
      rotateOnce(rig, channel);
    },
  },
  {
    name: 'a device restart (power cut) mid-rotation: a new channel boots from the flash alone and comes back in sync',
    run(aead) {
      const { rig, channel } = established(aead);
      rig.rotate();
      rig.advance(1); // the offer is under way
      rig.powerCutDevice();
      const { calls, options } = recorder();
      const rebooted = rig.open(options);
      rig.advance(120_000);
      check(rebooted.state === 'established', `rebooted channel: ${rebooted.state}`);
      check(rebooted.keyId === rig.hubKeys.active.id && rig.hubKeys.pending === undefined, `in sync: device ${rebooted.keyId}, hub ${rig.hubKeys.active.id}/${rig.hubKeys.pending?.id}`);
      check(calls.includes(`established(${rebooted.keyId})`) || calls.some((call) => call.startsWith('established')), calls.join(','));
      check(channel.state !== 'closed', 'the dead instance was never told anything (no callbacks after a power cut)');
      rotateOnce(rig, rebooted);
    },
  },
  {
    name: 'bad configuration: one line per bad key (options and mc/config), one LOCAL_BAD_ARGUMENT, nothing started',
    run(aead) {
      const rig = new ChannelRig({ aead });
      const lines: string[] = [];
      let error: unknown;
      try {
        rig.open(
          { port: 0, tls: { verify: 'yes' as unknown as boolean, pin: 'x' } as never, outboxMessages: 9, inboxMessages: 0, maxMessageBytes: 2000, onReadable: 3 as never, colour: 'red', log: (line) => lines.push(line) } as LockstepOptions,
          { hubTSL: 'true', keystoreBytes: '5000', reconnectBaseMs: 'soon', hubCa: 'zz', telemetryMs: 'app key, not ours' },
        );
      } catch (caught) {
        error = caught;
      }
      check(isLockstepError(error, 'LOCAL_BAD_ARGUMENT'), 'one typed error');
      same(lines, [
        'lockstep: option colour: unknown option',
        'lockstep: option onReadable: expected a function',
        'lockstep: option port: expected an integer in [1, 65535]',
        'lockstep: option tls.pin: unknown option',
        'lockstep: option tls.verify: expected true or false',
        'lockstep: option outboxMessages: expected an integer in [1, 8]',
        'lockstep: option maxMessageBytes: expected an integer in [1, 1024]',
        'lockstep: option inboxMessages: expected an integer in [1, 16]',
        'lockstep: config hubTSL: unknown key',
        'lockstep: config reconnectBaseMs: expected an integer',
        'lockstep: config keystoreBytes: must be a multiple of 4096',
        'lockstep: config hubCa: expected a DER certificate as hex (at most 4096 bytes)',
      ], 'lines');
      check((error as Error).message.includes('12 bad settings'), (error as Error).message);
      rig.advance(60_000);
      check(rig.hubEvents.length === 0, 'no connection was ever made');
      // The same settings, corrected, start.
      const good = rig.open({ port: 7701, tls: { verify: true }, outboxMessages: 8, inboxMessages: 1, maxMessageBytes: 1024 }, { keystoreBytes: '16384' });
      check(good.state === 'starting', 'a good configuration is accepted');
    },
  },
  {
    name: 'inbox bound: messages beyond inboxMessages are dropped and counted, never queued without bound',
    run(aead) {
      const { rig, channel } = established(aead, { inboxMessages: 2 });
      for (let i = 0; i < 5; i++) rig.hubSend(Uint8Array.of(i));
      rig.advance(100);
      same([channel.read()?.[0], channel.read()?.[0], channel.read()], [0, 1, undefined], 'the first two');
      check(channel.stats.inboxDropped === 3, `dropped ${channel.stats.inboxDropped}`);
    },
  },
  {
    name: 'a keystore of another device (config deviceId) is fatal: onError once, then closed, no connection',
    run(aead) {
      const { calls, options } = recorder();
      const rig = new ChannelRig({ aead });
      const channel = rig.open(options, { deviceId: '0000000000000001' });
      rig.advance(60_000);
      same(calls, ['error(LOCAL_BAD_ARGUMENT)', 'closed'], 'callbacks');
      check(channel.state === 'closed' && rig.hubEvents.length === 0, 'closed without connecting');
    },
  },
  {
    name: 'an application callback that throws is logged; the channel carries on',
    run(aead) {
      const rig = new ChannelRig({ aead });
      const channel = rig.open({
        onEstablished() {
          throw new Error('app bug');
        },
      });
      rig.advance(100);
      check(channel.state === 'established', channel.state);
      check(rig.lines.some((line) => line.includes('app bug')), 'logged');
      rotateOnce(rig, channel);
    },
  },
];
