/** What the hub core asks its host to do (docs/PROTOCOL.md §8.2). */
import type { EphemeralKeyPair } from '../crypto/dh-rekey';
import type { LockstepError } from '../errors';
import type { RecoveryStatus } from '../protocol/constants';

export type ConnectionId = number;

export type HubPersistOp =
  /** Store (id, key) as the device's pending key, durably, before it is ever offered (rule H1). */
  | { readonly kind: 'storePending'; readonly deviceId: string; readonly id: number; readonly key: Uint8Array; readonly dh?: undefined; readonly modeChange?: undefined }
  /**
   * dh mode (§11, rule H4): store the hub's ephemeral pair for the pending id, durably (the private key wrapped), before REKEY_DH is ever sent.
   * `modeChange: 'dh'` (HK11, §12.4): the record's mode moves to dh in the same commit, and the pending (a refused classic one) is replaced.
   */
  | { readonly kind: 'storePending'; readonly deviceId: string; readonly id: number; readonly key?: undefined; readonly dh: EphemeralKeyPair; readonly modeChange?: 'dh' }
  /**
   * Pending becomes active and the old active key is deleted, durably, before anything is sealed under it (rule H2).
   * `key` is the derived key of a dh pending (HK8): it becomes the active key, and the ephemeral private key is erased in the same commit (rule H5).
   */
  | { readonly kind: 'promote'; readonly deviceId: string; readonly id: number; readonly key?: Uint8Array; readonly enrolmentReady?: true }
  /** HK9 (§12.4): the pending slot is replaced by the recovered (id, key) in the classic form, durably, before RECOVER_RESULT ACCEPTED. */
  | { readonly kind: 'storeRecovered'; readonly deviceId: string; readonly id: number; readonly key: Uint8Array }
  /** HE2 (§12.4): the device's static public key S_d and the hub static id it knows, durably; enrolment disarmed. */
  | { readonly kind: 'storeDeviceStatic'; readonly deviceId: string; readonly publicKey: Uint8Array; readonly hubStaticId: number };

export type HubEvent =
  | { readonly type: 'deviceConnected'; readonly deviceId: string; readonly connection: ConnectionId; readonly keyId: number }
  | { readonly type: 'deviceDisconnected'; readonly deviceId: string; readonly connection: ConnectionId }
  | { readonly type: 'data'; readonly deviceId: string; readonly payload: Uint8Array }
  | { readonly type: 'delivered'; readonly deviceId: string; readonly messageId: number }
  | { readonly type: 'keyOffered'; readonly deviceId: string; readonly id: number }
  | { readonly type: 'keyConfirmed'; readonly deviceId: string; readonly id: number }
  | { readonly type: 'rejected'; readonly connection: ConnectionId; readonly deviceId?: string; readonly error: LockstepError }
  | { readonly type: 'peerError'; readonly deviceId: string; readonly code: number; readonly detail: number }
  // ---- recovery (§12) ----
  | {
      readonly type: 'recoveryNeeded';
      readonly deviceId: string;
      readonly reason: 'unknownKeyId' | 'authFailed' | 'rekeyRefused';
      readonly helloKeyId: number;
      readonly activeKeyId: number;
      readonly pendingKeyId: number;
    }
  | { readonly type: 'recoveryUnauthenticated'; readonly connection: ConnectionId; readonly stage: 'init' | 'finish'; readonly code: string }
  | { readonly type: 'recoveryDecided'; readonly deviceId: string; readonly status: RecoveryStatus; readonly newKeyId: number }
  | { readonly type: 'enrolled'; readonly deviceId: string; readonly hubStaticId: number }
  | { readonly type: 'staticKeyLocked'; readonly deviceId: string };

export type HubAction =
  | { readonly type: 'transmit'; readonly connection: ConnectionId; readonly bytes: Uint8Array }
  | { readonly type: 'close'; readonly connection: ConnectionId; readonly error: LockstepError }
  | { readonly type: 'persist'; readonly op: HubPersistOp }
  | { readonly type: 'event'; readonly event: HubEvent }
  /** §12.4 HS11: the device is authenticated (tag3) and its check matched neither A nor P; the host answers with `decideRecovery`. */
  | {
      readonly type: 'recoveryRequest';
      readonly connection: ConnectionId;
      readonly deviceId: string;
      readonly newKeyId: number;
      readonly claimedActive: number;
      readonly claimedFuture: number;
    };

/** What `send` answers at the call: the id the core assigned and the actions to carry out, or why nothing was queued. */
export type HubSendResult =
  | { readonly ok: true; readonly messageId: number; readonly actions: HubAction[] }
  | { readonly ok: false; readonly error: LockstepError };

/** What `rotate` answers: started (HK1), queued behind the rotation in flight (HK2), or refused (ids exhausted). */
export type HubRotateResult =
  | { readonly ok: true; readonly outcome: 'started' | 'queued'; readonly actions: HubAction[] }
  | { readonly ok: false; readonly error: LockstepError };
