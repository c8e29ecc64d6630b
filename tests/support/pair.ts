/**
 * A device core and a hub core over an in-memory link on a virtual clock
 * (quinn's `Pair`, h11's `ConnectionPair`). Storage is simulated: the
 * device's keystore and the hub's database are plain objects updated when a
 * persist completes, so a "crash" can drop whatever was not persisted.
 */
import { DeviceCore, type DeviceAction, type DeviceEvent, type DeviceTiming } from '../../modules/device/device';
import { HubCore, type HubAction, type HubEvent, type HubTiming } from '../../modules/hub/hub';
import type { Aead, RandomSource } from '../../modules/crypto/primitives';
import type { DeviceKeys, KeySlot } from '../../modules/platform/keys';
import { toHex } from '../../modules/bytes';
import { nodeAead } from '../../hosts/node/crypto';
import { seededRandom } from './deterministic-random';

export const START_MS = 1_700_000_000_000;

export interface PairOptions {
  seed?: number;
  aead?: Aead;
  random?: RandomSource;
  initialKeyId?: number;
  deviceTiming?: Partial<DeviceTiming>;
  hubTiming?: Partial<HubTiming>;
}

export class Pair {
  now = START_MS;
  readonly random: RandomSource & { nextUint32(): number };
  readonly aead: Aead;
  readonly deviceIdBytes: Uint8Array;
  readonly deviceId: string;
  device: DeviceCore;
  hub: HubCore;
  /** The device keystore's durable content. */
  deviceStore: DeviceKeys;
  /** The hub database's durable row. */
  hubStore: { active: KeySlot; pending?: KeySlot };
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
  readonly #options: PairOptions;

  constructor(options: PairOptions = {}) {
    this.#options = options;
    this.random = seededRandom(options.seed ?? 1);
    this.aead = options.aead ?? nodeAead;
    this.deviceIdBytes = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
    this.deviceId = toHex(this.deviceIdBytes);
    const key = new Uint8Array(64);
    this.random.fill(key);
    const active = { id: options.initialKeyId ?? 1, key };
    this.deviceStore = { active: { id: active.id, key: key.slice() } };
    this.hubStore = { active: { id: active.id, key: key.slice() } };
    this.device = this.#bootDevice();
    this.hub = this.#bootHub();
  }

  #bootDevice(): DeviceCore {
    return new DeviceCore({ deviceId: this.deviceIdBytes, keys: this.deviceStore, aead: this.aead, random: this.random, timing: this.#options.deviceTiming ?? {} });
  }

  #bootHub(): HubCore {
    return new HubCore({ aead: this.aead, random: this.random, devices: [{ deviceId: this.deviceId, ...this.hubStore }], timing: this.#options.hubTiming ?? {} });
  }

  connect(): void {
    if (this.connected) this.disconnect();
    this.connectionId++;
    this.connected = true;
    this.toHub = [];
    this.toDevice = [];
    this.#applyDevice(this.device.connected(this.now));
    this.#applyHub(this.hub.opened(this.connectionId, this.now));
  }

  disconnect(): void {
    if (!this.connected) return;
    this.connected = false;
    this.toHub = [];
    this.toDevice = [];
    this.#applyDevice(this.device.disconnected(this.now));
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
      this.#applyDevice(this.device.receive(toDevice, this.now));
      return true;
    }
    return false;
  }

  /** Hands bytes straight to the device (as if the link delivered them) and applies its actions. */
  deliverToDevice(bytes: Uint8Array): DeviceAction[] {
    const actions = this.device.receive(bytes, this.now);
    this.#applyDevice(actions);
    return actions;
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

  advance(ms: number): void {
    this.now += ms;
    this.#applyDevice(this.device.tick(this.now));
    this.#applyHub(this.hub.tick(this.now));
  }

  rotate(): void {
    this.#applyHub(this.hub.rotate(this.deviceId, this.now));
  }

  deviceSend(payload: Uint8Array): void {
    this.#applyDevice(this.device.send(payload, this.now));
  }

  hubSend(payload: Uint8Array): void {
    this.#applyHub(this.hub.send(this.deviceId, payload, this.now));
  }

  /** Device power loss: memory is gone, the keystore remains. */
  rebootDevice(): void {
    this.disconnect();
    this.devicePersistPending = false;
    this.device = this.#bootDevice();
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
      this.#applyDevice(this.device.persisted(this.now));
    }
    if (this.hubPersistPending) {
      this.hubPersistPending = false;
      this.#applyHub(this.hub.persisted(this.deviceId, this.now));
    }
    return true;
  }

  #applyDevice(actions: DeviceAction[]): void {
    for (const action of actions) {
      switch (action.type) {
        case 'transmit':
          if (this.connected) this.toHub.push(action.bytes);
          break;
        case 'close':
          this.disconnect();
          break;
        case 'persist': {
          const op = action.op;
          if (op.kind === 'storeFuture') this.deviceStore = { active: this.deviceStore.active, future: { id: op.id, key: op.key.slice() } };
          else this.deviceStore = { active: this.deviceStore.future! };
          this.devicePersistPending = true;
          if (this.autoPersist) this.#completePersists();
          break;
        }
        case 'event':
          this.deviceEvents.push(action.event);
          break;
      }
    }
  }

  #applyHub(actions: HubAction[]): void {
    for (const action of actions) {
      switch (action.type) {
        case 'transmit':
          if (this.connected && action.connection === this.connectionId) this.toDevice.push(action.bytes);
          break;
        case 'close':
          if (action.connection === this.connectionId) this.disconnect();
          break;
        case 'persist': {
          const op = action.op;
          if (op.kind === 'storePending') this.hubStore = { active: this.hubStore.active, pending: { id: op.id, key: op.key.slice() } };
          else this.hubStore = { active: this.hubStore.pending! };
          this.hubPersistPending = true;
          if (this.autoPersist) this.#completePersists();
          break;
        }
        case 'event':
          this.hubEvents.push(action.event);
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
  }
}
