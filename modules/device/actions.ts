/** What the device core asks its host to do (docs/PROTOCOL.md §8.1). */
import type { RecoveryCredential } from '../crypto/recovery';
import type { LockstepError } from '../errors';
import type { KeyShares } from '../platform/keys';

export type DevicePersistOp =
  /** Keystore: store (id, key) as the future key, durably (§8.1 rule D1). */
  | { readonly kind: 'storeFuture'; readonly id: number; readonly key: Uint8Array; readonly shares?: KeyShares }
  /** Keystore: the future key becomes active, the old active is erased (rule D2). */
  | { readonly kind: 'promote'; readonly id: number }
  /** Keystore: (id, key) replaces the future slot, no shares (DK14, §12.4 rule R2). */
  | { readonly kind: 'storeRecovered'; readonly id: number; readonly key: Uint8Array }
  /** Keystore: the recovery credential, once (DK15). */
  | { readonly kind: 'storeCredential'; readonly credential: RecoveryCredential };

export type DeviceEvent =
  | { readonly type: 'established'; readonly keyId: number }
  | { readonly type: 'data'; readonly payload: Uint8Array }
  | { readonly type: 'delivered'; readonly messageId: number }
  | { readonly type: 'keyStored'; readonly id: number }
  | { readonly type: 'keyPromoted'; readonly id: number }
  | { readonly type: 'rekeyRefused'; readonly id: number; readonly error: LockstepError }
  | { readonly type: 'rejected'; readonly error: LockstepError }
  | { readonly type: 'peerError'; readonly code: number; readonly detail: number }
  /** §12: the hub answered our HELLO with NO_KEY; once per episode (until a WELCOME), with the ids we hold (0: no future). */
  | { readonly type: 'hubLostKey'; readonly activeKeyId: number; readonly futureKeyId: number }
  /** DK14 is durable: the next connection seals under `newKeyId`. */
  | { readonly type: 'recovered'; readonly newKeyId: number }
  /** A recovery attempt ended without a key (a status, a bad tag, an id refused, a timeout); the next attempt waits `retryAfterMs`. */
  | { readonly type: 'recoveryRefused'; readonly reason: string; readonly retryAfterMs: number }
  /** RECOVER_RESULT IN_SYNC: the hub holds our key after all; reconnecting at once. */
  | { readonly type: 'recoveryInSync' }
  /** DK15 is durable: the credential for `hubStaticId` is stored. */
  | { readonly type: 'enrolled'; readonly hubStaticId: number }
  /** DK17: an ENROL for another hub static key was refused. */
  | { readonly type: 'staticKeyLocked' };

export type DeviceAction =
  | { readonly type: 'transmit'; readonly bytes: Uint8Array }
  /** `reconnectNow`: after a recovery (DK14, IN_SYNC) the loop reconnects without backoff. */
  | { readonly type: 'close'; readonly error: LockstepError; readonly reconnectNow?: true }
  | { readonly type: 'persist'; readonly op: DevicePersistOp }
  | { readonly type: 'event'; readonly event: DeviceEvent };

/** What `send` answers at the call: the id the core assigned and the actions to carry out, or why nothing was queued. */
export type DeviceSendResult =
  | { readonly ok: true; readonly messageId: number; readonly actions: DeviceAction[] }
  | { readonly ok: false; readonly error: LockstepError };

/** "storeFuture 7", "storeCredential (hub static key 1)": for traces (never key bytes). */
export function describePersistOp(op: DevicePersistOp): string {
  return op.kind === 'storeCredential' ? `${op.kind} (hub static key ${op.credential.hubStaticId})` : `${op.kind} ${op.id}`;
}
