/**
 * The simulated device: the real DeviceCore driven the way the firmware's
 * host drives it (tests/support/pair.ts, generalized): a transport that can
 * fail, a synchronous keystore write for every persist action, reconnect
 * with exponential backoff, and power cuts at any point: between steps,
 * between two actions of one step, or inside a flash operation (torn at any
 * byte). After a power cut the device boots from flash alone.
 */
import { toHex } from '../../modules/bytes';
import type { Aead } from '../../modules/crypto/primitives';
import { DeviceCore, type DeviceAction } from '../../modules/device/device';
import type { DevicePersistOp } from '../../modules/device/actions';
import { PowerCut } from '../../modules/flash/nor-flash';
import type { DeviceKeys } from '../../modules/platform/keys';
import { OUTBOX_MESSAGES } from '../../modules/protocol/constants';
import { DEVICE_BOOT_MS, RECONNECT_INITIAL_MS, RECONNECT_MAX_MS } from './constants';
import { copyKeys, keysAfter, keysEqual, type DeviceStore } from './device-store';
import type { Link } from './network';
import { Rng } from './rng';
import type { World } from './world';

export class DeviceHost {
  readonly #world: World;
  readonly deviceId: Uint8Array;
  readonly deviceIdHex: string;
  readonly store: DeviceStore;
  readonly #aead: Aead;
  readonly #random: Rng;
  core: DeviceCore | undefined;
  link: Link | undefined;
  bootAt: number | undefined;
  reconnectAt: number | undefined;
  #reconnectAttempt = 0;
  /** Boots so far; app payloads and receiver memory are per incarnation. */
  incarnation = 0;
  /** App messages this incarnation has queued (their counters run 1, 2, …). */
  sentThisIncarnation = 0;
  /** The keys before and after the persist a power cut interrupted (keystore before-or-after check). */
  #interrupted: { before: DeviceKeys; after: DeviceKeys } | undefined;

  constructor(world: World, deviceId: Uint8Array, store: DeviceStore, aead: Aead, seed: number) {
    this.#world = world;
    this.deviceId = deviceId.slice();
    this.deviceIdHex = toHex(deviceId);
    this.store = store;
    this.#aead = aead;
    this.#random = new Rng(seed, 11);
  }

  get up(): boolean {
    return this.core !== undefined;
  }

  /** Power-up: mount the keystore and start a core from what it holds. */
  boot(now: number): void {
    const keys = this.store.boot();
    const interrupted = this.#interrupted;
    this.#interrupted = undefined;
    if (interrupted !== undefined && !keysEqual(keys, interrupted.before) && !keysEqual(keys, interrupted.after)) {
      this.#world.violation('K keystore before-or-after', `after a torn write the device booted with ${describeKeys(keys)}, expected ${describeKeys(interrupted.before)} or ${describeKeys(interrupted.after)}`);
    }
    this.core = new DeviceCore({ deviceId: this.deviceId, keys, aead: this.#aead, random: this.#random });
    this.incarnation++;
    this.sentThisIncarnation = 0;
    this.bootAt = undefined;
    this.#reconnectAttempt = 0;
    this.reconnectAt = now;
    this.#world.trace.log(() => `device boots (incarnation ${this.incarnation}) with ${describeKeys(keys)}`);
  }

  /** Power loss: memory is gone; the hub is not told (its side stays half-open). */
  powerCut(now: number, why: string): void {
    if (this.core === undefined) return;
    this.core = undefined;
    this.store.powerLost();
    if (this.link !== undefined) {
      this.link.deviceAttached = false;
      this.link = undefined;
    }
    this.reconnectAt = undefined;
    this.bootAt = now + DEVICE_BOOT_MS;
    this.#world.trace.log(() => `DEVICE POWER CUT (${why}); flash holds ${describeKeys(this.store.durable())}`);
  }

  /** The reconnect timer fired. */
  connect(now: number): void {
    const core = this.core;
    if (core === undefined || this.link !== undefined) return;
    this.reconnectAt = undefined;
    const link = this.#world.openLink(now);
    if (link === undefined) {
      this.#world.trace.log(() => 'device connect refused (hub down)');
      this.#scheduleReconnect(now);
      return;
    }
    this.link = link;
    this.#world.trace.log(() => `device connects: link ${link.id}`);
    this.apply(core.connected(now), now);
    if (this.link === link) this.#world.hub.accept(link, now);
  }

  /** The transport reports the connection gone (RST or FIN received). */
  linkClosed(link: Link, now: number): void {
    if (this.link !== link || this.core === undefined) return;
    this.link = undefined;
    link.deviceAttached = false;
    this.#world.trace.log(() => `device sees link ${link.id} closed`);
    this.apply(this.core.disconnected(now), now);
    this.#scheduleReconnect(now);
  }

  receive(bytes: Uint8Array, now: number): void {
    const core = this.core;
    if (core === undefined) return;
    this.apply(core.receive(bytes, now), now);
  }

  tick(now: number): void {
    if (this.core !== undefined) this.apply(this.core.tick(now), now);
  }

  /** Queues an app message; false when the bounded outbox is full. */
  send(now: number): boolean {
    const core = this.core;
    if (core === undefined || core.outboxLength >= OUTBOX_MESSAGES) return false;
    const payload = this.#world.app.payload('device', this.incarnation, this.sentThisIncarnation + 1);
    this.sentThisIncarnation++;
    this.apply(core.send(payload, now), now);
    return true;
  }

  nextDeadline(): number | undefined {
    return this.core?.nextDeadline();
  }

  /** Everything this host and its core hold (for the state digest). */
  stateText(): string {
    const core = this.core;
    const coreState = core === undefined ? 'off' : `${JSON.stringify(core.snapshot())}|rej ${core.rejectedFrames}|deadline ${core.nextDeadline() ?? '-'}`;
    const interrupted = this.#interrupted === undefined ? '' : `${describeKeys(this.#interrupted.before)}>${describeKeys(this.#interrupted.after)}`;
    return `${coreState}|link ${this.link?.id ?? '-'}|boot ${this.bootAt ?? '-'}|re ${this.reconnectAt ?? '-'}/${this.#reconnectAttempt}|inc ${this.incarnation}/${this.sentThisIncarnation}|${interrupted}|rng ${this.#random.state()}`;
  }

  /** Carries out the core's actions in order; stops if the power fails part-way. */
  apply(actions: DeviceAction[], now: number): void {
    const core = this.core;
    for (const action of actions) {
      if (this.core !== core || core === undefined) return;
      this.#world.actionApplied('device');
      if (this.core !== core) return;
      switch (action.type) {
        case 'transmit':
          this.#transmit(action.bytes, now);
          break;
        case 'close': {
          const link = this.link;
          this.#world.trace.log(() => `device closes link ${link?.id ?? '-'}: ${action.error.message}`);
          if (link !== undefined) {
            link.enqueue('up', new Uint8Array(0), now, this.#world.latency(), 'core', true);
            link.deviceAttached = false;
            this.link = undefined;
          }
          core.disconnected(now);
          this.#scheduleReconnect(now);
          break;
        }
        case 'persist':
          this.#persist(core, action.op, now);
          break;
        case 'event':
          this.#world.deviceEvent(action.event);
          if (action.event.type === 'established') this.#reconnectAttempt = 0;
          break;
      }
    }
  }

  #transmit(bytes: Uint8Array, now: number): void {
    const link = this.link;
    if (link === undefined) return;
    const out = this.#world.variant.interposeUp?.(bytes, this.#world) ?? bytes;
    if (out.length === 0) return;
    this.#world.trace.log(() => `device → hub  ${this.#world.describeFrame(out)}`);
    link.enqueue('up', out, now, this.#world.latency());
  }

  #persist(core: DeviceCore, op: DevicePersistOp, now: number): void {
    const before = copyKeys(this.store.durable());
    this.#world.trace.log(() => `device persists ${op.kind} ${op.id}`);
    try {
      this.store.apply(op);
    } catch (error) {
      if (!(error instanceof PowerCut)) throw error;
      this.#interrupted = { before, after: keysAfter(before, op) };
      this.#world.noteFlashCut();
      this.powerCut(now, `during ${op.kind} ${op.id}`);
      return;
    }
    this.#world.afterDevicePersist();
    if (this.core !== core) return;
    this.apply(core.persisted(now), now);
  }

  #scheduleReconnect(now: number): void {
    const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_INITIAL_MS * 2 ** this.#reconnectAttempt);
    this.#reconnectAttempt = Math.min(this.#reconnectAttempt + 1, 16);
    this.reconnectAt = now + delay;
  }
}

export function describeKeys(keys: DeviceKeys): string {
  const short = (key: Uint8Array) => toHex(key.subarray(0, 3));
  return `active ${keys.active.id}:${short(keys.active.key)}${keys.future ? `, future ${keys.future.id}:${short(keys.future.key)}` : ''}`;
}

export { copyKeys };
