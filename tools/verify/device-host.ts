/**
 * The simulated device: the real DeviceCore driven by the real device loop
 * (modules/device/loop.ts, the same one the firmware and the Node host run),
 * bound to the simulation: a transport over a simulated link, timers on the
 * simulated clock, and the device's storage (device-store.ts, the real
 * keystore journal on the NOR flash model) behind the loop's one KeyStorage
 * interface. Power cuts strike at any point: between steps, between two
 * actions of one step (the loop's beforeAction hook), or inside a flash
 * operation (torn at any byte). After a power cut the device boots from
 * flash alone.
 */
import { toHex } from '../../modules/bytes';
import type { Aead } from '../../modules/crypto/primitives';
import { describePersistOp, type DevicePersistOp } from '../../modules/device/actions';
import type { DeviceCore } from '../../modules/device/device';
import { DeviceLoop, type DeviceConnection, type DeviceLoopEvent, type DeviceTransportEvents, type LoopTimerKind } from '../../modules/device/loop';
import { PowerCut } from '../../modules/flash/nor-flash';
import type { KeyStorage } from '../../modules/keystore/key-storage';
import type { MountResult } from '../../modules/keystore/keystore';
import { describeKeys, keysEqual, type DeviceKeys, type KeyShares, type KeySlot } from '../../modules/platform/keys';
import { nodeKeyAgreementDrawn as nodeKeyAgreement } from '../../hosts/node/key-agreement';
import { DEVICE_BOOT_MS, RECONNECT_INITIAL_MS, RECONNECT_MAX_MS } from './constants';
import { copyKeys, keysAfter, type DeviceStore } from './device-store';
import type { Link } from './network';
import { Rng } from './rng';
import type { DeviceHostContext } from './sim-types';

/** The loop's timers on the simulated clock: at most one of each kind is ever armed. */
class SimTimers {
  readonly #slots: Record<LoopTimerKind, { at: number; callback: () => void; handle: number } | undefined> = { deadline: undefined, retry: undefined };
  #handles = 0;

  constructor(private readonly now: () => number) {}

  set(callback: () => void, delayMs: number, kind: LoopTimerKind): unknown {
    const handle = ++this.#handles;
    this.#slots[kind] = { at: this.now() + Math.max(0, delayMs), callback, handle };
    return handle;
  }

  clear(handle: unknown): void {
    for (const kind of ['deadline', 'retry'] as const) if (this.#slots[kind]?.handle === handle) this.#slots[kind] = undefined;
  }

  at(kind: LoopTimerKind): number | undefined {
    return this.#slots[kind]?.at;
  }

  fire(kind: LoopTimerKind): void {
    const slot = this.#slots[kind];
    if (slot === undefined) return;
    this.#slots[kind] = undefined;
    slot.callback();
  }

  clearAll(): void {
    this.#slots.deadline = undefined;
    this.#slots.retry = undefined;
  }
}

export class DeviceHost {
  readonly #context: DeviceHostContext;
  readonly deviceId: Uint8Array;
  readonly deviceIdHex: string;
  readonly store: DeviceStore;
  readonly #random: Rng;
  readonly #timers: SimTimers;
  readonly loop: DeviceLoop;
  link: Link | undefined;
  bootAt: number | undefined;
  /** Boots so far; app payloads and receiver memory are per incarnation. */
  incarnation = 0;
  /** App messages this incarnation has queued (their counters run 1, 2, …). */
  sentThisIncarnation = 0;
  /** The transport events of the connection being opened (reported once the loop has it). */
  #opening: { link: Link; events: DeviceTransportEvents } | undefined;
  #events: DeviceTransportEvents | undefined;
  /** The keys before and after the persist a power cut interrupted (keystore before-or-after check). */
  #interrupted: { before: DeviceKeys; after: DeviceKeys } | undefined;

  constructor(context: DeviceHostContext, deviceId: Uint8Array, store: DeviceStore, aead: Aead, seed: number) {
    this.#context = context;
    this.deviceId = deviceId.slice();
    this.deviceIdHex = toHex(deviceId);
    this.store = store;
    this.#random = new Rng(seed, 11);
    this.#timers = new SimTimers(() => this.#context.now);
    this.loop = new DeviceLoop({
      storage: this.#storage(),
      transport: (events) => this.#open(events),
      timers: this.#timers,
      clock: { now: () => this.#context.now },
      random: this.#random,
      aead,
      keyAgreement: nodeKeyAgreement,
      // Fixed, unjittered delays keep the stated liveness bound exact (docs/VERIFICATION.md).
      reconnectDelayMs: (attempt) => Math.min(RECONNECT_MAX_MS, RECONNECT_INITIAL_MS * 2 ** Math.min(attempt, 16)),
      beforeAction: () => this.#context.actionApplied('device'),
      onEvent: (event) => this.#onEvent(event),
    });
    // The device starts unpowered: the world powers it on (boot) when the simulation starts.
    this.loop.powerOff();
  }

  get core(): DeviceCore | undefined {
    return this.loop.core;
  }

  get up(): boolean {
    return this.loop.core !== undefined;
  }

  /** When the loop's next connection attempt is due. */
  get reconnectAt(): number | undefined {
    return this.#timers.at('retry');
  }

  /** Power-up: the loop mounts the keystore, starts a core from what it holds, and connects at its next turn. */
  boot(_now: number): void {
    this.bootAt = undefined;
    this.loop.powerOn();
  }

  /** Power loss: memory is gone; the hub is not told (its side stays half-open). */
  powerCut(now: number, why: string): void {
    if (!this.up) return;
    const link = this.link;
    this.link = undefined;
    this.#events = undefined;
    if (link !== undefined) link.deviceAttached = false;
    this.loop.powerOff();
    this.#timers.clearAll();
    this.store.powerLost();
    this.bootAt = now + DEVICE_BOOT_MS;
    this.#context.trace.log(() => `DEVICE POWER CUT (${why}); flash holds ${describeKeys(this.store.durable())}`);
  }

  /** The reconnect timer fired: the loop opens a connection, which the simulated network connects at once. */
  connect(now: number): void {
    this.#timers.fire('retry');
    const opening = this.#opening;
    this.#opening = undefined;
    if (opening === undefined || this.link !== opening.link) return;
    opening.events.onConnected();
    if (this.link === opening.link) this.#context.acceptAtHub(opening.link, now);
  }

  /** The transport reports the connection gone (RST or FIN received). */
  linkClosed(link: Link, _now: number): void {
    if (this.link !== link || !this.up) return;
    const events = this.#events;
    this.link = undefined;
    this.#events = undefined;
    link.deviceAttached = false;
    this.#context.trace.log(() => `device sees link ${link.id} closed`);
    events?.onClosed('link closed');
  }

  receive(bytes: Uint8Array, _now: number): void {
    if (this.up) this.#events?.onData(bytes);
  }

  tick(_now: number): void {
    this.#timers.fire('deadline');
  }

  /** Queues an app message; false when the core refuses it (bounded outbox full). */
  send(_now: number): boolean {
    if (!this.up) return false;
    const payload = this.#context.app.payload('device', this.incarnation, this.sentThisIncarnation + 1);
    const result = this.loop.send(payload);
    if (!result.ok) return false;
    this.sentThisIncarnation++;
    return true;
  }

  nextDeadline(): number | undefined {
    return this.#timers.at('deadline');
  }

  /** Everything this host, its loop and its core hold (for the state digest). */
  stateText(): string {
    const core = this.core;
    const coreState = core === undefined ? 'off' : `${JSON.stringify(core.snapshot())}|rej ${core.rejectedFrames}|deadline ${this.nextDeadline() ?? '-'}`;
    const interrupted = this.#interrupted === undefined ? '' : `${describeKeys(this.#interrupted.before)}>${describeKeys(this.#interrupted.after)}`;
    return `${coreState}|${this.loop.state}|link ${this.link?.id ?? '-'}|boot ${this.bootAt ?? '-'}|re ${this.reconnectAt ?? '-'}/${this.loop.reconnectAttempt}|inc ${this.incarnation}/${this.sentThisIncarnation}|${interrupted}|rng ${this.#random.state()}`;
  }

  // ---- The loop's bindings ----

  #open(events: DeviceTransportEvents): DeviceConnection {
    const now = this.#context.now;
    const link = this.#context.openLink(now);
    if (link === undefined) {
      this.#context.trace.log(() => 'device connect refused (hub down)');
      events.onClosed('refused: hub down');
      return { write: () => {}, close: () => {} };
    }
    this.link = link;
    this.#events = events;
    this.#opening = { link, events };
    this.#context.trace.log(() => `device connects: link ${link.id}`);
    return {
      write: (bytes) => this.#transmit(link, bytes),
      close: () => this.#closeLink(link),
    };
  }

  #transmit(link: Link, bytes: Uint8Array): void {
    if (this.link !== link) return;
    const out = this.#context.variant.interposeUp?.(bytes) ?? bytes;
    if (out.length === 0) return;
    this.#context.trace.log(() => `device → hub  ${this.#context.describeFrame(out)}`);
    link.enqueue('up', out, this.#context.now, this.#context.latency());
  }

  /** The loop closes the connection: a FIN, unless the device has just lost power (then nothing is sent). */
  #closeLink(link: Link): void {
    if (this.link !== link) return;
    this.#context.trace.log(() => `device closes link ${link.id}`);
    link.enqueue('up', new Uint8Array(0), this.#context.now, this.#context.latency(), 'core', true);
    link.deviceAttached = false;
    this.link = undefined;
    this.#events = undefined;
  }

  /** The device's storage as the loop sees it: the one KeyStorage interface over the simulation's store. */
  #storage(): KeyStorage {
    const host = this;
    return {
      mount(): MountResult {
        return { provisioned: true, deviceId: host.deviceId.slice(), keys: host.#mounted() };
      },
      get keys(): DeviceKeys {
        return host.store.durable();
      },
      get deviceId(): Uint8Array {
        return host.deviceId.slice();
      },
      format(): void {
        throw new Error('the simulation provisions its store itself');
      },
      storeFuture(id: number, key: Uint8Array, shares?: KeyShares): void {
        host.#persist(shares === undefined ? { kind: 'storeFuture', id, key } : { kind: 'storeFuture', id, key, shares });
      },
      promote(expectedId?: number): KeySlot {
        host.#persist({ kind: 'promote', id: expectedId ?? 0 });
        return host.store.durable().active;
      },
    };
  }

  #mounted(): DeviceKeys {
    const keys = this.store.boot();
    const interrupted = this.#interrupted;
    this.#interrupted = undefined;
    if (interrupted !== undefined && !keysEqual(keys, interrupted.before) && !keysEqual(keys, interrupted.after)) {
      this.#context.violation('K keystore before-or-after', `after a torn write the device booted with ${describeKeys(keys)}, expected ${describeKeys(interrupted.before)} or ${describeKeys(interrupted.after)}`);
    }
    return keys;
  }

  /** A keystore write; a torn write (armed by the fault plan) is a power cut in the middle of it. */
  #persist(op: DevicePersistOp): void {
    const before = copyKeys(this.store.durable());
    this.#context.trace.log(() => `device persists ${describePersistOp(op)}`);
    try {
      this.store.apply(op);
    } catch (error) {
      if (!(error instanceof PowerCut)) throw error;
      this.#interrupted = { before, after: keysAfter(before, op) };
      this.#context.noteFlashCut();
      this.powerCut(this.#context.now, `during ${describePersistOp(op)}`);
      return;
    }
    this.#context.afterDevicePersist();
  }

  #onEvent(event: DeviceLoopEvent): void {
    switch (event.type) {
      case 'booted':
        this.incarnation++;
        this.sentThisIncarnation = 0;
        this.#context.trace.log(() => `device boots (incarnation ${this.incarnation}) with ${describeKeys(event.keys)}`);
        return;
      case 'bootFailed':
        this.#context.violation('K keystore mounts', `the device does not boot: ${event.error.message}`);
        return;
      case 'storageFailed':
        throw new Error(`simulation: unexpected keystore failure: ${event.error.message}`);
      case 'connecting':
      case 'connected':
      case 'disconnected':
        return;
      default:
        this.#context.deviceEvent(event);
    }
  }
}

export { copyKeys };
