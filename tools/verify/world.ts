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
 *
 * With `instances: 2` (docs/VERIFICATION.md §5a) two hub hosts, each with
 * its own HubCore and cache, share one database that fences as the
 * PostgreSQL store does (hub-db.ts); each connection the device opens goes
 * to one instance (round robin by default; the fault plan may choose the
 * other), an instance may be paused and resumed, and each crashes and
 * restarts on its own.
 */
import { toHex } from '../../modules/bytes';
import { RecoveryStatus } from '../../modules/protocol/constants';
import type { Aead } from '../../modules/crypto/primitives';
import type { DeviceEvent } from '../../modules/device/actions';
import type { HubEvent, HubPersistOp } from '../../modules/hub/actions';
import { nodeAead } from '../../hosts/node/crypto';
import { nodeKeyAgreement } from '../../hosts/node/key-agreement';
import type { RecoveryCredential, StaticKeyPair } from '../../modules/crypto/recovery';
import { Adversary } from './adversary';
import { AppLedger } from './app-ledger';
import { CALM_ONE_WAY_MS, CHAOS_ONE_WAY_MAX_MS, CHAOS_ONE_WAY_MIN_MS, RESET_NOTICE_MS, SIM_EPOCH_MS } from './constants';
import { describeEvent, describeFrame } from './describe';
import { DeviceHost } from './device-host';
import { describeKeys, type RekeyMode } from '../../modules/platform/keys';
import type { DeviceStore } from './device-store';
import type { FaultPlan, SimEvent, StepFaults, StepProfile } from './faults';
import { FrameAudit } from './frame-audit';
import { SimHubDatabase } from './hub-db';
import { HubHost, type Incarnations } from './hub-host';
import { KeyInvariants, type KeyViews } from './invariants';
import { keystoreStore } from './keystore-store';
import { LivenessMonitor } from './liveness';
import { Link } from './network';
import { Rng, fnv1a, fnv1aString } from './rng';
import { applyBeforeFault } from './fault-apply';
import { deliver } from './delivery';
import { nextEvent } from './scheduler';
import { RecoveryChecks } from './recovery-check';
import { SealChecker } from './seal-check';
import { inSync, keyViews } from './sync';
import { Trace } from './trace';
import type { DeviceHostContext, Driver, FaultKind, HubHostContext, Notice, SimWorld, Violation } from './sim-types';
import { CORRECT, type Variant } from './variant';

export type { Driver, FaultKind, Violation } from './sim-types';

export type StoreFactory = (deviceId: Uint8Array, active: { id: number; key: Uint8Array }, mode: RekeyMode, credential?: RecoveryCredential) => DeviceStore;

/** The recovery credentials provisioned once (docs/PROTOCOL.md §12.6): the device's static pair and the hub's, with its hub static id. */
export interface RecoveryKeys {
  readonly device: StaticKeyPair;
  readonly hub: StaticKeyPair & { readonly id: number };
}

/** The hub static id the simulated devices are provisioned with. */
export const SIM_HUB_STATIC_ID = 1;

export interface WorldOptions {
  readonly seed: number;
  readonly driver: Driver;
  readonly store?: StoreFactory;
  /** The device's rekey mode at provisioning, on both sides (docs/PROTOCOL.md §11); default classic. */
  readonly mode?: RekeyMode;
  readonly variant?: Variant;
  readonly plan?: FaultPlan;
  readonly trace?: boolean;
  readonly maxSteps?: number;
  /** Keep a profile of every step (the exhaustive enumerator needs it). */
  readonly profile?: boolean;
  /** Hub instances sharing the database (docs/VERIFICATION.md §5a); default 1 (the variant's, if it says). */
  readonly instances?: 1 | 2;
  /**
   * Instances: the device's app data is held to the one-hub promise (at most
   * once per device incarnation and hub incarnation) unless this is false,
   * which resets the ledger's memory when data comes from another instance
   * run (the narrower view needed before finding F3 was fixed,
   * docs/VERIFICATION.md §6).
   */
  readonly strictDeviceLedger?: boolean;
  /** Keep running after a violation (to collect them all); default: stop at the first. */
  readonly continueAfterViolation?: boolean;
  /**
   * Check key invariants on the running cores only, not on what storage
   * would restore, and skip liveness: shows that a broken variant really
   * loses sync after some crash, not only that it could (see invariants.ts).
   */
  readonly liveViewsOnly?: boolean;
  /**
   * Rollback faults may follow (docs/VERIFICATION.md §11): the state digest
   * then covers the recorded hub snapshots and device images too, since the
   * faults still possible depend on them.
   */
  readonly rollbacks?: boolean;
  /**
   * Recovery after a rollback (docs/PROTOCOL.md §12): both sides hold their
   * static keys, and the hub answers recovery requests with the `auto`
   * policy and a per-device limit (hub-host.ts). Default on; off, a
   * rollback that loses sync is never recovered from (L1 reports it).
   */
  readonly recovery?: boolean;
}

export class World implements SimWorld {
  readonly seed: number;
  readonly trace: Trace;
  readonly rng: Rng;
  readonly variant: Variant;
  readonly driver: Driver;
  readonly device: DeviceHost;
  readonly hubs: readonly HubHost[];
  readonly db: SimHubDatabase;
  readonly audit: FrameAudit;
  /** The audited AEADs the cores use (a re-sealing interposer seals on the device's behalf with deviceAead). */
  readonly deviceAead: Aead;
  readonly hubAead: Aead;
  keyInvariants: KeyInvariants;
  readonly seals = new SealChecker();
  readonly recoveryChecks = new RecoveryChecks();
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
  /** Rollback faults that struck, by side. */
  readonly rollbacks = { device: 0, hub: 0, both: 0 };
  /** The static keys of both sides (docs/PROTOCOL.md §12.6); the device's credential is in its provisioning image. */
  readonly recoveryKeys: RecoveryKeys;
  /** Whether the hub answers recovery requests (WorldOptions.recovery). */
  readonly recovery: boolean;
  /** Every recovered key the hub core decided (id → keys, R1 on the device) and whether a hub restore struck since the last RECOVER_RESULT ACCEPTED (R2). */
  readonly hubRecovered = new Map<number, Uint8Array[]>();
  hubRestoredSinceResult = false;
  /** The recovered keys the device stored, by id (R2: it seals under one only once it is durable). */
  readonly deviceRecovered = new Map<number, Uint8Array>();
  /** The hub policy's decisions, by status name (figures; RATE_LIMITED must not occur within the stated bound). */
  readonly recoveryDecisions = new Map<string, number>();

  readonly #options: WorldOptions;
  readonly #notices: Notice[] = [];
  #linkCounter = 0;
  /** Hub instances: the balancer's round robin (connections opened). */
  #connections = 0;
  /** Instances: the sender incarnation of the last hub message the device delivered, and how many times it changed (finding F3). */
  #deviceDataFrom = { sender: -1, incarnation: -1, stretch: 0 };
  /** The hub instance whose core is sealing right now (its audited AEAD says so). */
  #sealer: number | undefined;
  #stepFaults: StepFaults | undefined;
  #actionsThisStep = { device: 0, hub: 0 };
  #profile: StepProfile | undefined;

  #idleTimerSteps = 0;
  /** The double-rollback epoch (KeyInvariants.doubleRollbacks) each device image was taken in. */
  readonly #imageEpochs: number[] = [];
  #stopped = false;

  constructor(options: WorldOptions) {
    this.#options = options;
    this.seed = options.seed >>> 0;
    this.trace = new Trace(options.trace ?? false);
    this.rng = new Rng(this.seed, 1);
    this.variant = options.variant ?? CORRECT;
    this.driver = options.driver;
    const instances = options.instances ?? this.variant.instances ?? 1;
    this.db = new SimHubDatabase(instances === 1 ? 'single' : this.variant.unfenced === true ? 'unfenced' : 'fenced');
    this.liveness = new LivenessMonitor(this.now);
    this.app = new AppLedger((invariant, detail) => this.violation(invariant, detail));
    this.audit = new FrameAudit({
      deviceSession: () => this.device.link?.hubNonce,
      hubSessionOpen: (nonce) => this.hubs.some((hub) => [...hub.links.values()].some((l) => l.hubNonce === nonce)),
      sealing: (side, keyId, key) => {
        // An instance that does not hold the lease seals only on a connection the device has left (docs/VERIFICATION.md §5a): S8 covers those frames.
        if (side === 'hub' && this.#sealer !== undefined && !this.hubs[this.#sealer]!.current) return;
        if (side === 'device') this.recoveryChecks.deviceSeals(this, keyId, key);
        this.seals.check(this, side, keyId, key, this.#options.liveViewsOnly === true, (i, d) => this.violation(i, d));
      },
      violation: (invariant, detail) => this.violation(invariant, detail),
    });

    const setup = new Rng(this.seed, 2);
    const deviceId = new Uint8Array(8);
    setup.fill(deviceId);
    const key = new Uint8Array(64);
    setup.fill(key);
    const active = { id: this.initialKeyId, key };
    this.adversary = new Adversary(deviceId);
    this.keyInvariants = new KeyInvariants(toHex(deviceId));
    const mode = options.mode ?? this.variant.mode ?? 'classic';
    // The static keys come from a generator of their own, so every other draw is as it was before recovery existed.
    const statics = new Rng(this.seed, 4);
    const staticPair = (): StaticKeyPair => {
      const privateKey = new Uint8Array(32);
      statics.fill(privateKey);
      return { privateKey, publicKey: nodeKeyAgreement.x25519PublicKey(privateKey) };
    };
    this.recoveryKeys = { device: staticPair(), hub: { id: SIM_HUB_STATIC_ID, ...staticPair() } };
    this.recovery = options.recovery !== false;
    const credential: RecoveryCredential = {
      device: { privateKey: this.recoveryKeys.device.privateKey.slice(), publicKey: this.recoveryKeys.device.publicKey.slice() },
      hubStaticId: this.recoveryKeys.hub.id,
      hubPublicKey: this.recoveryKeys.hub.publicKey.slice(),
    };
    // Recovery off is a 1.0 deployment: no credential in the image, no S_d in the row (the flash layout of 1.0).
    const baseStore = (options.store ?? keystoreStore)(deviceId, { id: active.id, key: key.slice() }, mode, this.recovery ? credential : undefined);
    const store = this.variant.wrapDeviceStore?.(baseStore, this) ?? baseStore;
    this.db.insert(toHex(deviceId), { mode, active: { id: active.id, key: key.slice() }, ...(this.recovery ? { devicePublicKey: this.recoveryKeys.device.publicKey.slice(), hubStaticId: this.recoveryKeys.hub.id } : {}) });
    this.deviceAead = this.audit.wrap(nodeAead, 'device');
    this.hubAead = this.audit.wrap(nodeAead, 'hub');
    this.device = new DeviceHost(this.#deviceContext(), deviceId, store, this.deviceAead, this.seed);
    let incarnation = 0;
    const incarnations: Incarnations = { next: () => ++incarnation };
    this.hubs = Array.from({ length: instances }, (_, index) => {
      const aead = instances === 1 ? this.hubAead : this.#instanceAead(index);
      return new HubHost(this.#hubContext(index), this.db, toHex(deviceId), aead, this.seed, index, incarnations);
    });
    for (const hub of this.hubs) hub.boot(this.now);
    this.device.boot(this.now);
  }

  /** The audited hub AEAD, noting which instance seals. */
  #instanceAead(index: number): Aead {
    const audited = this.hubAead;
    return {
      name: audited.name,
      open: (key, iv, aad, ciphertext, tag) => audited.open(key, iv, aad, ciphertext, tag),
      seal: (key, iv, aad, plaintext) => {
        this.#sealer = index;
        try {
          return audited.seal(key, iv, aad, plaintext);
        } finally {
          this.#sealer = undefined;
        }
      },
    };
  }

  /**
   * The hub instance serving the device: with one hub, the hub; with
   * instances, the one holding the lease (else the one at the end of the
   * device's link, else the first). The drivers rotate and send through it.
   */
  get hub(): HubHost {
    if (this.hubs.length === 1) return this.hubs[0]!;
    const current = this.currentHub();
    if (current !== undefined) return current;
    const link = this.device.link;
    return link === undefined ? this.hubs[0]! : this.hubOf(link);
  }

  hubOf(link: Link): HubHost {
    return this.hubs[link.instance] ?? this.hubs[0]!;
  }

  /** The instance whose running core may act for the device (with one hub: the hub, when up). */
  currentHub(): HubHost | undefined {
    if (this.hubs.length === 1) return this.hubs[0]!.up ? this.hubs[0] : undefined;
    return this.hubs.find((hub) => hub.current);
  }

  /** Instances: none paused and no write of any instance outstanding (so a stale write has landed or failed before the run ends). */
  #quiescent(): boolean {
    if (this.hubs.length === 1) return true;
    return this.db.writes.length === 0 && this.hubs.every((hub) => hub.pausedUntil === undefined);
  }

  /** What the simulated device host is given (a narrow view of the world: no import of world.ts). */
  #deviceContext(): DeviceHostContext {
    const world = this;
    const interposeUp = this.variant.interposeUp;
    return {
      get now() {
        return world.now;
      },
      trace: this.trace,
      app: this.app,
      variant: interposeUp === undefined ? {} : { interposeUp: (bytes) => interposeUp(bytes, world) },
      actionApplied: (side) => this.actionApplied(side),
      latency: () => this.latency(),
      describeFrame: (bytes) => this.describeFrame(bytes),
      violation: (invariant, detail) => this.violation(invariant, detail),
      notice: (side, link, at) => this.notice(side, link, at),
      openLink: (now) => this.openLink(now),
      acceptAtHub: (link, now) => this.hubOf(link).accept(link, now),
      deviceEvent: (event) => this.deviceEvent(event),
      noteFlashCut: () => this.noteFlashCut(),
      afterDevicePersist: () => this.afterDevicePersist(),
      beforeDevicePersist: (op) => this.recoveryChecks.deviceStores(this, op),
      deviceFinished: (newKeyId) => this.recoveryChecks.finishedFor.add(newKeyId),
    };
  }

  #hubContext(index: number): HubHostContext {
    const world = this;
    const { interposeDown, hubPersistPolicy, onHubLinkClosed, onHubPersistBegin, onHubReceive } = this.variant;
    return {
      get now() {
        return world.now;
      },
      trace: this.trace,
      app: this.app,
      variant: {
        ...(interposeDown === undefined ? {} : { interposeDown: (bytes: Uint8Array) => interposeDown(bytes, world) }),
        ...(hubPersistPolicy === undefined ? {} : { hubPersistPolicy }),
        ...(onHubLinkClosed === undefined ? {} : { onHubLinkClosed: (now: number) => onHubLinkClosed(world, now) }),
        ...(onHubPersistBegin === undefined ? {} : { onHubPersistBegin: (op: HubPersistOp) => onHubPersistBegin(op, world) }),
        ...(onHubReceive === undefined ? {} : { onHubReceive: (bytes: Uint8Array) => onHubReceive(bytes, world) }),
      },
      actionApplied: (side) => this.actionApplied(side, index),
      latency: () => this.latency(),
      describeFrame: (bytes) => this.describeFrame(bytes),
      violation: (invariant, detail) => this.violation(invariant, detail),
      notice: (side, link, at) => this.notice(side, link, at),
      hubEvent: (event, instance) => this.hubEvent(event, instance),
      leaseTaken: (deviceId, epoch, by) => {
        for (const hub of this.hubs) if (hub.index !== by) hub.notify(epoch, this.now);
        void deviceId;
      },
      recovery: this.recovery ? { hubKeys: [{ ...this.recoveryKeys.hub }], currentHubStaticId: this.recoveryKeys.hub.id } : undefined,
      hubDecided: (id, key) => this.recoveryChecks.hubDecides(this, id, key),
      hubCommitsRecovered: (id) => this.recoveryChecks.hubCommits(this, id),
      hubAnswersAccepted: () => {
        const pending = this.hub.core?.deviceKeys(this.deviceId).pending;
        this.recoveryChecks.hubAnswersAccepted(this, pending?.key === undefined ? undefined : { id: pending.id, key: pending.key });
      },
      recoveryDecision: (status) => {
        const name = Object.entries(RecoveryStatus).find(([, value]) => value === status)?.[0] ?? String(status);
        this.recoveryDecisions.set(name, (this.recoveryDecisions.get(name) ?? 0) + 1);
        // The stated convergence bound assumes the per-device limit is never reached within a schedule's faults.
        if (status === RecoveryStatus.RATE_LIMITED) this.violation('L1 within the bound', 'a recovery was RATE_LIMITED: the convergence bound does not cover the limit');
      },
    };
  }

  /** The profile of the step under way (when profiling). */
  get profile(): StepProfile | undefined {
    return this.#profile;
  }

  /** Links whose death an end has yet to hear of. */
  get notices(): readonly Notice[] {
    return this.#notices;
  }

  get deviceId(): string {
    return this.hubs[0]!.deviceId;
  }

  // ---- Running ----

  /**
   * Runs until the driver is done, a violation (unless continuing), or
   * maxSteps. `afterStep` may end the run early by returning false.
   */
  run(afterStep?: () => boolean): void {
    const maxSteps = this.#options.maxSteps ?? 20_000;
    while (!this.#stopped) {
      if (this.driver.done(this) && this.#quiescent()) return;
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
    const event = nextEvent(this);
    if (event === undefined) return false;
    this.now = Math.max(this.now, event.at);
    this.step++;
    this.trace.step = this.step;
    this.trace.now = this.now;
    this.#actionsThisStep = { device: 0, hub: 0 };
    this.#profile = this.#options.profile
      ? { step: this.step, event: event.kind, deviceInput: false, hubInput: false, hubInstance: undefined, deviceActions: 0, hubActions: 0, flashOps: [], delivery: undefined, digest: 0, hubSnapshots: this.db.snapshots, deviceImages: this.device.store.images }
      : undefined;
    const faults = this.#options.plan?.at(this.step, event);
    this.#stepFaults = faults;
    for (const fault of faults?.before ?? []) applyBeforeFault(this, fault);
    if (faults?.tornWrite !== undefined) this.device.store.armTornWrite(faults.tornWrite);
    // An instance paused by this step's fault does not run the step's event (it stays pending until the resume).
    if (!this.#pausedFor(event)) this.#execute(event, faults);
    if (faults?.tornWrite !== undefined) this.device.store.disarm();
    this.#stepFaults = undefined;
    this.#afterStep(event);
    return true;
  }

  stop(): void {
    this.#stopped = true;
  }

  #execute(event: SimEvent, faults: StepFaults | undefined): void {
    const profile = this.#profile;
    switch (event.kind) {
      case 'command':
        if (profile) {
          profile.deviceInput = profile.hubInput = true;
          profile.hubInstance = this.hub.index;
        }
        this.driver.run(this, this.now);
        return;
      case 'dbCommit': {
        const write = this.db.writes[event.index];
        const hub = write === undefined ? undefined : this.hubs[write.instance];
        if (write === undefined || hub === undefined || !hub.up) return;
        if (profile) this.#fed(profile, hub.index);
        if (faults?.dbFailure !== undefined) {
          write.failure = faults.dbFailure;
          this.countFault('db write failure', this.now);
        }
        hub.commit(write, this.now);
        return;
      }
      case 'dbAck': {
        const write = this.db.writes[event.index];
        const hub = write === undefined ? undefined : this.hubs[write.instance];
        if (write === undefined || hub === undefined || !hub.up) return;
        if (profile) this.#fed(profile, hub.index);
        hub.acknowledge(write, this.now);
        return;
      }
      case 'hubRestart':
        if (profile) this.#fed(profile, event.instance);
        this.hubs[event.instance]!.boot(this.now);
        return;
      case 'lease':
        if (profile) this.#fed(profile, event.instance);
        this.hubs[event.instance]!.leaseStep(event.index, this.now);
        return;
      case 'leaseNotice':
        if (profile) this.#fed(profile, event.instance);
        this.hubs[event.instance]!.notified(this.now);
        return;
      case 'resume':
        if (profile) this.#fed(profile, event.instance);
        this.hubs[event.instance]!.resume(this.now);
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
          if (profile && notice.link.hubAttached) this.#fed(profile, notice.link.instance);
          this.hubOf(notice.link).linkClosed(notice.link, this.now);
        }
        return;
      }
      case 'deliver':
        deliver(this, event.link, event.direction, faults);
        return;
      case 'deviceTimer':
        if (profile) profile.deviceInput = true;
        this.#guardTimer();
        this.device.tick(this.now);
        return;
      case 'hubTimer':
        if (profile) this.#fed(profile, event.instance);
        this.#guardTimer();
        this.hubs[event.instance]!.tick(this.now);
        return;
      case 'reconnect':
        if (profile) {
          profile.deviceInput = profile.hubInput = true;
          profile.hubInstance = this.#nextInstance(faults?.connectTo);
        }
        this.device.connect(this.now);
        return;
      case 'storeTimer':
        this.device.store.tick?.(this.now);
        return;
    }
  }

  /** Whether the event belongs to a paused hub instance. */
  #pausedFor(event: SimEvent): boolean {
    if (this.hubs.length === 1) return false;
    let instance: number | undefined;
    switch (event.kind) {
      case 'dbCommit':
      case 'dbAck':
        instance = this.db.writes[event.index]?.instance;
        break;
      case 'hubTimer':
      case 'lease':
      case 'leaseNotice':
        instance = event.instance;
        break;
      case 'notice':
        if (event.side === 'hub') instance = this.links.get(event.link)?.instance;
        break;
      case 'deliver':
        if (event.direction === 'up') instance = this.links.get(event.link)?.instance;
        break;
      default:
        return false;
    }
    return instance !== undefined && this.hubs[instance]?.pausedUntil !== undefined;
  }

  #fed(profile: StepProfile, instance: number): void {
    profile.hubInput = true;
    profile.hubInstance = instance;
  }

  /** The instance a connection opened now goes to: the plan's choice, else round robin; a crashed one is skipped, as the balancer skips a refusing backend. */
  #nextInstance(choice: number | undefined): number {
    const count = this.hubs.length;
    const first = choice ?? this.#connections % count;
    for (let i = 0; i < count; i++) {
      const index = (first + i) % count;
      if (this.hubs[index]!.up) return index;
    }
    return first;
  }

  /** A timer that keeps firing at the same instant without effect is an engine bug. */
  #guardTimer(): void {
    this.#idleTimerSteps++;
    if (this.#idleTimerSteps > 1_000) throw new Error('engine: a timer fires forever at the same instant');
  }

  // ---- Faults (the faults themselves: fault-apply.ts) ----

  /** Kills a link; unless silent, each end still attached hears of it after RESET_NOTICE_MS. */
  resetLink(link: Link, silent: boolean): void {
    link.kill();
    if (silent) return;
    if (link.deviceAttached) this.notice('device', link, this.now + RESET_NOTICE_MS);
    if (link.hubAttached) this.notice('hub', link, this.now + RESET_NOTICE_MS);
  }

  /** Counts a fault that took effect; the environment is calm again at `calmAt` (liveness). */
  countFault(kind: FaultKind, calmAt: number): void {
    this.faults.set(kind, (this.faults.get(kind) ?? 0) + 1);
    this.liveness.fault(calmAt);
  }

  /** A rollback fault struck (fault-apply.ts): the invariants that cannot hold across it adjust (invariants.ts, seal-check.ts). */
  rolledBack(side: 'device' | 'hub' | 'both', image?: number): void {
    this.rollbacks[side]++;
    if (side !== 'device') this.hubRestoredSinceResult = true;
    const discardedLife = image !== undefined && (this.#imageEpochs[image] ?? 0) < this.keyInvariants.doubleRollbacks;
    this.keyInvariants.rolledBack(side, discardedLife);
    this.seals.rolledBack(side);
    this.liveness.rolledBack();
  }

  /** Called by the hosts before each action they carry out (crash-after-action faults). */
  actionApplied(side: 'device' | 'hub', instance = 0): void {
    const done = this.#actionsThisStep[side]++;
    if (this.#profile) {
      if (side === 'device') this.#profile.deviceActions++;
      else this.#profile.hubActions++;
    }
    const faults = this.#stepFaults;
    if (faults === undefined || done === 0) return;
    if (side === 'device' && faults.deviceCrashAfterAction === done && this.device.up) {
      this.device.powerCut(this.now, `after ${done} action(s) of this step`);
      this.countFault('device power cut mid-actions', this.device.bootAt ?? this.now);
    }
    const hub = this.hubs[instance]!;
    if (side === 'hub' && faults.hubCrashAfterAction === done && hub.up) {
      hub.crash(this.now, false, `after ${done} action(s) of this step`);
      this.countFault('hub crash mid-actions', hub.restartAt ?? this.now);
    }
  }

  noteFlashCut(): void {
    this.countFault('torn flash write', this.now);
  }

  afterDevicePersist(): void {
    if (this.#profile) this.#profile.flashOps.push(...this.device.store.lastOps);
  }

  // ---- Services for the hosts ----

  openLink(now: number): Link | undefined {
    const instance = this.#nextInstance(this.#stepFaults?.connectTo);
    if (!this.hubs[instance]!.up) return undefined;
    const chosen = this.#stepFaults?.connectTo;
    if (chosen !== undefined && this.hubs.length > 1 && chosen !== this.#connections % this.hubs.length) this.countFault('connect to another instance', now);
    this.#connections++;
    const link = new Link(++this.#linkCounter);
    link.instance = instance;
    if (this.hubs.length > 1) this.trace.log(() => `balancer: link ${link.id} goes to instance ${instance}`);
    this.liveness.connectionOpened(now);
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
      case 'data': {
        this.counters.appDelivered++;
        // Finding F3 fixed: the device remembers several sender streams, so the one-hub ledger holds with instances too;
        // `strictDeviceLedger: false` keeps the narrower per-stretch view for comparison.
        if (this.hubs.length === 1 || this.#options.strictDeviceLedger !== false) {
          this.app.deliveredTo('device', this.device.incarnation, event.payload);
          break;
        }
        // The device remembers the last sender stream only (finding F3): data from another instance run than the last starts a new receiver memory.
        const sender = event.payload.length >= 4 ? (event.payload[2]! << 8) | event.payload[3]! : 0;
        if (sender !== this.#deviceDataFrom.sender || this.device.incarnation !== this.#deviceDataFrom.incarnation) {
          this.#deviceDataFrom = { sender, incarnation: this.device.incarnation, stretch: this.#deviceDataFrom.stretch + 1 };
        }
        const stretch = `stretch ${this.#deviceDataFrom.stretch}`;
        this.app.deliveredTo('device', this.device.incarnation, event.payload, { order: stretch, gaps: stretch });
        break;
      }
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

  hubEvent(event: HubEvent, instance = 0): void {
    const hub = this.hubs[instance]!;
    switch (event.type) {
      case 'data':
        this.counters.appDelivered++;
        this.app.deliveredTo('hub', hub.incarnation, event.payload, this.hubs.length === 1 ? {} : { gaps: `lease ${hub.leasesTaken}` });
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
    this.trace.log(() => `${this.hubs.length === 1 ? 'hub' : `instance ${instance}`} event ${event.type}${describeEvent(event)}`);
  }

  violation(invariant: string, detail: string): void {
    this.violations.push({ invariant, detail, step: this.step, atMs: this.now - SIM_EPOCH_MS });
    this.trace.log(() => `VIOLATION ${invariant}: ${detail}`);
    if (!this.#options.continueAfterViolation) this.#stopped = true;
  }

  // ---- Observation ----

  keyViews(): KeyViews {
    return keyViews(this);
  }

  /** See sync.ts. */
  synced(views?: KeyViews): boolean {
    return inSync(this, views);
  }

  #afterStep(event: SimEvent): void {
    if (event.kind !== 'deviceTimer' && event.kind !== 'hubTimer') this.#idleTimerSteps = 0;
    for (const [id, link] of this.links) {
      const idle = link.queues.up.length === 0 && link.queues.down.length === 0;
      if ((link.dead || (!link.deviceAttached && !link.hubAttached)) && idle && !this.#notices.some((n) => n.link === link)) this.links.delete(id);
    }
    while (this.#imageEpochs.length < this.device.store.images) this.#imageEpochs.push(this.keyInvariants.doubleRollbacks);
    const views = this.keyViews();
    const synced = this.synced(views);
    if (synced) this.seals.converged();
    const before = this.keyInvariants.checks;
    this.keyInvariants.check(views, (invariant, detail) => this.violation(invariant, detail), this.#options.liveViewsOnly === true, synced);
    this.checks += this.keyInvariants.checks - before;
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
        `${describeKeys(views.deviceDurable)}|${views.deviceLive ? describeKeys(views.deviceLive) : '-'}|${views.hubLive?.active.id ?? '-'}/${views.hubLive?.pending?.id ?? '-'}|${this.db.digest()}|${this.device.core?.session ?? 'off'}|${this.device.store.layoutDigest()}|${this.violations.length}${this.hubs.length === 1 ? '' : `|${profile.hubInstance ?? '-'}`}`,
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
      `${this.step}@${this.now}|links ${this.#linkCounter}${this.hubs.length === 1 ? '' : `/${this.#connections}`}`,
      this.device.stateText(),
      ...this.hubs.map((hub) => hub.stateText()),
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
      this.seals.stateText(),
      `${this.chaos ? 1 : 0}|${this.counters.framesRejected}|${this.violations.length}${this.hubs.length === 1 ? '' : `|${this.#deviceDataFrom.sender}/${this.#deviceDataFrom.incarnation}/${this.#deviceDataFrom.stretch}`}`,
    ];
    parts.push(
      `${this.recoveryChecks.stateText()}|${this.hubRestoredSinceResult ? 1 : 0}|${[...this.hubRecovered].map(([id, keys]) => `${id}:${keys.map((k) => fnv1a(k)).join('.')}`).join(',')}|${[...this.deviceRecovered].map(([id, k]) => `${id}:${fnv1a(k)}`).join(',')}`,
    );
    if (this.#options.rollbacks === true) parts.push(this.db.snapshotsText(), this.device.store.imagesText());
    const text = parts.join('\n');
    return `${fnv1aString(text).toString(16)}${fnv1aString(text, 0x1234567).toString(16)}:${text.length}`;
  }

  describeFrame(bytes: Uint8Array): string {
    return describeFrame(bytes);
  }
}
