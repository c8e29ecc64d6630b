/** What the device core asks its host to do (docs/PROTOCOL.md §8.1). */
import type { LockstepError } from '../errors';
import type { KeyShares } from '../platform/keys';

export type DevicePersistOp =
  /** Keystore: store (id, key) as the future key, durably (§8.1 rule D1). */
  | { readonly kind: 'storeFuture'; readonly id: number; readonly key: Uint8Array; readonly shares?: KeyShares }
  /** Keystore: the future key becomes active, the old active is erased (rule D2). */
  | { readonly kind: 'promote'; readonly id: number };

export type DeviceEvent =
  | { readonly type: 'established'; readonly keyId: number }
  | { readonly type: 'data'; readonly payload: Uint8Array }
  | { readonly type: 'delivered'; readonly messageId: number }
  | { readonly type: 'keyStored'; readonly id: number }
  | { readonly type: 'keyPromoted'; readonly id: number }
  | { readonly type: 'rekeyRefused'; readonly id: number; readonly error: LockstepError }
  | { readonly type: 'rejected'; readonly error: LockstepError }
  | { readonly type: 'peerError'; readonly code: number; readonly detail: number };

export type DeviceAction =
  | { readonly type: 'transmit'; readonly bytes: Uint8Array }
  | { readonly type: 'close'; readonly error: LockstepError }
  | { readonly type: 'persist'; readonly op: DevicePersistOp }
  | { readonly type: 'event'; readonly event: DeviceEvent };

/** What `send` answers at the call: the id the core assigned and the actions to carry out, or why nothing was queued. */
export type DeviceSendResult =
  | { readonly ok: true; readonly messageId: number; readonly actions: DeviceAction[] }
  | { readonly ok: false; readonly error: LockstepError };
