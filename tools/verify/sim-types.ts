/**
 * The narrow interfaces the simulation's parts see of each other, so that
 * nothing but the programs that build a world imports world.ts (no import
 * cycle): the simulated hosts get a context (what a platform gives a host:
 * a clock, a network, a trace, fault hooks), and the world's helpers
 * (scheduler, delivery, faults, sync views, seal checks, variants, drivers)
 * get `SimWorld`, the part of the world they read and drive. World
 * (world.ts) implements them all.
 */
import type { Aead } from '../../modules/crypto/primitives';
import type { DeviceEvent } from '../../modules/device/actions';
import type { DeviceCore } from '../../modules/device/device';
import type { HubEvent, HubPersistOp } from '../../modules/hub/actions';
import type { HubCore } from '../../modules/hub/hub';
import type { Adversary } from './adversary';
import type { AppLedger } from './app-ledger';
import type { DeviceStore } from './device-store';
import type { StepProfile } from './faults';
import type { SimHubDatabase } from './hub-db';
import type { LivenessMonitor } from './liveness';
import type { Link } from './network';
import type { Rng } from './rng';
import type { Trace } from './trace';

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
  | 'connect to another instance'
  | 'instance paused'
  | 'adversary replay'
  | 'adversary reflect'
  | 'adversary forge'
  | 'adversary flip'
  | 'adversary garbage';

export interface Violation {
  readonly invariant: string;
  readonly detail: string;
  readonly step: number;
  readonly atMs: number;
}

/** What both simulated hosts are given by the world. */
export interface HostContext {
  readonly now: number;
  readonly trace: Trace;
  readonly app: Pick<AppLedger, 'payload'>;
  /** Called before each core action the host carries out (crash-after-action faults); `instance`: which hub instance. */
  actionApplied(side: 'device' | 'hub', instance?: number): void;
  latency(): number;
  describeFrame(bytes: Uint8Array): string;
  violation(invariant: string, detail: string): void;
  notice(side: 'device' | 'hub', link: Link, at: number): void;
}

export interface DeviceHostContext extends HostContext {
  readonly variant: { interposeUp?(bytes: Uint8Array): Uint8Array };
  /** A new link to the hub, or undefined while the hub is down. */
  openLink(now: number): Link | undefined;
  /** The hub's side of a link the device connected. */
  acceptAtHub(link: Link, now: number): void;
  deviceEvent(event: DeviceEvent): void;
  noteFlashCut(): void;
  afterDevicePersist(): void;
}

export interface HubHostContext extends HostContext {
  readonly variant: {
    interposeDown?(bytes: Uint8Array): Uint8Array;
    hubPersistPolicy?(op: HubPersistOp): HubPersistPolicy;
    onHubLinkClosed?(now: number): void;
    onHubPersistBegin?(op: HubPersistOp): HubPersistOp;
  };
  hubEvent(event: HubEvent, instance: number): void;
  /** Instances: another instance took the device's lease at epoch `epoch` (the NOTIFY of PgHubStore.lease). */
  leaseTaken?(deviceId: string, epoch: number, by: number): void;
}

/** The simulated device as the world's helpers see it (tools/verify/device-host.ts). */
export interface SimDevice {
  readonly up: boolean;
  readonly core: DeviceCore | undefined;
  readonly link: Link | undefined;
  readonly store: DeviceStore;
  readonly bootAt: number | undefined;
  readonly reconnectAt: number | undefined;
  readonly incarnation: number;
  nextDeadline(): number | undefined;
  receive(bytes: Uint8Array, now: number): void;
  linkClosed(link: Link, now: number): void;
  powerCut(now: number, why: string): void;
  /** Queues an app message; false when the core refuses it. */
  send(now: number): boolean;
}

/** The simulated hub (one instance of it) as the world's helpers see it (tools/verify/hub-host.ts). */
export interface SimHub {
  /** Which instance (0 with one hub). */
  readonly index: number;
  readonly up: boolean;
  /** Stopped (SIGSTOP) until this time: nothing of this instance runs. */
  readonly pausedUntil: number | undefined;
  /** Instances: this one holds the device's lease as the database says (its fence's epoch is the row's) and has adopted the row. */
  readonly current: boolean;
  readonly core: HubCore | undefined;
  readonly restartAt: number | undefined;
  readonly incarnation: number;
  nextDeadline(): number | undefined;
  /** Feeds a chunk; false if the host holds it back (the core does not want input now). */
  receive(link: Link, bytes: Uint8Array, now: number): boolean;
  linkClosed(link: Link, now: number): void;
  crash(now: number, silent: boolean, why: string): void;
  /** SIGSTOP now, SIGCONT at `until`. */
  pause(now: number, until: number): void;
  /** Instances: the next step of a lease being taken, and of a lease notification on its way (scheduler). */
  nextLeaseStep(): { at: number; index: number } | undefined;
  nextNotice(): number | undefined;
  rotate(now: number): void;
  send(now: number): boolean;
}

export interface Notice {
  readonly at: number;
  readonly link: Link;
  readonly side: 'device' | 'hub';
}

/** The world as its helpers see it. */
export interface SimWorld {
  readonly seed: number;
  readonly now: number;
  readonly step: number;
  readonly rng: Rng;
  readonly trace: Trace;
  readonly device: SimDevice;
  /** The hub instance serving the device (the only one with one hub): see World.hub. */
  readonly hub: SimHub;
  /** Every hub instance (one, or two sharing the database). */
  readonly hubs: readonly SimHub[];
  /** The instance at the hub end of a link. */
  hubOf(link: Link): SimHub;
  /** The instance whose running core may act for the device (with one hub: the hub, when up). */
  currentHub(): SimHub | undefined;
  readonly db: SimHubDatabase;
  readonly links: ReadonlyMap<number, Link>;
  readonly notices: readonly Notice[];
  readonly driver: Driver;
  readonly liveness: LivenessMonitor;
  readonly adversary: Adversary;
  readonly deviceId: string;
  readonly initialKeyId: number;
  /** The audited AEAD the device core uses (a re-sealing interposer seals on the device's behalf with it). */
  readonly deviceAead: Aead;
  readonly profile: StepProfile | undefined;
  readonly violations: readonly Violation[];
  chaos: boolean;
  countFault(kind: FaultKind, calmAt: number): void;
  resetLink(link: Link, silent: boolean): void;
  latency(): number;
  describeFrame(bytes: Uint8Array): string;
  synced(): boolean;
}

/** What drives the scenario: the operator's commands. */
export interface Driver {
  /** A command is due now. */
  ready(world: SimWorld): boolean;
  /** A command due later (a timed event), if any. */
  nextAt?(world: SimWorld): number | undefined;
  run(world: SimWorld, now: number): void;
  done(world: SimWorld): boolean;
  /** The driver's own state (for the state digest). */
  stateText(): string;
}

export interface HubPersistPolicy {
  /** Tell the core "persisted" before the commit (a host that lies about durability). */
  readonly ackBeforeCommit: boolean;
  readonly commitDelayMs: number;
}

/**
 * A broken design applied to the real code: only through what a host
 * controls — wrappers around storage, the database's acknowledgement
 * policy, interposers on the transport, and the public `reloadDevice` API.
 * The cores themselves are never changed or flagged (variants.ts).
 */
export interface Variant {
  readonly name: string;
  readonly description: string;
  /** Which kind of invariant must catch it. */
  readonly expect: 'safety' | 'liveness';
  /** Device → hub frames (one whole frame with its length prefix); return an empty array to drop. */
  interposeUp?(bytes: Uint8Array, world: SimWorld): Uint8Array;
  /** Hub → device frames. */
  interposeDown?(bytes: Uint8Array, world: SimWorld): Uint8Array;
  hubPersistPolicy?(op: HubPersistOp): HubPersistPolicy;
  wrapDeviceStore?(store: DeviceStore, world: SimWorld): DeviceStore;
  onHubLinkClosed?(world: SimWorld, now: number): void;
  /** A hub write is begun: the database host may store something else than asked (returns what it stores), or touch other rows first. */
  onHubPersistBegin?(op: HubPersistOp, world: SimWorld): HubPersistOp;
  /** The rekey mode the variant runs in (docs/PROTOCOL.md §11); default the world's. */
  readonly mode?: 'classic' | 'dh';
  /** Hub instances the variant runs with (default the world's); with 2, `unfenced` drops the fence from the shared database. */
  readonly instances?: 1 | 2;
  /** A shared database whose writes are not conditional on (epoch, row version) — the PostgreSQL store's `fenced: false`. */
  readonly unfenced?: boolean;
}
