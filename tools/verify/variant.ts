/**
 * How a broken variant is applied to the real code: only through what a
 * host controls — wrappers around storage, the database's acknowledgement
 * policy, interposers on the transport, and the public `reloadDevice` API.
 * The cores themselves are never changed or flagged (variants.ts defines
 * the six variants; `CORRECT` applies nothing).
 */
import type { HubPersistOp } from '../../modules/hub/actions';
import type { DeviceStore } from './device-store';
import type { World } from './world';

export interface HubPersistPolicy {
  /** Tell the core "persisted" before the commit (a host that lies about durability). */
  readonly ackBeforeCommit: boolean;
  readonly commitDelayMs: number;
}

export interface Variant {
  readonly name: string;
  readonly description: string;
  /** Which kind of invariant must catch it. */
  readonly expect: 'safety' | 'liveness';
  /** Device → hub frames (one whole frame with its length prefix); return an empty array to drop. */
  interposeUp?(bytes: Uint8Array, world: World): Uint8Array;
  /** Hub → device frames. */
  interposeDown?(bytes: Uint8Array, world: World): Uint8Array;
  hubPersistPolicy?(op: HubPersistOp): HubPersistPolicy;
  wrapDeviceStore?(store: DeviceStore, world: World): DeviceStore;
  onHubLinkClosed?(world: World, now: number): void;
}

export const CORRECT: Variant = { name: 'correct', description: 'the code as it is', expect: 'safety' };
