/**
 * The deterministic simulation: the real DeviceCore and HubCore, each in a
 * simulated host (device-host.ts, hub-host.ts), over a simulated network
 * (network.ts), with a simulated clock. Everything random comes from one
 * seed, so a seed and a fault plan reproduce a run exactly.
 *
 * The loop: pick the earliest pending event (ties broken by a fixed rank,
 * then by link id), ask the fault plan what strikes at this step, apply
 * it, run the event, then check every safety invariant (invariants.ts,
 * frame-audit.ts, app-ledger.ts) and the liveness monitor (liveness.ts).
 * A step is one event: a delivery, a timer, a database commit or
 * acknowledgement, a notice that a link died, a boot, a command.
 */
import { bytesEqual, toHex } from '../../modules/bytes';
import type { DeviceKeys, KeySlot } from '../../modules/platform/keys';
import type { Aead } from '../../modules/crypto/primitives';
import type { DeviceEvent } from '../../modules/device/actions';
import type { HubEvent } from '../../modules/hub/actions';
import { MessageType } from '../../modules/protocol/constants';
import { decodeHeader } from '../../modules/protocol/header';
import { nodeAead } from '../../hosts/node/crypto';
import { Adversary } from './adversary';
import { AppLedger } from './app-ledger';
import { CALM_ONE_WAY_MS, CHAOS_ONE_WAY_MAX_MS, CHAOS_ONE_WAY_MIN_MS, RESET_NOTICE_MS, SIM_EPOCH_MS } from './constants';
import { DeviceHost, describeKeys } from './device-host';
import type { DeviceStore } from './device-store';
import { keystoreStore } from './keystore-store';
import type { BeforeFault, FaultPlan, SimEvent, StepFaults, StepProfile } from './faults';
import { FrameAudit } from './frame-audit';
import { SimHubDatabase } from './hub-db';
import { HubHost } from './hub-host';
import { KeyInvariants, type KeyViews } from './invariants';
import { LivenessMonitor } from './liveness';
import { Link, type Direction } from './network';
import { Rng, fnv1a, fnv1aString } from './rng';
import { Trace } from './trace';
import { CORRECT, type Variant } from './variant';

export interface Driver {
  /** A command is due now. */
  ready(world: World): boolean;
  /** A command due later (a timed event), if any. */
  nextAt?(world: World): number | undefined;
  run(world: World, now: number): void;
  done(world: World): boolean;
  /** The driver's own state (for the state digest). */
  stateText(): string;
}

export type StoreFactory = (deviceId: Uint8Array, active: { id: number; key: Uint8Array }) => DeviceStore;

export interface WorldOptions {
  readonly seed: number;
  readonly driver: Driver;
  readonly store?: StoreFactory;
  readonly variant?: Variant;
  readonly plan?: FaultPlan;
  readonly trace?: boolean;
  readonly maxSteps?: number;
  /** Keep a profile of every step (the exhaustive enumerator needs it). */
  readonly profile?: boolean;
  /** Keep running after a violation (to collect them all); default: stop at the first. */
  readonly continueAfterViolation?: boolean;
  /**
   * Check key invariants on the running cores only, not on what storage
   * would restore, and skip liveness: shows that a broken variant really
   * loses sync after some crash, not only that it could (see invariants.ts).
   */
  readonly liveViewsOnly?: boolean;
}

export interface Violation {
  readonly invariant: string;
  readonly detail: string;
  readonly step: number;
  readonly atMs: number;
}

export type FaultKind =
  | 'link reset'
  | 'link silent cut'
  | 'link cut inside a frame'
  | 'delay'
  | 'device power cut'
  | 'device power cut mid-actions'
  | 'torn flash write'
  | 'hub crash'
  | 'hub silent crash'
  | 'hub crash mid-actions'
  | 'db write failure'
  | 'adversary replay'
  | 'adversary reflect'
  | 'adversary forge'
  | 'adversary flip'
  | 'adversary garbage';

const RANK: Record<SimEvent['kind'], number> = {
  command: 0,
  dbCommit: 1,
  dbAck: 2,
  hubRestart: 3,
  deviceBoot: 3,
  notice: 4,
  deliver: 5,
  deviceTimer: 7,
  hubTimer: 8,
  reconnect: 9,
  storeTimer: 10,
};

export class World {
  readonly seed: number;
  readonly trace: Trace;
  readonly rng: Rng;
  readonly variant: Variant;
  readonly driver: Driver;
  readonly device: DeviceHost;
  readonly hub: HubHost;
  readonly db = new SimHubDatabase();
  readonly audit: FrameAudit;
  /** The audited AEADs the cores use (a re-sealing interposer seals on the device's behalf with deviceAead). */
  readonly deviceAead: Aead;
  readonly hubAead: Aead;
  readonly keyInvariants = new KeyInvariants();
  readonly liveness: LivenessMonitor;
  readonly app: AppLedger;
  readonly adversary: Adversary;
  readonly initialKeyId = 1;
  readonly links = new Map<number, Link>();
  readonly violations: Violation[] = [];
  readonly faults = new Map<FaultKind, number>();
  readonly profiles: StepProfile[] = [];
  now = SIM_EPOCH_MS;
  step = 0;
  /** Random latency (random mode's chaos phases); calm latency otherwise. */
  chaos = false;
  /** Invariant evaluations made (each check of each pairing counts once). */
  checks = 0;
  /** Events of interest, for figures. */
  readonly counters = { rotationsConfirmed: 0, keysPromotedOnDevice: 0, framesRejected: 0, appDelivered: 0 };

  readonly #options: WorldOptions;
  readonly #notices: { at: number; link: Link; side: 'device' | 'hub' }[] = [];
  #linkCounter = 0;
  #stepFaults: StepFaults | undefined;
  #actionsThisStep = { device: 0, hub: 0 };
  #profile: StepProfile | undefined;
  #idleTimerSteps = 0;
  readonly #lastSealed = { device: 0, hub: 0 };
  #stopped = false;

  constructor(options: WorldOptions) {
    this.#options = options;
    this.seed = options.seed >>> 0;
    this.trace = new Trace(options.trace ?? false);
    this.rng = new Rng(this.seed, 1);
    this.variant = options.variant ?? CORRECT;
    this.driver = options.driver;
    this.liveness = new LivenessMonitor(this.now);
    this.app = new AppLedger((invariant, detail) => this.violation(invariant, detail));
    this.audit = new FrameAudit({
      deviceSession: () => this.device.link?.hubNonce,
      hubSessionOpen: (nonce) => [...this.hub.links.values()].some((l) => l.hubNonce === nonce),
      sealing: (side, keyId, key) => this.#checkSeal(side, keyId, key),
      violation: (invariant, detail) => this.violation(invariant, detail),
    });

    const setup = new Rng(this.seed, 2);
    const deviceId = new Uint8Array(8);
    setup.fill(deviceId);
    const key = new Uint8Array(64);
    setup.fill(key);
    const active = { id: this.initialKeyId, key };
    this.adversary = new Adversary(deviceId);
    const baseStore = (options.store ?? keystoreStore)(deviceId, { id: active.id, key: key.slice() });
    const store = this.variant.wrapDeviceStore?.(baseStore, this) ?? baseStore;
    this.db.insert(toHex(deviceId), { active: { id: active.id, key: key.slice() } });
    this.deviceAead = this.audit.wrap(nodeAead, 'device');
    this.hubAead = this.audit.wrap(nodeAead, 'hub');
    this.device = new DeviceHost(this, deviceId, store, this.deviceAead, this.seed);
    this.hub = new HubHost(this, this.db, toHex(deviceId), this.hubAead, this.seed);
    this.hub.boot(this.now);
    this.device.boot(this.now);
  }

  get deviceId(): string {
    return this.hub.deviceId;
  }

  // ---- Running ----

  /**
   * Runs until the driver is done, a violation (unless continuing), or
   * maxSteps. `afterStep` may end the run early by returning false.
   */
  run(afterStep?: () => boolean): void {
    const maxSteps = this.#options.maxSteps ?? 20_000;
    while (!this.#stopped) {
      if (this.driver.done(this)) return;
      if (this.step >= maxSteps) {
        this.violation('L3 no livelock', `scenario not done after ${maxSteps} steps`);
        return;
      }
      if (!this.stepOnce()) {
        this.violation('L3 no deadlock', 'nothing left to happen but the scenario is not done');
        return;
      }
      if (afterStep !== undefined && !afterStep()) return;
    }
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  /** One step; false when there is no event left. */
  stepOnce(): boolean {
    const event = this.#nextEvent();
    if (event === undefined) return false;
    this.now = Math.max(this.now, event.at);
    this.step++;
    this.trace.step = this.step;
    this.trace.now = this.now;
    this.#actionsThisStep = { device: 0, hub: 0 };
    this.#profile = this.#options.profile
      ? { step: this.step, event: event.kind, deviceInput: false, hubInput: false, deviceActions: 0, hubActions: 0, flashOps: [], delivery: undefined, digest: 0 }
      : undefined;
    const faults = this.#options.plan?.at(this.step, event);
    this.#stepFaults = faults;
    for (const fault of faults?.before ?? []) this.#applyBefore(fault);
    if (faults?.tornWrite !== undefined) this.device.store.armTornWrite(faults.tornWrite);
    this.#execute(event, faults);
    if (faults?.tornWrite !== undefined) this.device.store.disarm();
    this.#stepFaults = undefined;
    this.#afterStep(event);
    return true;
  }

  stop(): void {
    this.#stopped = true;
  }

  #nextEvent(): SimEvent | undefined {
    if (this.driver.ready(this)) return { kind: 'command', at: this.now };
    let best: SimEvent | undefined;
    const consider = (event: SimEvent): void => {
      if (best === undefined || event.at < best.at || (event.at === best.at && RANK[event.kind] < RANK[best.kind])) best = event;
    };
    const commandAt = this.driver.nextAt?.(this);
    if (commandAt !== undefined) consider({ kind: 'command', at: Math.max(this.now, commandAt) });
    this.db.writes.forEach((write, index) => {
      if (!write.commitDone) consider({ kind: 'dbCommit', at: Math.max(this.now, write.commitAt), index });
      if (write.ackAt !== undefined && !write.acked) consider({ kind: 'dbAck', at: Math.max(this.now, write.ackAt), index });
    });
    if (this.hub.restartAt !== undefined) consider({ kind: 'hubRestart', at: this.hub.restartAt });
    if (this.device.bootAt !== undefined) consider({ kind: 'deviceBoot', at: this.device.bootAt });
    for (const notice of this.#notices) consider({ kind: 'notice', at: notice.at, link: notice.link.id, side: notice.side });
    for (const link of this.links.values()) {
      for (const direction of ['up', 'down'] as const) {
        const head = link.head(direction);
        if (head !== undefined) consider({ kind: 'deliver', at: Math.max(this.now, head.at), link: link.id, direction });
      }
    }
    const deviceDeadline = this.device.nextDeadline();
    if (deviceDeadline !== undefined) consider({ kind: 'deviceTimer', at: Math.max(this.now, deviceDeadline) });
    const hubDeadline = this.hub.nextDeadline();
    if (hubDeadline !== undefined) consider({ kind: 'hubTimer', at: Math.max(this.now, hubDeadline) });
    if (this.device.reconnectAt !== undefined && this.device.up) consider({ kind: 'reconnect', at: Math.max(this.now, this.device.reconnectAt) });
    const storeDeadline = this.device.store.nextDeadline?.();
    if (storeDeadline !== undefined) consider({ kind: 'storeTimer', at: Math.max(this.now, storeDeadline) });
    return best;
  }

  #execute(event: SimEvent, faults: StepFaults | undefined): void {
    const profile = this.#profile;
    switch (event.kind) {
      case 'command':
        if (profile) profile.deviceInput = profile.hubInput = true;
        this.driver.run(this, this.now);
        return;
      case 'dbCommit': {
        const write = this.db.writes[event.index];
        if (write === undefined || !this.hub.up) return;
        if (profile) profile.hubInput = true;
        if (faults?.dbFailure !== undefined) {
          write.failure = faults.dbFailure;
          this.#countFault('db write failure', this.now);
        }
        this.hub.commit(write, this.now);
        return;
      }
      case 'dbAck': {
        const write = this.db.writes[event.index];
        if (write === undefined || !this.hub.up) return;
        if (profile) profile.hubInput = true;
        this.hub.acknowledge(write, this.now);
        return;
      }
      case 'hubRestart':
        if (profile) profile.hubInput = true;
        this.hub.boot(this.now);
        return;
      case 'deviceBoot':
        if (profile) profile.deviceInput = true;
        this.device.boot(this.now);
        return;
      case 'notice': {
        const index = this.#notices.findIndex((n) => n.link.id === event.link && n.side === event.side && n.at === event.at);
        const notice = index >= 0 ? this.#notices.splice(index, 1)[0] : undefined;
        if (notice === undefined) return;
        if (event.side === 'device') {
          if (profile) profile.deviceInput = this.device.link === notice.link;
          this.device.linkClosed(notice.link, this.now);
        } else {
          if (profile) profile.hubInput = notice.link.hubAttached;
          this.hub.linkClosed(notice.link, this.now);
        }
        return;
      }
      case 'deliver':
        this.#deliver(event.link, event.direction, faults);
        return;
      case 'deviceTimer':
        if (profile) profile.deviceInput = true;
        this.#guardTimer();
        this.device.tick(this.now);
        return;
      case 'hubTimer':
        if (profile) profile.hubInput = true;
        this.#guardTimer();
        this.hub.tick(this.now);
        return;
      case 'reconnect':
        if (profile) profile.deviceInput = profile.hubInput = true;
        this.device.connect(this.now);
        return;
      case 'storeTimer':
        this.device.store.tick?.(this.now);
        return;
    }
  }

  #deliver(linkId: number, direction: Direction, faults: StepFaults | undefined): void {
    const link = this.links.get(linkId);
    if (link === undefined || link.head(direction) === undefined) return;
    if (faults?.coalesce === true) this.#coalesce(link, direction);
    const chunk = link.head(direction)!;
    const cutAtByte = faults?.cutAtByte;
    const split = faults?.splitAtByte;
    if (split !== undefined && cutAtByte === undefined && !chunk.fin && split > 0 && split < chunk.bytes.length) {
      const whole = chunk.bytes;
      const delivered = direction === 'up' && link.hubAttached && this.hub.up ? this.hub.receive(link, whole.subarray(0, split), this.now) : true;
      if (!delivered) return;
      if (direction === 'down') this.#handOver(link, direction, whole.subarray(0, split));
      chunk.bytes = whole.subarray(split);
      return;
    }
    const profile = this.#profile;
    if (profile) {
      profile.delivery = { direction, length: chunk.bytes.length, frameType: chunk.bytes.length >= 4 ? chunk.bytes[3] : undefined, fin: chunk.fin };
      if (direction === 'up') profile.hubInput = link.hubAttached && this.hub.up;
      else profile.deviceInput = link.deviceAttached && this.device.link === link;
      profile.digest = fnv1a(chunk.bytes, profile.digest);
    }
    if (cutAtByte !== undefined) {
      const prefix = Math.min(cutAtByte, chunk.bytes.length);
      this.#countFault(prefix > 0 && prefix < chunk.bytes.length ? 'link cut inside a frame' : 'link reset', this.now + RESET_NOTICE_MS);
      this.trace.log(() => `LINK ${link.id} CUT after ${prefix} of ${chunk.bytes.length} bytes of a ${direction} ${this.describeFrame(chunk.bytes)}`);
      if (prefix > 0 && !chunk.fin) {
        link.queues[direction].shift();
        this.#handOver(link, direction, chunk.bytes.subarray(0, prefix));
      }
      this.resetLink(link, false);
      return;
    }
    if (chunk.fin) {
      link.queues[direction].shift();
      if (direction === 'up') this.hub.linkClosed(link, this.now);
      else this.device.linkClosed(link, this.now);
      return;
    }
    if (direction === 'up' && link.hubAttached && this.hub.up) {
      if (this.hub.receive(link, chunk.bytes, this.now)) link.queues.up.shift();
      return;
    }
    link.queues[direction].shift();
    this.#handOver(link, direction, chunk.bytes);
  }

  /** Joins the head chunk with the following data chunks that have already arrived. */
  #coalesce(link: Link, direction: Direction): void {
    const queue = link.queues[direction];
    if (queue[0]?.fin !== false) return;
    let count = 1;
    while (count < queue.length && !queue[count]!.fin && queue[count]!.at <= this.now) count++;
    if (count === 1) return;
    const parts = queue.splice(0, count);
    const total = parts.reduce((n, c) => n + c.bytes.length, 0);
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const part of parts) {
      bytes.set(part.bytes, at);
      at += part.bytes.length;
    }
    queue.unshift({ ...parts[0]!, bytes });
  }

  #handOver(link: Link, direction: Direction, bytes: Uint8Array): void {
    if (direction === 'up') {
      if (link.hubAttached && this.hub.up) this.hub.receive(link, bytes, this.now);
    } else if (link.deviceAttached && this.device.link === link) {
      this.device.receive(bytes, this.now);
    }
  }

  /** A timer that keeps firing at the same instant without effect is an engine bug. */
  #guardTimer(): void {
    this.#idleTimerSteps++;
    if (this.#idleTimerSteps > 1_000) throw new Error('engine: a timer fires forever at the same instant');
  }

  // ---- Faults ----

  #applyBefore(fault: BeforeFault): void {
    switch (fault.kind) {
      case 'devicePowerCut':
        if (!this.device.up) return;
        this.device.powerCut(this.now, 'injected');
        this.#countFault('device power cut', this.device.bootAt ?? this.now);
        return;
      case 'hubCrash':
        if (!this.hub.up) return;
        this.hub.crash(this.now, fault.silent, 'injected');
        this.#countFault(fault.silent ? 'hub silent crash' : 'hub crash', this.hub.restartAt ?? this.now);
        return;
      case 'reset': {
        const link = this.device.link;
        if (link === undefined || link.dead) return;
        this.trace.log(() => `LINK ${link.id} ${fault.silent ? 'SILENTLY CUT' : 'RESET'}`);
        this.resetLink(link, fault.silent);
        this.#countFault(fault.silent ? 'link silent cut' : 'link reset', this.now + RESET_NOTICE_MS);
        return;
      }
      case 'delay': {
        const link = this.device.link;
        if (link === undefined || link.dead) return;
        link.delay(fault.direction, fault.ms);
        this.trace.log(() => `LINK ${link.id} ${fault.direction} DELAYED by ${fault.ms} ms`);
        this.#countFault('delay', link.lastArrival[fault.direction]);
        return;
      }
      case 'adversary': {
        const link = this.device.link;
        if (link === undefined || link.dead) return;
        const keyIds = this.hub.up ? this.hub.core!.acceptedKeyIds(this.deviceId) : [this.initialKeyId];
        const what = this.adversary.act(fault.move, link, this.now, this.latency(), this.rng, keyIds);
        if (what === undefined) return;
        this.trace.log(() => `ADVERSARY ${what}`);
        this.#countFault(`adversary ${fault.move}`, Math.max(link.lastArrival.up, link.lastArrival.down));
        return;
      }
    }
  }

  /** Kills a link; unless silent, each end still attached hears of it after RESET_NOTICE_MS. */
  resetLink(link: Link, silent: boolean): void {
    link.kill();
    if (silent) return;
    if (link.deviceAttached) this.notice('device', link, this.now + RESET_NOTICE_MS);
    if (link.hubAttached) this.notice('hub', link, this.now + RESET_NOTICE_MS);
  }

  #countFault(kind: FaultKind, calmAt: number): void {
    this.faults.set(kind, (this.faults.get(kind) ?? 0) + 1);
    this.liveness.fault(calmAt);
  }

  /** Called by the hosts before each action they carry out (crash-after-action faults). */
  actionApplied(side: 'device' | 'hub'): void {
    const done = this.#actionsThisStep[side]++;
    if (this.#profile) {
      if (side === 'device') this.#profile.deviceActions++;
      else this.#profile.hubActions++;
    }
    const faults = this.#stepFaults;
    if (faults === undefined || done === 0) return;
    if (side === 'device' && faults.deviceCrashAfterAction === done && this.device.up) {
      this.device.powerCut(this.now, `after ${done} action(s) of this step`);
      this.#countFault('device power cut mid-actions', this.device.bootAt ?? this.now);
    }
    if (side === 'hub' && faults.hubCrashAfterAction === done && this.hub.up) {
      this.hub.crash(this.now, false, `after ${done} action(s) of this step`);
      this.#countFault('hub crash mid-actions', this.hub.restartAt ?? this.now);
    }
  }

  noteFlashCut(): void {
    this.#countFault('torn flash write', this.now);
  }

  afterDevicePersist(): void {
    if (this.#profile) this.#profile.flashOps.push(...this.device.store.lastOps);
  }

  // ---- Services for the hosts ----

  openLink(now: number): Link | undefined {
    void now;
    if (!this.hub.up) return undefined;
    const link = new Link(++this.#linkCounter);
    link.observer = (direction, bytes) => this.adversary.record(link, direction, bytes);
    this.links.set(link.id, link);
    return link;
  }

  notice(side: 'device' | 'hub', link: Link, at: number): void {
    this.#notices.push({ at, link, side });
  }

  latency(): number {
    return this.chaos ? this.rng.between(CHAOS_ONE_WAY_MIN_MS, CHAOS_ONE_WAY_MAX_MS) : CALM_ONE_WAY_MS;
  }

  deviceEvent(event: DeviceEvent): void {
    switch (event.type) {
      case 'data':
        this.counters.appDelivered++;
        this.app.deliveredTo('device', this.device.incarnation, event.payload);
        break;
      case 'keyPromoted':
        this.counters.keysPromotedOnDevice++;
        break;
      case 'rejected':
        this.counters.framesRejected++;
        break;
      default:
        break;
    }
    this.trace.log(() => `device event ${event.type}${describeEvent(event)}`);
  }

  hubEvent(event: HubEvent): void {
    switch (event.type) {
      case 'data':
        this.counters.appDelivered++;
        this.app.deliveredTo('hub', this.hub.incarnation, event.payload);
        break;
      case 'keyConfirmed':
        this.counters.rotationsConfirmed++;
        break;
      case 'rejected':
        this.counters.framesRejected++;
        break;
      default:
        break;
    }
    this.trace.log(() => `hub event ${event.type}${describeEvent(event)}`);
  }

  violation(invariant: string, detail: string): void {
    this.violations.push({ invariant, detail, step: this.step, atMs: this.now - SIM_EPOCH_MS });
    this.trace.log(() => `VIOLATION ${invariant}: ${detail}`);
    if (!this.#options.continueAfterViolation) this.#stopped = true;
  }

  // ---- Observation ----

  /**
   * S1/S2 on the frame being sealed: a device frame must be under a key the
   * hub accepts (live and durable), a hub frame under a key the device holds
   * (live and durable), with the same bytes; and S4: sealing key ids never
   * go back (a frame sealed under an older key after a newer one may reach
   * a hub that has retired the older key meanwhile).
   */
  #checkSeal(side: 'device' | 'hub', keyId: number, key: Uint8Array): void {
    this.checks += 2;
    const liveOnly = this.#options.liveViewsOnly === true;
    // S4 for frames: a side never seals under a key older than one it sealed under before (rules D3, H2).
    const last = this.#lastSealed[side];
    if (keyId < last && !liveOnly) this.violation('S4 ids never decrease', `${side} sealed a frame under key ${keyId} after one under key ${last}`);
    else this.#lastSealed[side] = Math.max(last, keyId);
    if (side === 'device') {
      const views: [string, { active: KeySlot; pending?: KeySlot } | undefined][] = [['live', this.hub.core?.deviceKeys(this.deviceId)], ['durable', liveOnly ? undefined : this.db.row(this.deviceId)]];
      for (const [name, h] of views) {
        if (h === undefined) continue;
        const slot = h.active.id === keyId ? h.active : h.pending?.id === keyId ? h.pending : undefined;
        if (slot === undefined) this.violation('S1 hub accepts the device key', `device sealed a frame under key ${keyId}; hub (${name}) accepts ${h.active.id}${h.pending ? `,${h.pending.id}` : ''}`);
        else if (!bytesEqual(slot.key, key)) this.violation('S5 one key per id', `device sealed under key id ${keyId}, which names another key at the hub (${name})`);
      }
      return;
    }
    const views: [string, DeviceKeys | undefined][] = [['live', this.device.core?.keys], ['durable', liveOnly ? undefined : this.device.store.durable()]];
    for (const [name, d] of views) {
      if (d === undefined) continue;
      const slot = d.active.id === keyId ? d.active : d.future?.id === keyId ? d.future : undefined;
      if (slot === undefined) this.violation('S2 device holds the hub key', `hub sealed a frame under key ${keyId}; device (${name}) holds ${d.active.id}${d.future ? `,${d.future.id}` : ''}`);
      else if (!bytesEqual(slot.key, key)) this.violation('S5 one key per id', `hub sealed under key id ${keyId}, which names another key at the device (${name})`);
    }
  }

  keyViews(): KeyViews {
    const hubLive = this.hub.core?.deviceKeys(this.deviceId);
    return {
      deviceLive: this.device.core?.keys,
      deviceDurable: this.device.store.durable(),
      hubLive,
      hubDurable: this.db.row(this.deviceId),
    };
  }

  /** One shared active key, no future/pending, nothing persisting, outboxes empty, session up on a live link. */
  synced(views?: KeyViews): boolean {
    const device = this.device.core;
    const hub = this.hub.core;
    const link = this.device.link;
    if (device === undefined || hub === undefined || link === undefined || link.dead || !link.hubAttached) return false;
    if (device.session !== 'established' || device.persisting !== undefined || device.outboxLength > 0) return false;
    if (this.db.writes.length > 0) return false;
    const state = hub.deviceState(this.deviceId);
    if (state.pendingKeyId !== undefined || state.persisting || !state.connected || state.outboxLength > 0) return false;
    const v = views ?? this.keyViews();
    const d = v.deviceLive!;
    const h = v.hubLive!;
    if (d.future !== undefined || v.deviceDurable.future !== undefined || v.hubDurable.pending !== undefined) return false;
    if (d.active.id !== h.active.id || v.deviceDurable.active.id !== h.active.id || v.hubDurable.active.id !== h.active.id) return false;
    for (let i = 0; i < d.active.key.length; i++) if (d.active.key[i] !== h.active.key[i]) return false;
    return true;
  }

  #afterStep(event: SimEvent): void {
    if (event.kind !== 'deviceTimer' && event.kind !== 'hubTimer') this.#idleTimerSteps = 0;
    for (const [id, link] of this.links) {
      const idle = link.queues.up.length === 0 && link.queues.down.length === 0;
      if ((link.dead || (!link.deviceAttached && !link.hubAttached)) && idle && !this.#notices.some((n) => n.link === link)) this.links.delete(id);
    }
    const views = this.keyViews();
    const before = this.keyInvariants.checks;
    this.keyInvariants.check(views, (invariant, detail) => this.violation(invariant, detail), this.#options.liveViewsOnly === true);
    this.checks += this.keyInvariants.checks - before;
    const synced = this.synced(views);
    const livenessBefore = this.liveness.checks;
    this.liveness.afterStep(this.now, synced, (invariant, detail) => {
      if (this.#options.liveViewsOnly !== true) this.violation(invariant, detail);
    });
    this.checks += this.liveness.checks - livenessBefore;
    this.checks += 3; // S7/S8/S9 are checked as frames and data arrive; count them once per step
    const profile = this.#profile;
    if (profile !== undefined) {
      let digest = fnv1aString(`${event.kind}@${this.now - SIM_EPOCH_MS}`, profile.digest);
      digest = fnv1aString(
        `${describeKeys(views.deviceDurable)}|${views.deviceLive ? describeKeys(views.deviceLive) : '-'}|${views.hubLive?.active.id ?? '-'}/${views.hubLive?.pending?.id ?? '-'}|${this.db.digest()}|${this.device.core?.session ?? 'off'}|${this.device.store.layoutDigest()}|${this.violations.length}`,
        digest,
      );
      profile.digest = digest;
      this.profiles.push(profile);
    }
  }

  /**
   * A digest of the complete simulation state: both cores (their snapshot()
   * of every protocol field), both hosts, the flash image, the database,
   * every link and byte in flight, pending notices, every random generator,
   * the driver, and the checkers' own memory. Two runs with equal digests
   * at the same step continue identically (the simulation is deterministic),
   * which is what lets the exhaustive mode merge equivalent schedules.
   */
  stateDigest(): string {
    const parts = [
      `${this.step}@${this.now}|links ${this.#linkCounter}`,
      this.device.stateText(),
      this.hub.stateText(),
      this.device.store.layoutDigest(),
      this.db.stateText(),
      [...this.links.values()].map((l) => l.stateText()).join('+'),
      this.#notices.map((n) => `${n.at}:${n.link.id}:${n.side}`).join(','),
      this.rng.state(),
      this.driver.stateText(),
      this.liveness.stateText(),
      this.keyInvariants.stateText(),
      this.app.stateText(),
      this.audit.stateText(),
      `${this.#lastSealed.device}/${this.#lastSealed.hub}`,
      `${this.chaos ? 1 : 0}|${this.counters.framesRejected}|${this.violations.length}`,
    ];
    const text = parts.join('\n');
    return `${fnv1aString(text).toString(16)}${fnv1aString(text, 0x1234567).toString(16)}:${text.length}`;
  }

  describeFrame(bytes: Uint8Array): string {
    if (bytes.length < 38) return `${bytes.length} bytes`;
    try {
      const header = decodeHeader(bytes.subarray(2));
      const name = TYPE_NAMES.get(header.type) ?? `0x${header.type.toString(16)}`;
      return header.type === MessageType.CHALLENGE ? `CHALLENGE (${bytes.length} B)` : `${name} key ${header.keyId} seq ${header.sequence} (${bytes.length} B)`;
    } catch {
      return `${bytes.length} unparseable bytes`;
    }
  }
}

const TYPE_NAMES = new Map<number, string>(Object.entries(MessageType).map(([name, value]) => [value as number, name]));

function describeEvent(event: DeviceEvent | HubEvent): string {
  switch (event.type) {
    case 'keyStored':
    case 'keyPromoted':
    case 'keyOffered':
    case 'keyConfirmed':
    case 'rekeyRefused':
      return ` ${event.id}`;
    case 'rejected':
      return `: ${event.error.message}`;
    case 'established':
      return ` under key ${event.keyId}`;
    case 'deviceConnected':
      return ` on link ${event.connection} (key ${event.keyId})`;
    default:
      return '';
  }
}
