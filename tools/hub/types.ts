/** The hub library's public types: events, device views, counters. */
import type { ErrorCode } from '../../modules/errors';
import type { HubDeviceState } from '../../modules/hub/hub';
import type { Transport } from './link';

/** The hub's typed events (listener arguments). */
export type RekeyRefusalCode = 'REKEY_ID_NOT_NEWER' | 'REKEY_CONFLICT' | 'REKEY_ID_NOT_NEXT' | 'REKEY_MODE_MISMATCH' | 'BAD_KEY_SHARE';

export interface HubEvents {
  listening: [{ transport: Transport; host: string; port: number }];
  deviceAdded: [{ deviceId: string }];
  deviceConnected: [{ deviceId: string; keyId: number; transport: Transport; remoteAddress: string }];
  deviceDisconnected: [{ deviceId: string }];
  /** Application data from a device (delivered at most once per hub run; see docs/HUB.md). */
  data: [{ deviceId: string; payload: Uint8Array }];
  /** The device acknowledged application data sent with `send` (the id `send` returned). */
  delivered: [{ deviceId: string; messageId: number }];
  /** A new pending key is durable; it will be offered to the device. */
  rotationStarted: [{ deviceId: string; keyId: number }];
  keyOffered: [{ deviceId: string; keyId: number }];
  /** The device proved it holds the new key; the promotion is durable and the old key deleted. */
  keyConfirmed: [{ deviceId: string; keyId: number }];
  /** A frame or connection was refused (bad bytes, unknown device or key, failed tag...). */
  rejected: [{ deviceId: string | undefined; code: ErrorCode; remoteAddress: string }];
  peerError: [{ deviceId: string; code: number; detail: number }];
  /**
   * The device refused the key the hub offers (docs/PROTOCOL.md §8.1, §11.6): REKEY_MODE_MISMATCH
   * (a dh device offered a classic key: the hub's record is older than the device), REKEY_CONFLICT,
   * REKEY_ID_NOT_NEWER, REKEY_ID_NOT_NEXT, BAD_KEY_SHARE. Once per episode (until a key is confirmed).
   */
  rekeyRefused: [{ deviceId: string; keyId: number; code: RekeyRefusalCode }];
  /** A database write failed; the device's state was reloaded from the database. */
  storageError: [{ deviceId: string; error: Error }];
  /** A group-commit transaction ended: how many ops, how long, whether it committed. */
  committed: [{ ops: number; durationMs: number; ok: boolean }];
  /** A device was revoked (by this hub's API or by another process through the database): its keys are gone. */
  deviceRevoked: [{ deviceId: string; actor: string }];
  // ---- issue 14: recovery (docs/HUB.md §14) ----
  /** A known device's HELLO failed in a way a rollback causes (once per episode, until a session is established). */
  recoveryNeeded: [{ deviceId: string; reason: 'unknownKeyId' | 'authFailed' | 'rekeyRefused' | 'unusablePending'; helloKeyId: number; activeKeyId: number; pendingKeyId: number }];
  /** An authenticated recovery was decided: accepted, inSync, awaitingApproval, refused, rateLimited, keyIdsExhausted. */
  recoveryDecided: [{ deviceId: string; status: string; newKeyId: number }];
  /** A recovery step before authentication failed its check (no device is named: nothing of it is trusted). */
  recoveryUnauthenticated: [{ stage: 'init' | 'finish'; code: string }];
  /** A device enrolled its static key (HE2). */
  enrolled: [{ deviceId: string; hubStaticId: number }];
  /** An ENROL_ACK that would change an enrolled static key was refused. */
  staticKeyLocked: [{ deviceId: string }];
}

/** The core's view of a device plus what the database knows. */
export interface DeviceView extends HubDeviceState {
  readonly activeSince: number;
  readonly lastSeenAt: number | undefined;
}

export type RotateResult = 'started' | 'queued';

export interface HubStats {
  connections: number;
  unauthenticated: number;
  devicesOnline: number;
  refused: number;
  evicted: number;
  droppedSlowReaders: number;
  droppedInputOverflow: number;
  rejectedFrames: number;
  tlsHandshakeFailures: number;
  rotationsStarted: number;
  rotationsConfirmed: number;
  commitTransactions: number;
  commitOps: number;
  maxQueuedInputBytes: number;
}
