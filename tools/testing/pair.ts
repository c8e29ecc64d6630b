/**
 * A device and a hub over an in-memory link on a virtual clock (quinn's
 * `Pair`, h11's `ConnectionPair`), for tests and benchmarks only. The device
 * is the real device loop (modules/device/loop.ts) over an in-memory
 * transport and key storage; the hub is a HubCore driven directly. Storage
 * is simulated: the device's keystore and the hub's database are plain
 * objects updated when a write is asked for, and with `autoPersist` off a
 * write stays outstanding until the next `step()`, so a "crash" can drop
 * whatever was not persisted.
 *
 * The test decides when the device connects: `connect()` fires the loop's
 * connection attempt; `advance(ms)` fires only the cores' deadlines.
 *
 * With `recovery: true` (docs/PROTOCOL.md §12) the device is provisioned
 * with a recovery credential, the hub with its static key and the device's
 * public key; the hub's host answers every recoveryRequest with `decide`
 * (ACCEPTED unless a test replaces it).
 */
import { toHex } from '../../modules/bytes';
import type { Aead, KeyAgreementPrimitives, RandomSource } from '../../modules/crypto/primitives';
import type { RecoveryCredential } from '../../modules/crypto/recovery';
import type { DeviceAction, DeviceEvent } from '../../modules/device/actions';
import type { DeviceCore, DeviceTiming } from '../../modules/device/device';
import { DeviceLoop, type DeviceLoopEvent, type DeviceTransportEvents, type LoopTimerKind } from '../../modules/device/loop';
import { derivePendingKey } from '../../modules/hub/pending-key';
import { HubCore, type HubAction, type HubEvent, type HubStaticKey, type HubTiming, type RecoveryDecision } from '../../modules/hub/hub';
import { RecoveryStatus } from '../../modules/protocol/constants';
import { PERSIST_LATER, type KeyStorage, type PersistLater } from '../../modules/keystore/key-storage';
import type { MountResult } from '../../modules/keystore/keystore';
import { copyKeys, keysPromoted, keysWithFuture, type DeviceKeys, type KeyShares, type KeySlot, type RekeyMode } from '../../modules/platform/keys';
import { nodeAead } from '../../hosts/node/crypto';
import { nodeKeyAgreementDrawn as nodeKeyAgreement } from '../../hosts/node/key-agreement';
import { copyHubRow, hubRowAfter, type HubRow } from './hub-row';
import { seededRandom } from './deterministic-random';

export const START_MS = 1_700_000_000_000;

export interface PairOptions {
  /** The device's rekey mode at provisioning (docs/PROTOCOL.md §11). */
  mode?: RekeyMode;
  seed?: number;
  aead?: Aead;
  keyAgreement?: KeyAgreementPrimitives;
  random?: RandomSource;
  initialKeyId?: number;
  deviceTiming?: Partial<DeviceTiming>;
  hubTiming?: Partial<HubTiming>;
  /** Recovery credentials on both sides (§12.6). */
  recovery?: boolean;
  /** The hub core class (a test's deliberately broken variant); default HubCore. */
  Core?: typeof HubCore;
}

export type PairRecoveryRequest = Extract<HubAction, { type: 'recoveryRequest' }>;

/** The loop's timers on the pair's clock: one of each kind at most. */
class PairTimers {
  readonly slots: Record<LoopTimerKind, { at: number; callback: () => void; handle: number } | undefined> = { deadline: undefined, retry: undefined };
  #handles = 0;
  constructor(private readonly now: () => number) {}
  set(callback: () => void, delayMs: number, kind: LoopTimerKind): unknown {
    const handle = ++this.#handles;
    this.slots[kind] = { at: this.now() + delayMs, callback, handle };
    return handle;
  }
  clear(handle: unknown): void {
    for (const kind of ['deadline', 'retry'] as const) if (this.slots[kind]?.handle === handle) this.slots[kind] = undefined;
  }
  fire(kind: LoopTimerKind, onlyIfDue: boolean): void {
    const slot = this.slots[kind];
    if (slot === undefined || (onlyIfDue && slot.at > this.now())) return;
    this.slots[kind] = undefined;
    slot.callback();
  }
}

function copyCredential(credential: RecoveryCredential): RecoveryCredential {
  return { device: { privateKey: credential.device.privateKey.slice(), publicKey: credential.device.publicKey.slice() }, hubStaticId: credential.hubStaticId, hubPublicKey: credential.hubPublicKey.slice() };
}

export class Pair {
  now = START_MS;
  readonly random: RandomSource & { nextUint32(): number };
  readonly aead: Aead;
  readonly keyAgreement: KeyAgreementPrimitives;
  readonly deviceIdBytes: Uint8Array;
  readonly deviceId: string;
  /** The device: the real loop around the device core. */
  readonly loop: DeviceLoop;
  hub: HubCore;
  /** The device keystore's durable content. */
  deviceStore: DeviceKeys;
  /** The hub database's durable row. */
  hubStore: HubRow;
  connectionId = 0;
  connected = false;
  toHub: Uint8Array[] = [];
  toDevice: Uint8Array[] = [];
  deviceEvents: DeviceEvent[] = [];
  hubEvents: HubEvent[] = [];
  devicePersistPending = false;
  hubPersistPending = false;
  /** Persist synchronously as soon as asked (like SQLite and the ESP32 flash). */
  autoPersist = true;
  /** The device keystore's recovery credential (durable, like deviceStore). */
  deviceCredential: RecoveryCredential | undefined;
  /** The hub's static key (outside its database: it survives a restore). */
  readonly hubStatic: HubStaticKey | undefined;
  /** The hub host's policy for recoveryRequest actions. */
  decide: (request: PairRecoveryRequest) => RecoveryDecision = () => ({ status: RecoveryStatus.ACCEPTED, retryAfterSeconds: 0 });
  /** Every recoveryRequest the hub asked its host about. */
  recoveryRequests: PairRecoveryRequest[] = [];
  readonly #options: PairOptions;
  readonly #timers: PairTimers;
  #transport: DeviceTransportEvents | undefined;
  /** Device actions the loop carried out during the current call (deliverToDevice returns them). */
  #recorded: DeviceAction[] | undefined;

  constructor(options: PairOptions = {}) {
    this.#options = options;
    this.random = seededRandom(options.seed ?? 1);
    this.aead = options.aead ?? nodeAead;
    this.keyAgreement = options.keyAgreement ?? nodeKeyAgreement;
    this.deviceIdBytes = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
    this.deviceId = toHex(this.deviceIdBytes);
    const key = new Uint8Array(64);
    this.random.fill(key);
    const active = { id: options.initialKeyId ?? 1, key };
    this.deviceStore = { mode: options.mode ?? 'classic', active: { id: active.id, key: key.slice() } };
    this.hubStore = { mode: options.mode ?? 'classic', active: { id: active.id, key: key.slice() } };
    if (options.recovery === true) {
      const deviceStatic = new Uint8Array(32);
      const hubStatic = new Uint8Array(32);
      this.random.fill(deviceStatic);
      this.random.fill(hubStatic);
      this.hubStatic = { id: 1, privateKey: hubStatic, publicKey: this.keyAgreement.x25519PublicKey(hubStatic) };
      const device = { privateKey: deviceStatic, publicKey: this.keyAgreement.x25519PublicKey(deviceStatic) };
      this.deviceCredential = { device, hubStaticId: 1, hubPublicKey: this.hubStatic.publicKey.slice() };
      this.hubStore = { ...this.hubStore, devicePublicKey: device.publicKey.slice(), hubStaticId: 1 };
    }
    this.#timers = new PairTimers(() => this.now);
    this.loop = new DeviceLoop({
      storage: this.#deviceStorage(),
      transport: (events) => this.#open(events),
      timers: this.#timers,
      clock: { now: () => this.now },
      random: this.random,
      aead: this.aead,
      keyAgreement: this.keyAgreement,
      ...(options.deviceTiming === undefined ? {} : { timing: options.deviceTiming }),
      // No jitter draws: the pair's random sequence stays that of the cores alone.
      reconnectDelayMs: () => 1_000,
      beforeAction: (action) => this.#recorded?.push(action),
      onEvent: (event) => this.#onDeviceEvent(event),
    });
    // Power on: the loop mounts (the device core exists from here on) and connects when `connect()` says.
    this.loop.powerOff();
    this.loop.powerOn();
    this.hub = this.#bootHub();
  }

  /** The device's running core (for tests that poke the core itself). */
  get device(): DeviceCore {
    const core = this.loop.core;
    if (core === undefined) throw new Error('pair: the device has no core (off or unmounted)');
    return core;
  }

  #bootHub(): HubCore {
    const recovery = this.hubStatic === undefined ? {} : { recovery: { hubKeys: [this.hubStatic], currentHubStaticId: this.hubStatic.id } };
    const Core = this.#options.Core ?? HubCore;
    return new Core({ aead: this.aead, random: this.random, keyAgreement: this.keyAgreement, devices: [{ deviceId: this.deviceId, ...copyHubRow(this.hubStore) }], timing: this.#options.hubTiming ?? {}, ...recovery });
  }

  /** The device's next connection attempt, now (after closing the current connection). */
  connect(): void {
    if (this.connected) this.disconnect();
    this.#timers.fire('retry', false);
    const events = this.#transport;
    if (events === undefined) throw new Error('pair: the loop did not open a connection');
    events.onConnected();
    this.#applyHub(this.hub.opened(this.connectionId, this.now));
  }

  /** The link goes down; both ends hear of it. */
  disconnect(): void {
    if (!this.connected) return;
    const events = this.#transport;
    this.#dropLink();
    events?.onClosed('pair: disconnected');
    this.#applyHub(this.hub.closed(this.connectionId, this.now));
  }

  /** Delivers one queued chunk (hub-bound first when both wait). Returns false when idle. */
  step(): boolean {
    if (this.devicePersistPending || this.hubPersistPending) return this.#completePersists();
    const toHub = this.toHub.shift();
    if (toHub !== undefined) {
      this.#applyHub(this.hub.receive(this.connectionId, toHub, this.now));
      return true;
    }
    const toDevice = this.toDevice.shift();
    if (toDevice !== undefined) {
      this.#transport?.onData(toDevice);
      return true;
    }
    return false;
  }

  /** Hands bytes straight to the device (as if the link delivered them); returns the actions the loop carried out. */
  deliverToDevice(bytes: Uint8Array): DeviceAction[] {
    return this.#recording(() => this.#transport?.onData(bytes));
  }

  /** Hands bytes straight to the hub on the current connection and applies its actions. */
  deliverToHub(bytes: Uint8Array): HubAction[] {
    const actions = this.hub.receive(this.connectionId, bytes, this.now);
    this.#applyHub(actions);
    return actions;
  }

  runUntilIdle(maxSteps = 10_000): void {
    for (let i = 0; i < maxSteps; i++) if (!this.step()) return;
    throw new Error('link did not go idle');
  }

  /** Time passes: the device's deadline (if due) and the hub's timers fire. */
  advance(ms: number): void {
    this.now += ms;
    this.#timers.fire('deadline', true);
    this.#applyHub(this.hub.tick(this.now));
  }

  rotate(): void {
    const result = this.hub.rotate(this.deviceId, this.now);
    if (!result.ok) throw result.error;
    this.#applyHub(result.actions);
  }

  /** App data from the device; throws the core's typed error when it is refused. */
  deviceSend(payload: Uint8Array): number {
    const result = this.loop.send(payload);
    if (!result.ok) throw result.error;
    return result.messageId;
  }

  hubSend(payload: Uint8Array): number {
    const result = this.hub.send(this.deviceId, payload, this.now);
    if (!result.ok) throw result.error;
    this.#applyHub(result.actions);
    return result.messageId;
  }

  /** Device power loss: memory is gone, the keystore remains; it boots at once (and connects at the next `connect()`). */
  rebootDevice(): void {
    this.disconnect();
    this.devicePersistPending = false;
    this.loop.powerOff();
    this.loop.powerOn();
  }

  /** Hub crash: memory is gone, the database remains. */
  restartHub(): void {
    this.disconnect();
    this.hubPersistPending = false;
    this.hub = this.#bootHub();
  }

  #completePersists(): boolean {
    if (this.devicePersistPending) {
      this.devicePersistPending = false;
      if (this.loop.persistOutstanding !== undefined) this.loop.persistCompleted();
    }
    if (this.hubPersistPending) {
      this.hubPersistPending = false;
      this.#applyHub(this.hub.persisted(this.deviceId, this.now));
    }
    return true;
  }

  // ---- The device loop's bindings ----

  #open(events: DeviceTransportEvents): { write(bytes: Uint8Array): void; close(): void } {
    this.connectionId++;
    this.connected = true;
    this.toHub = [];
    this.toDevice = [];
    this.#transport = events;
    const connection = this.connectionId;
    return {
      write: (bytes) => {
        if (this.connected && this.connectionId === connection) this.toHub.push(bytes);
      },
      // The device ends the connection: the hub hears of it.
      close: () => {
        if (!this.connected || this.connectionId !== connection) return;
        this.#dropLink();
        this.#applyHub(this.hub.closed(connection, this.now));
      },
    };
  }

  #drainToDevice(): void {
    const connection = this.connectionId;
    while (this.connected && this.connectionId === connection) {
      const chunk = this.toDevice.shift();
      if (chunk === undefined) return;
      this.#transport?.onData(chunk);
    }
  }

  #dropLink(): void {
    this.connected = false;
    this.toHub = [];
    this.toDevice = [];
    this.#transport = undefined;
  }

  #deviceStorage(): KeyStorage {
    const pair = this;
    const later = (): PersistLater | undefined => {
      pair.devicePersistPending = true;
      return pair.autoPersist ? undefined : PERSIST_LATER;
    };
    return {
      mount(): MountResult {
        const credential = pair.deviceCredential === undefined ? {} : { credential: copyCredential(pair.deviceCredential) };
        return { provisioned: true, deviceId: pair.deviceIdBytes.slice(), keys: copyKeys(pair.deviceStore), ...credential };
      },
      get credential(): RecoveryCredential | undefined {
        return pair.deviceCredential === undefined ? undefined : copyCredential(pair.deviceCredential);
      },
      storeCredential(credential: RecoveryCredential): void | PersistLater {
        pair.deviceCredential = copyCredential(credential);
        const answer = later();
        if (answer === undefined) pair.devicePersistPending = false;
        return answer;
      },
      storeRecovered(id: number, key: Uint8Array): void | PersistLater {
        // DK14: (id, key) replaces the future slot, without shares.
        pair.deviceStore = { mode: pair.deviceStore.mode, active: pair.deviceStore.active, future: { id, key: key.slice() } };
        const answer = later();
        if (answer === undefined) pair.devicePersistPending = false;
        return answer;
      },
      get keys(): DeviceKeys {
        return copyKeys(pair.deviceStore);
      },
      get deviceId(): Uint8Array {
        return pair.deviceIdBytes.slice();
      },
      format(): void {
        throw new Error('pair: provisioned at construction');
      },
      storeFuture(id: number, key: Uint8Array, shares?: KeyShares): void | PersistLater {
        pair.deviceStore = keysWithFuture(pair.deviceStore, shares === undefined ? { id, key: key.slice() } : { id, key: key.slice(), shares: { hub: shares.hub.slice(), device: shares.device.slice() } });
        const answer = later();
        if (answer === undefined) pair.devicePersistPending = false;
        return answer;
      },
      promote(): KeySlot | PersistLater {
        const future = pair.deviceStore.future;
        if (future === undefined) throw new Error('pair: promote without a future key');
        pair.deviceStore = keysPromoted(pair.deviceStore);
        const answer = later();
        if (answer === undefined) pair.devicePersistPending = false;
        return answer ?? { id: future.id, key: future.key.slice() };
      },
    };
  }

  #onDeviceEvent(event: DeviceLoopEvent): void {
    switch (event.type) {
      case 'connecting':
      case 'connected':
      case 'disconnected':
      case 'booted':
      case 'bootFailed':
      case 'storageFailed':
        return;
      default:
        this.deviceEvents.push(event);
    }
  }

  #recording(run: () => void): DeviceAction[] {
    const outer = this.#recorded;
    const recorded: DeviceAction[] = [];
    this.#recorded = recorded;
    try {
      run();
    } finally {
      this.#recorded = outer;
    }
    outer?.push(...recorded);
    return recorded;
  }

  #applyHub(actions: HubAction[]): void {
    for (const action of actions) {
      switch (action.type) {
        case 'transmit':
          if (this.connected && action.connection === this.connectionId) this.toDevice.push(action.bytes);
          break;
        case 'close':
          if (action.connection !== this.connectionId) break;
          // With recovery the hub closes right after RECOVER_RESULT: as TCP's FIN follows the data, what it sent arrives first.
          if (this.hubStatic !== undefined) this.#drainToDevice();
          this.disconnect();
          break;
        case 'persist': {
          const op = action.op;
          this.hubStore = hubRowAfter(this.hubStore, op);
          this.hubPersistPending = true;
          if (this.autoPersist) this.#completePersists();
          break;
        }
        case 'event':
          this.hubEvents.push(action.event);
          break;
        case 'recoveryRequest':
          this.recoveryRequests.push(action);
          this.#applyHub(this.hub.decideRecovery(action.connection, this.decide(action), this.now));
          break;
      }
    }
  }

  /** Both sides hold exactly one shared key and nothing is in flight. */
  inSync(): boolean {
    const d = this.device.keys;
    const h = this.hub.deviceKeys(this.deviceId);
    return d.future === undefined && h.pending === undefined && d.active.id === h.active.id && toHex(d.active.key) === toHex(h.active.key);
  }

  /** Safety invariant S1/S2 (docs/PROTOCOL.md §9): each side's seal key is accepted by the other. */
  assertSafe(): void {
    const d = this.device.keys;
    const accepted = this.hub.acceptedKeyIds(this.deviceId);
    const deviceSeal = (d.future ?? d.active).id;
    if (!accepted.includes(deviceSeal)) throw new Error(`device seals with ${deviceSeal}, hub accepts ${accepted}`);
    const hubSeal = this.hub.deviceKeys(this.deviceId).active;
    const deviceHolds = [d.active, ...(d.future ? [d.future] : [])];
    const same = deviceHolds.find((slot) => slot.id === hubSeal.id);
    if (same === undefined) throw new Error(`hub seals with ${hubSeal.id}, device holds ${deviceHolds.map((s) => s.id)}`);
    if (toHex(same.key) !== toHex(hubSeal.key)) throw new Error(`key id ${hubSeal.id} names two keys`);
    // §11: a dh pending slot must lead to the very key the device stored under that id.
    const pending = this.hub.deviceKeys(this.deviceId).pending;
    if (pending?.dh !== undefined && d.future !== undefined && d.future.id === pending.id) {
      if (d.future.shares === undefined || toHex(d.future.shares.hub) !== toHex(pending.dh.publicKey)) throw new Error(`key id ${pending.id}: the device's future key is not from the hub's exchange`);
      const derived = derivePendingKey(this.keyAgreement, hubSeal, { id: pending.id, dh: pending.dh }, this.deviceIdBytes, d.future.shares.device);
      if (toHex(derived) !== toHex(d.future.key)) throw new Error(`key id ${pending.id} names two keys (dh)`);
    }
  }
}
