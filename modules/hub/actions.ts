/** What the hub core asks its host to do (docs/PROTOCOL.md §8.2, §12). */
import type { EphemeralKeyPair } from '../crypto/dh-rekey';
import type { LockstepError } from '../errors';
import type { RecoveryStatus } from '../protocol/constants';

export type ConnectionId = number;

export type HubPersistOp =
  /**
   * Store (id, key) as the device's pending key, durably, before it is ever offered (rule H1).
   * `replaces` (HK11): the pending slot holds that id and is replaced in this commit (a key the device provably refused); absent, it is empty.
   */
  | { readonly kind: 'storePending'; readonly deviceId: string; readonly id: number; readonly key: Uint8Array; readonly dh?: undefined; readonly modeChange?: undefined; readonly replaces?: undefined }
  /**
   * dh mode (§11, rule H4): store the hub's ephemeral pair for the pending id, durably (the private key wrapped), before REKEY_DH is ever sent.
   * `modeChange: 'dh'` (HK11, §12.4): this dh pending replaces a classic pending key the device refused with REKEY_MODE_MISMATCH, and the
   * device's mode becomes dh — both in this one commit.
   */
  | { readonly kind: 'storePending'; readonly deviceId: string; readonly id: number; readonly key?: undefined; readonly dh: EphemeralKeyPair; readonly modeChange?: 'dh'; readonly replaces?: number }
  /**
   * Pending becomes active and the old active key is deleted, durably, before anything is sealed under it (rule H2).
   * `key` is the derived key of a dh pending (HK8): it becomes the active key, and the ephemeral private key is erased in the same commit (rule H5).
   * `enrolmentReady` (HE1, §12.6): the device's enrolment is armed and this promoted key is dh-derived, so the record's enrolment becomes 'ready' in the same commit.
   */
  | { readonly kind: 'promote'; readonly deviceId: string; readonly id: number; readonly key?: Uint8Array; readonly enrolmentReady?: true }
  /**
   * HK9 (§12.4, rule R2): an authenticated, accepted recovery. (id, key) replaces the pending slot (whatever it held), in the classic
   * form, durably, before RECOVER_RESULT ACCEPTED is sent. The active key stays.
   */
  | { readonly kind: 'storeRecovered'; readonly deviceId: string; readonly id: number; readonly key: Uint8Array }
  /** HE2 (§12.6): the device's static public key S_d (32 bytes) and the hub static id it knows, durably; enrolment is disarmed in the same commit. */
  | { readonly kind: 'storeDeviceStatic'; readonly deviceId: string; readonly publicKey: Uint8Array; readonly hubStaticId: number };

/** Why the hub thinks a device needs a recovery (§12.4): its HELLO named an id the hub does not hold, failed under a held id, came under A while a recovered N > A + 1 is pending (HS2), or it refused an offer. */
export type RecoveryNeededReason = 'unknownKeyId' | 'authFailed' | 'rekeyRefused' | 'unusablePending';

export type HubEvent =
  | { readonly type: 'deviceConnected'; readonly deviceId: string; readonly connection: ConnectionId; readonly keyId: number }
  | { readonly type: 'deviceDisconnected'; readonly deviceId: string; readonly connection: ConnectionId }
  | { readonly type: 'data'; readonly deviceId: string; readonly payload: Uint8Array }
  | { readonly type: 'delivered'; readonly deviceId: string; readonly messageId: number }
  | { readonly type: 'keyOffered'; readonly deviceId: string; readonly id: number }
  | { readonly type: 'keyConfirmed'; readonly deviceId: string; readonly id: number }
  | { readonly type: 'rejected'; readonly connection: ConnectionId; readonly deviceId?: string; readonly error: LockstepError }
  | { readonly type: 'peerError'; readonly deviceId: string; readonly code: number; readonly detail: number }
  /**
   * §12.4: a known device's HELLO failed (HS9) or it refused an offer; once per episode per device (reset by an established session).
   * Reported only when recovery is configured. Not authenticated (a HELLO is enough): for logs and metrics, never for a decision.
   */
  | {
      readonly type: 'recoveryNeeded';
      readonly deviceId: string;
      readonly reason: RecoveryNeededReason;
      /** The key id of the HELLO (or of the session, for rekeyRefused). */
      readonly helloKeyId: number;
      readonly activeKeyId: number;
      readonly pendingKeyId: number | undefined;
    }
  /** A recovery handshake that ended before the device was authenticated (HS13): for the host's per-source limit and metrics. */
  | { readonly type: 'recoveryUnauthenticated'; readonly connection: ConnectionId; readonly stage: 'init' | 'finish'; readonly code: LockstepError['code'] }
  /** Every decision after tag3 (IN_SYNC included), once RECOVER_RESULT is sent (ACCEPTED: once its pending key is durable): for the audit trail. */
  | { readonly type: 'recoveryDecided'; readonly deviceId: string; readonly status: RecoveryStatus; readonly newKeyId: number }
  /** HE2: the device's static key is durable. */
  | { readonly type: 'enrolled'; readonly deviceId: string; readonly hubStaticId: number }
  /** HE2 / DK17: an enrolment that would change a static key was refused (by the hub, or by the device's ERROR). */
  | { readonly type: 'staticKeyLocked'; readonly deviceId: string };

export type HubAction =
  | { readonly type: 'transmit'; readonly connection: ConnectionId; readonly bytes: Uint8Array }
  | { readonly type: 'close'; readonly connection: ConnectionId; readonly error: LockstepError }
  | { readonly type: 'persist'; readonly op: HubPersistOp }
  | { readonly type: 'event'; readonly event: HubEvent }
  /**
   * HS11 (§12.4, §12.7): the device is authenticated (tag3) and its key is not one the hub holds. The host applies its policy and
   * limits and answers with `decideRecovery(connection, …)`. Nothing was stored or charged before this (rule R1).
   */
  | {
      readonly type: 'recoveryRequest';
      readonly connection: ConnectionId;
      readonly deviceId: string;
      readonly newKeyId: number;
      readonly claimedActive: number;
      /** 0 when the device holds no future key. */
      readonly claimedFuture: number;
    };

/** The host's answer to a recoveryRequest (HS12): ACCEPTED, AWAITING_APPROVAL, REFUSED, RATE_LIMITED or KEY_IDS_EXHAUSTED (IN_SYNC is the core's). */
export interface RecoveryDecision {
  readonly status: RecoveryStatus;
  /** Seconds before the hub will consider another request (u32); sent as 0 with ACCEPTED. */
  readonly retryAfterSeconds: number;
}

/** What `send` answers at the call: the id the core assigned and the actions to carry out, or why nothing was queued. */
export type HubSendResult =
  | { readonly ok: true; readonly messageId: number; readonly actions: HubAction[] }
  | { readonly ok: false; readonly error: LockstepError };

/** What `rotate` answers: started (HK1), queued behind the rotation in flight (HK2), or refused (ids exhausted). */
export type HubRotateResult =
  | { readonly ok: true; readonly outcome: 'started' | 'queued'; readonly actions: HubAction[] }
  | { readonly ok: false; readonly error: LockstepError };
