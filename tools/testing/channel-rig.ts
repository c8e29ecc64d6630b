/**
 * The Lockstep application API (hosts/moddable/lockstep/channel.ts) against
 * a hub, with the Moddable SDK replaced by fakes: a legacy callback socket
 * that behaves like the simulator's (room per write, read(ArrayBuffer) takes
 * what is buffered) under the real SocketTransport, SDK-style timers on a
 * virtual clock, the real keystore journal on the NOR flash model, and a
 * HubCore whose database is a plain object. Portable: jest runs it on Node
 * (tests/moddable-lockstep-api.test.ts) and the XS test host on XS
 * (tests/xs/suites/lockstep-api.ts), through the same scenarios
 * (tools/testing/channel-scenarios.ts).
 *
 * `run()` moves bytes both ways and fires due timers until nothing is left
 * to do at the current time; `advance(ms)` lets time pass, firing timers in
 * deadline order.
 */
import { toHex } from '../../modules/bytes';
import type { Aead, RandomSource } from '../../modules/crypto/primitives';
import type { DeviceTransportEvents } from '../../modules/device/loop';
import { NorFlash } from '../../modules/flash/nor-flash';
import { HubCore, type HubAction, type HubEvent } from '../../modules/hub/hub';
import type { KeyStorage } from '../../modules/keystore/key-storage';
import { Keystore } from '../../modules/keystore/keystore';
import { LockstepChannel, type ChannelServices } from '../../hosts/moddable/lockstep/channel';
import type { LockstepOptions } from '../../hosts/moddable/lockstep/lockstep';
import type { Platform } from '../../hosts/moddable/platform-types';
import { SOCKET_CONNECTED, SOCKET_DISCONNECTED, SOCKET_READABLE, SocketTransport, type LegacySocket } from '../../hosts/moddable/socket-transport';
import { seededRandom } from './deterministic-random';
import { copyHubRow, hubRowAfter, type HubRow } from './hub-row';

export const RIG_START_MS = 1_000_000;
/** The simulator's socket takes at most this many bytes per write. */
const SOCKET_ROOM_BYTES = 1024;

interface RigTimer {
  readonly id: number;
  readonly at: number;
  readonly callback: () => void;
  readonly owner: number;
}

/** The SDK socket as the rig drives it: bytes from the device go to the hub, and back. */
class FakeSdkSocket implements LegacySocket {
  callback: (message: number, value?: number) => void = () => {};
  readonly connection: number;
  inbound: Uint8Array[] = [];
  closed = false;
  readonly #rig: ChannelRig;

  constructor(rig: ChannelRig, connection: number) {
    this.#rig = rig;
    this.connection = connection;
  }
  read(type?: typeof ArrayBuffer): ArrayBuffer | number {
    if (type === undefined) return this.inbound[0]?.length ?? 0;
    return (this.inbound.shift() ?? new Uint8Array(0)).slice().buffer;
  }
  write(...data: Uint8Array[]): number | void {
    if (data.length === 0) return SOCKET_ROOM_BYTES;
    let length = 0;
    for (const part of data) length += part.length;
    if (length > SOCKET_ROOM_BYTES) throw new Error("can't write all data");
    const bytes = new Uint8Array(length);
    let at = 0;
    for (const part of data) {
      bytes.set(part, at);
      at += part.length;
    }
    this.#rig.fromDevice(this, bytes);
  }
  close(): void {
    if (this.closed) throw new Error('close on closed socket');
    this.closed = true;
    this.#rig.deviceClosed(this);
  }
}

export interface RigOptions {
  readonly aead: Aead;
  readonly seed?: number;
  /** `mc/config` as the build made it (the library manifest's defaults apply when absent). */
  readonly config?: Readonly<Record<string, unknown>>;
  /** The hub accepts connections (else every attempt times out). */
  readonly hubUp?: boolean;
  /** Replaces the device's key storage (broken variants in the tests). */
  readonly wrapStorage?: (storage: KeyStorage) => KeyStorage;
  /** Rewrites the options a channel is opened with (broken variants: a bound or a callback lost on the way). */
  readonly rewriteOptions?: (options: LockstepOptions) => LockstepOptions;
}

export class ChannelRig {
  now = RIG_START_MS;
  readonly aead: Aead;
  readonly random: RandomSource;
  readonly deviceIdBytes = Uint8Array.of(9, 8, 7, 6, 5, 4, 3, 2);
  readonly deviceId = toHex(this.deviceIdBytes);
  readonly flash = new NorFlash({ sectors: 4 });
  readonly lines: string[] = [];
  readonly hubEvents: HubEvent[] = [];
  /** Payloads the hub's application received, in order. */
  readonly hubReceived: Uint8Array[] = [];
  hub: HubCore;
  hubStore: HubRow;
  hubUp: boolean;
  /** Messages the hub still has to deliver towards the device (bytes per connection). */
  #toDevice: { connection: number; bytes: Uint8Array }[] = [];
  #toHub: { connection: number; bytes: Uint8Array }[] = [];
  #sockets = new Map<number, FakeSdkSocket>();
  #nextConnection = 0;
  #timers: RigTimer[] = [];
  #nextTimer = 0;
  /** The current device power cycle: timers of an earlier one never fire. */
  #incarnation = 0;
  readonly #config: Readonly<Record<string, unknown>>;
  readonly #wrapStorage: ((storage: KeyStorage) => KeyStorage) | undefined;
  readonly #rewriteOptions: ((options: LockstepOptions) => LockstepOptions) | undefined;

  constructor(options: RigOptions) {
    this.#wrapStorage = options.wrapStorage;
    this.#rewriteOptions = options.rewriteOptions;
    this.aead = options.aead;
    this.random = seededRandom(options.seed ?? 5);
    this.hubUp = options.hubUp ?? true;
    this.#config = options.config ?? {};
    const key = new Uint8Array(64);
    this.random.fill(key);
    new Keystore(this.flash).format(this.deviceIdBytes, { id: 1, key: key.slice() }, 'classic');
    this.hubStore = { mode: 'classic', active: { id: 1, key } };
    this.hub = this.#bootHub();
  }

  /** The services a channel gets on this rig (the SDK's, faked). */
  services(config: Readonly<Record<string, unknown>> = this.#config): ChannelServices {
    const incarnation = this.#incarnation;
    const platform: Platform = {
      name: 'rig',
      aead: this.aead,
      random: this.random,
      openKeystore: () => (this.#wrapStorage === undefined ? new Keystore(this.flash) : this.#wrapStorage(new Keystore(this.flash))),
      startNetwork: (_config, _log, ready) => ready(),
    };
    return {
      config,
      fileRoot: '/tmp/',
      platform,
      openConnection: (_settings, events) => new SocketTransport(() => this.#openSocket(events), events, (callback) => {
          this.#setTimer(callback, 0, incarnation);
        }),
      timers: {
        set: (callback, delayMs) => this.#setTimer(callback, delayMs, incarnation),
        clear: (handle) => {
          this.#timers = this.#timers.filter((timer) => timer.id !== handle);
        },
      },
      clock: { now: () => this.now - RIG_START_MS },
      log: (line) => this.lines.push(line),
      defer: (callback) => {
        this.#setTimer(callback, 0, incarnation);
      },
    };
  }

  /** A channel on this rig; `options.log` defaults to the rig's lines. */
  open(options: LockstepOptions = {}, config?: Readonly<Record<string, unknown>>): LockstepChannel {
    return new LockstepChannel(this.#rewriteOptions === undefined ? options : this.#rewriteOptions(options), this.services(config));
  }

  /** Moves bytes and fires timers due now until nothing is left. */
  run(maxSteps = 10_000): void {
    for (let i = 0; i < maxSteps; i++) if (!this.#step()) return;
    throw new Error('rig: did not go idle');
  }

  /** Time passes in steps of at most `stepMs`, running everything due on the way. */
  advance(ms: number, stepMs = 250): void {
    const end = this.now + ms;
    this.run();
    while (this.now < end) {
      const next = this.#timers.reduce((min, timer) => Math.min(min, timer.at), Number.POSITIVE_INFINITY);
      this.now = Math.min(end, this.now + stepMs, Math.max(this.now, next));
      this.#applyHub(this.hub.tick(this.now));
      this.run();
    }
  }

  /** Starts a rotation on the hub (as its operator or schedule would). */
  rotate(): void {
    const result = this.hub.rotate(this.deviceId, this.now);
    if (!result.ok) throw result.error;
    this.#applyHub(result.actions);
  }

  hubSend(payload: Uint8Array): number {
    const result = this.hub.send(this.deviceId, payload, this.now);
    if (!result.ok) throw result.error;
    this.#applyHub(result.actions);
    return result.messageId;
  }

  /** The hub process dies (SIGKILL): its connections drop as the device sees it, its memory is gone, its database stays. */
  killHub(): void {
    for (const socket of [...this.#sockets.values()]) this.#dropSocket(socket, true);
    this.#toDevice = [];
    this.#toHub = [];
    this.hub = this.#bootHub();
  }

  /** The device loses power: every timer and socket of it is gone; the flash stays. The caller opens a new channel (a boot). */
  powerCutDevice(): void {
    this.#incarnation++;
    this.#timers = [];
    for (const socket of [...this.#sockets.values()]) {
      socket.callback = () => {};
      this.#dropSocket(socket, false);
    }
  }

  get hubKeys(): HubRow {
    return this.hub.deviceKeys(this.deviceId);
  }

  // ---- wiring ----

  #bootHub(): HubCore {
    return new HubCore({ aead: this.aead, random: this.random, devices: [{ deviceId: this.deviceId, ...copyHubRow(this.hubStore) }], timing: {} });
  }

  #setTimer(callback: () => void, delayMs: number, incarnation: number): number {
    const id = ++this.#nextTimer;
    if (incarnation === this.#incarnation) this.#timers.push({ id, at: this.now + Math.max(0, delayMs), callback, owner: incarnation });
    return id;
  }

  #openSocket(_events: DeviceTransportEvents): LegacySocket {
    const connection = ++this.#nextConnection;
    const socket = new FakeSdkSocket(this, connection);
    this.#sockets.set(connection, socket);
    // The SDK reports the connection (or its failure) from the event loop, never inside the constructor.
    this.#setTimer(() => {
      if (socket.closed || !this.#sockets.has(connection)) return;
      if (!this.hubUp) return; // no answer: the channel's connect timeout ends the attempt
      socket.callback(SOCKET_CONNECTED);
      this.#applyHub(this.hub.opened(connection, this.now));
    }, 1, this.#incarnation);
    return socket;
  }

  fromDevice(socket: FakeSdkSocket, bytes: Uint8Array): void {
    if (!socket.closed && this.#sockets.has(socket.connection)) this.#toHub.push({ connection: socket.connection, bytes });
  }

  deviceClosed(socket: FakeSdkSocket): void {
    if (!this.#sockets.delete(socket.connection)) return;
    this.#applyHub(this.hub.closed(socket.connection, this.now));
  }

  /** The link ends from the hub's side (or the hub died): the device hears `disconnected` if `tell`. */
  #dropSocket(socket: FakeSdkSocket, tell: boolean): void {
    if (!this.#sockets.delete(socket.connection)) return;
    socket.closed = true;
    if (tell) socket.callback(SOCKET_DISCONNECTED);
  }

  #step(): boolean {
    const toHub = this.#toHub.shift();
    if (toHub !== undefined) {
      if (this.#sockets.has(toHub.connection)) this.#applyHub(this.hub.receive(toHub.connection, toHub.bytes, this.now));
      return true;
    }
    const toDevice = this.#toDevice.shift();
    if (toDevice !== undefined) {
      const socket = this.#sockets.get(toDevice.connection);
      if (socket !== undefined && !socket.closed) {
        socket.inbound.push(toDevice.bytes);
        socket.callback(SOCKET_READABLE, toDevice.bytes.length);
      }
      return true;
    }
    const due = this.#timers.filter((timer) => timer.at <= this.now).sort((a, b) => a.at - b.at || a.id - b.id)[0];
    if (due !== undefined) {
      this.#timers = this.#timers.filter((timer) => timer !== due);
      if (due.owner === this.#incarnation) due.callback();
      return true;
    }
    return false;
  }

  #applyHub(actions: readonly HubAction[]): void {
    for (const action of actions) {
      switch (action.type) {
        case 'transmit':
          if (this.#sockets.has(action.connection)) this.#toDevice.push({ connection: action.connection, bytes: action.bytes });
          break;
        case 'close': {
          const socket = this.#sockets.get(action.connection);
          this.#applyHub(this.hub.closed(action.connection, this.now));
          if (socket !== undefined) this.#dropSocket(socket, true);
          break;
        }
        case 'persist': {
          this.hubStore = hubRowAfter(this.hubStore, action.op);
          this.#applyHub(this.hub.persisted(this.deviceId, this.now));
          break;
        }
        case 'event':
          this.hubEvents.push(action.event);
          if (action.event.type === 'data') this.hubReceived.push((action.event as { payload: Uint8Array }).payload);
          break;
      }
    }
  }
}
