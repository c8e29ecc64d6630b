/**
 * The device's state tables as data (docs/PROTOCOL.md §8.1): the session
 * table D-S and the key table D-K, with the spec's row ids. The core
 * (device.ts) looks every input up here and runs the handler named by the
 * row; an input with no row is rejected (DS9) and changes nothing.
 *
 * The key slots are not changed here: rows only name what to do; the two
 * transitions that move slots are #keyStored and #keyPromoted in device.ts.
 */
import { LockstepError } from '../errors';
import type { RekeyMode } from '../platform/keys';
import { MessageType } from '../protocol/constants';
import { APP_FRAME_TYPES, requireRow, type StateTable } from '../protocol/state-table';

/** `recoverSent` / `recoverFinished`: the recovery handshake (§12.4), after RECOVER_INIT / RECOVER_FINISH. */
export type DeviceSessionState = 'offline' | 'awaitingChallenge' | 'awaitingWelcome' | 'established' | 'recoverSent' | 'recoverFinished';

/** What can happen to a session: transport events, timers, and authenticated hub frames by kind. */
export type DeviceSessionEvent =
  | 'connected'
  | 'challenge'
  | 'welcome'
  | 'handshakeTimeout'
  | 'idleTimeout'
  | 'keepaliveDue'
  | 'closed'
  | 'appFrame'
  | 'rekey'
  | 'confirm'
  /** Recovery (§12): the unsealed NO_KEY, RECOVER_REPLY, RECOVER_RESULT, and the sealed ENROL. */
  | 'noKey'
  | 'recoverReply'
  /** The core's own: an authenticated-or-not RECOVER_REPLY it refuses (bad tag2, R3). */
  | 'replyRefused'
  | 'recoverResult'
  | 'enrol';

export type DeviceSessionRowId =
  | 'DS1'
  | 'DS2'
  | 'DS3'
  | 'DS4'
  | 'DS5'
  | 'DS6'
  | 'DS7'
  | 'DS8'
  | 'DS10'
  | 'DS11'
  | 'DS12'
  | 'DS13'
  | 'DS14'
  | 'DS15'
  | 'DS16'
  | 'DS17';
/** DS9: a frame that fails a check (no row for it, or any check of §4): reported, nothing changes. */
export const DEVICE_REJECT_ROW = 'DS9';

export interface DeviceSessionRow {
  readonly id: DeviceSessionRowId;
  readonly next: DeviceSessionState;
}

const DS4: DeviceSessionRow = { id: 'DS4', next: 'offline' };
const DS7: DeviceSessionRow = { id: 'DS7', next: 'offline' };
/**
 * DS14: a RECOVER_REPLY with a bad tag2, or an N not above every id held
 * (R3): close, nothing changes. DS16: in the recovery states, anything
 * else — a frame without a row, a failed check, a bad tag4, the handshake
 * timeout: close, nothing changes, the ephemerals wiped.
 */
const DEVICE_RECOVERY_REFUSED_ROW: DeviceSessionRow = { id: 'DS14', next: 'offline' };
export const DEVICE_RECOVERY_ABORT_ROW: DeviceSessionRow = { id: 'DS16', next: 'offline' };
/** The states of the recovery handshake, where a failing input ends the connection (DS16) instead of being counted (DS9). */
export function isRecoveryState(state: DeviceSessionState): boolean {
  return state === 'recoverSent' || state === 'recoverFinished';
}

export const DEVICE_SESSION_TABLE: StateTable<DeviceSessionState, DeviceSessionEvent, DeviceSessionRow> = {
  offline: {
    connected: { id: 'DS1', next: 'awaitingChallenge' },
  },
  awaitingChallenge: {
    challenge: { id: 'DS2', next: 'awaitingWelcome' },
    handshakeTimeout: DS4,
    closed: DS7,
  },
  awaitingWelcome: {
    welcome: { id: 'DS3', next: 'established' },
    // Or offline when the device cannot try (no credential, the attempt spacing): the core closes at once.
    noKey: { id: 'DS12', next: 'recoverSent' },
    handshakeTimeout: DS4,
    closed: DS7,
  },
  recoverSent: {
    recoverReply: { id: 'DS13', next: 'recoverFinished' },
    replyRefused: DEVICE_RECOVERY_REFUSED_ROW,
    handshakeTimeout: DEVICE_RECOVERY_ABORT_ROW,
    closed: DS7,
  },
  recoverFinished: {
    // Entered once the outcome is carried out (DK14's persist first, R2).
    recoverResult: { id: 'DS15', next: 'offline' },
    handshakeTimeout: DEVICE_RECOVERY_ABORT_ROW,
    closed: DS7,
  },
  established: {
    // D-TIMER-2, W-TIMER-1: only accepted frames reset the idle timer.
    idleTimeout: { id: 'DS5', next: 'offline' },
    // D-TIMER-1.
    keepaliveDue: { id: 'DS6', next: 'established' },
    closed: DS7,
    appFrame: { id: 'DS8', next: 'established' },
    rekey: { id: 'DS10', next: 'established' },
    confirm: { id: 'DS11', next: 'established' },
    enrol: { id: 'DS17', next: 'established' },
  },
};

/** The row for `event` in `state`, or undefined (for a frame: DS9, rejected). */
export function deviceSessionRow(state: DeviceSessionState, event: DeviceSessionEvent): DeviceSessionRow | undefined {
  return DEVICE_SESSION_TABLE[state][event];
}

/** Like deviceSessionRow, for inputs the core itself raises: a missing row is a bug, thrown as a typed error. */
export function requireDeviceSessionRow(state: DeviceSessionState, event: DeviceSessionEvent): DeviceSessionRow {
  return requireRow(DEVICE_SESSION_TABLE, state, event, 'device session');
}

/** The session event a hub frame of `type` is; undefined for types a hub never sends (HELLO, REKEY_ACK). */
export function deviceFrameEvent(type: number): DeviceSessionEvent | undefined {
  if (APP_FRAME_TYPES.has(type)) return 'appFrame';
  switch (type) {
    case MessageType.CHALLENGE:
      return 'challenge';
    case MessageType.WELCOME:
      return 'welcome';
    case MessageType.REKEY:
    case MessageType.REKEY_DH:
      return 'rekey';
    case MessageType.CONFIRM:
      return 'confirm';
    case MessageType.NO_KEY:
      return 'noKey';
    case MessageType.RECOVER_REPLY:
      return 'recoverReply';
    case MessageType.RECOVER_RESULT:
      return 'recoverResult';
    case MessageType.ENROL:
      return 'enrol';
    default:
      return undefined;
  }
}

// ---- Key table D-K ----

export interface DeviceSlotIds {
  readonly activeId: number;
  readonly futureId: number | undefined;
  /** Whether the held future key was dh-derived (§11). */
  readonly futureDh: boolean;
  /** The device's mode (§11.6): a dh device never takes a classic key again. */
  readonly mode: RekeyMode;
}

/** A REKEY (classic) or REKEY_DH offer; `sameAsFuture`: same kind and same content (key bytes, or hub share) as the held future key. */
export interface DeviceRekeyOffer {
  readonly id: number;
  readonly dh: boolean;
  readonly sameAsFuture: boolean;
}

export type DeviceRekeyAction = 'storeFuture' | 'deriveFuture' | 'acknowledgeAgain' | 'refuseConflict' | 'refuseNotNewer' | 'refuseNotNext' | 'refuseModeMismatch';

export interface DeviceRekeyRow {
  readonly id: 'DK1' | 'DK2' | 'DK3' | 'DK4' | 'DK8' | 'DK9' | 'DK10' | 'DK11' | 'DK12';
  readonly when: (slots: DeviceSlotIds, offer: DeviceRekeyOffer) => boolean;
  readonly action: DeviceRekeyAction;
}

/** The REKEY and REKEY_DH rows of D-K, in the order they are tried: the first that applies decides. */
export const DEVICE_REKEY_ROWS: readonly DeviceRekeyRow[] = [
  // D-REKEY-4.
  { id: 'DK4', when: (slots, offer) => offer.id <= slots.activeId, action: 'refuseNotNewer' },
  // D-REKEY-5. A compliant hub only ever offers A+1 (HK1): any other jump would burn ids, up to exhausting them.
  { id: 'DK8', when: (slots, offer) => offer.id !== slots.activeId + 1, action: 'refuseNotNext' },
  // D-DH-4, §11.6: never a fall-back to the weaker mode.
  { id: 'DK12', when: (slots, offer) => slots.futureId === undefined && !offer.dh && slots.mode === 'dh', action: 'refuseModeMismatch' },
  // D-REKEY-1, D-KEY-1: stored durably, then acknowledged under the new key.
  { id: 'DK1', when: (slots, offer) => slots.futureId === undefined && !offer.dh, action: 'storeFuture' },
  // D-DH-1. DK13 (D-DH-5: an all-zero X25519 result) is decided inside DK9, once the share is used.
  { id: 'DK9', when: (slots, offer) => slots.futureId === undefined && offer.dh, action: 'deriveFuture' },
  // D-REKEY-2.
  { id: 'DK2', when: (slots, offer) => !offer.dh && !slots.futureDh && slots.futureId === offer.id && offer.sameAsFuture, action: 'acknowledgeAgain' },
  // D7 (D-DH-2): a repeated REKEY_DH gets the identical REKEY_ACK, never a fresh exchange.
  { id: 'DK10', when: (slots, offer) => offer.dh && slots.futureDh && slots.futureId === offer.id && offer.sameAsFuture, action: 'acknowledgeAgain' },
  // D-REKEY-3.
  { id: 'DK3', when: (_slots, offer) => !offer.dh, action: 'refuseConflict' },
  // D-DH-3.
  { id: 'DK11', when: () => true, action: 'refuseConflict' },
];

export function deviceRekeyRow(slots: DeviceSlotIds, offer: DeviceRekeyOffer): DeviceRekeyRow {
  for (const row of DEVICE_REKEY_ROWS) if (row.when(slots, offer)) return row;
  // Unreachable: DK11 always applies.
  throw new LockstepError('UNEXPECTED_MESSAGE', 'no D-K row for REKEY');
}

/**
 * The other D-K rows, named where the core applies them: DK5 (a frame under
 * the future key: persist the promotion, then act on the frame), DK6 (seal
 * with the newest key held), DK7 (a failed keystore write halts the core),
 * DK13 (a REKEY_DH whose share gives an all-zero X25519 result: refused).
 */
export const DEVICE_KEY_ROWS = {
  /** D-KEY-2. */
  promoteOnFutureKey: 'DK5',
  /** D-KEY-3; with the share of a dh future key on every frame, D-DH-6. */
  sealWithNewest: 'DK6',
  /** D-KEY-6. */
  storageFailed: 'DK7',
  zeroSharedSecret: 'DK13',
  // §12.4, decided by deviceRecoverResultRow (DK14) and DEVICE_ENROL_ROWS (DK15–DK17).
  storeRecovered: 'DK14',
  enrolStore: 'DK15',
  enrolAgain: 'DK16',
  enrolLocked: 'DK17',
} as const;

// ---- Recovery rows of D-K (§12.4) ----

/** What the device holds when a recovery message is decided. */
export interface DeviceRecoverySlots {
  readonly activeId: number;
  readonly futureId: number | undefined;
}

export interface DeviceRecoveryRow {
  readonly id: 'DS13' | 'DS14' | 'DK14' | 'DS15';
  readonly action: 'finish' | 'refuseId' | 'storeRecovered' | 'reconnect' | 'wait';
}

/** R3: the N of an authenticated RECOVER_REPLY must be above every id the device holds (a u32 always is ≤ 0xFFFFFFFF). */
export function deviceRecoverReplyRow(slots: DeviceRecoverySlots, newKeyId: number): DeviceRecoveryRow {
  const highest = Math.max(slots.activeId, slots.futureId ?? 0);
  return newKeyId > highest && newKeyId <= 0xffffffff ? { id: 'DS13', action: 'finish' } : { id: 'DS14', action: 'refuseId' };
}

/**
 * DS15 by status (RecoveryStatus): ACCEPTED is DK14 (persist the future N,
 * then close and reconnect at once); IN_SYNC closes and reconnects at once;
 * any other status (or one this device does not know) closes and waits.
 */
export function deviceRecoverResultRow(status: number): DeviceRecoveryRow {
  if (status === 0) return { id: 'DK14', action: 'storeRecovered' };
  if (status === 1) return { id: 'DS15', action: 'reconnect' };
  return { id: 'DS15', action: 'wait' };
}

/** The credential a device holds, as ENROL sees it. */
export interface DeviceEnrolSlots {
  readonly hasCredential: boolean;
  /** The held credential names the same hub static id and S_h as the ENROL. */
  readonly sameHubKey: boolean;
}

export interface DeviceEnrolRow {
  readonly id: 'DK15' | 'DK16' | 'DK17';
  readonly when: (slots: DeviceEnrolSlots) => boolean;
  readonly action: 'storeCredential' | 'acknowledgeAgain' | 'refuseLocked';
}

/** DS17 → DK15–DK17, in the order they are tried. */
export const DEVICE_ENROL_ROWS: readonly DeviceEnrolRow[] = [
  // D-ENROL-1 (D-ENROL-4, D-ENROL-5 are decided in device.ts before anything is stored).
  { id: 'DK15', when: (slots) => !slots.hasCredential, action: 'storeCredential' },
  // D-ENROL-2.
  { id: 'DK16', when: (slots) => slots.sameHubKey, action: 'acknowledgeAgain' },
  // D-ENROL-3, §12.6: a static key is never changed over the wire.
  { id: 'DK17', when: () => true, action: 'refuseLocked' },
];

export function deviceEnrolRow(slots: DeviceEnrolSlots): DeviceEnrolRow {
  for (const row of DEVICE_ENROL_ROWS) if (row.when(slots)) return row;
  throw new LockstepError('UNEXPECTED_MESSAGE', 'no D-K row for ENROL');
}
