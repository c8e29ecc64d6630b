/**
 * Faults and where they can strike. A fault plan is asked once per step,
 * after the step's event is chosen and before it runs; it answers with the
 * faults of that step. The exhaustive enumerator turns the profile of a run
 * (what each step did) into every fault point of that run; the random mode
 * draws faults from the seed.
 */
import type { AdversaryMove } from './adversary';
import type { FlashOpProfile, TornWrite } from './device-store';
import type { Direction } from './network';

export type SimEvent =
  | { readonly kind: 'command'; readonly at: number }
  | { readonly kind: 'dbCommit'; readonly at: number; readonly index: number }
  | { readonly kind: 'dbAck'; readonly at: number; readonly index: number }
  | { readonly kind: 'hubRestart'; readonly at: number; readonly instance: number }
  | { readonly kind: 'deviceBoot'; readonly at: number }
  | { readonly kind: 'deliver'; readonly at: number; readonly link: number; readonly direction: Direction }
  | { readonly kind: 'notice'; readonly at: number; readonly link: number; readonly side: 'device' | 'hub' }
  | { readonly kind: 'deviceTimer'; readonly at: number }
  | { readonly kind: 'hubTimer'; readonly at: number; readonly instance: number }
  /** Hub instances: a step of a lease being taken (the statement, then its reply), a lease notification, an instance resuming. */
  | { readonly kind: 'lease'; readonly at: number; readonly instance: number; readonly index: number }
  | { readonly kind: 'leaseNotice'; readonly at: number; readonly instance: number }
  | { readonly kind: 'resume'; readonly at: number; readonly instance: number }
  | { readonly kind: 'reconnect'; readonly at: number }
  | { readonly kind: 'storeTimer'; readonly at: number };

/** Faults applied before the step's event. */
export type BeforeFault =
  | { readonly kind: 'devicePowerCut' }
  /** `instance`: which hub instance (default: the one serving the device). */
  | { readonly kind: 'hubCrash'; readonly silent: boolean; readonly instance?: number }
  /** Hub instances: SIGSTOP instance `instance` now, SIGCONT after `ms`. */
  | { readonly kind: 'pause'; readonly instance: number; readonly ms: number }
  /** Reset the device's current link (silent: neither end is told). */
  | { readonly kind: 'reset'; readonly silent: boolean }
  | { readonly kind: 'delay'; readonly direction: Direction; readonly ms: number }
  | { readonly kind: 'adversary'; readonly move: AdversaryMove };

export interface StepFaults {
  readonly before?: readonly BeforeFault[];
  /** A delivery: hand over only this many bytes of the chunk, then reset the link. */
  readonly cutAtByte?: number;
  /** A delivery (not a fault: TCP chunking): hand over only this many bytes now, the rest later. */
  readonly splitAtByte?: number;
  /** A delivery: hand over this chunk together with the next ones already arrived. */
  readonly coalesce?: boolean;
  /** Power cut / crash after this many actions of this step have been carried out. */
  readonly deviceCrashAfterAction?: number;
  readonly hubCrashAfterAction?: number;
  /** A torn flash write during this step's keystore operation. */
  readonly tornWrite?: TornWrite;
  /** A database commit event: the write fails (before or after it became durable). */
  readonly dbFailure?: 'beforeCommit' | 'afterCommit';
  /** Hub instances: a connection opened in this step goes to this instance (the balancer's choice). */
  readonly connectTo?: number;
}

export interface FaultPlan {
  at(step: number, event: SimEvent): StepFaults | undefined;
}

/** What one step did: enough to enumerate every fault point it offers. */
export interface StepProfile {
  readonly step: number;
  readonly event: SimEvent['kind'];
  deviceInput: boolean;
  hubInput: boolean;
  /** Which hub instance the step fed (when hubInput). */
  hubInstance: number | undefined;
  deviceActions: number;
  hubActions: number;
  flashOps: FlashOpProfile[];
  delivery: { readonly direction: Direction; readonly length: number; readonly frameType: number | undefined; readonly fin: boolean } | undefined;
  /** Digest of the step and the state after it (for equivalence of continuations). */
  digest: number;
}

/** One fault point: a step and what strikes there. */
export interface FaultPoint {
  readonly step: number;
  readonly label: string;
  /** Points in one class lead to the same continuation (e.g. cuts inside one frame). */
  readonly cls: string;
  readonly faults: StepFaults;
}
