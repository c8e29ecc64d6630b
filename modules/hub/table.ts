/**
 * The hub's state tables as data (docs/PROTOCOL.md §8.2): the per-connection
 * table H-S and the per-device key table H-K, with the spec's row ids. The
 * core (hub.ts) looks every input up here and runs the handler named by the
 * row; a device frame with no row is rejected (HS3 before the HELLO, HS6
 * after) and changes nothing.
 *
 * Key slots are not changed here: the transitions that move them are
 * #pendingStored, #pendingPromoted, #recoveredStored and #reloaded in hub.ts.
 *
 * Recovery (§12.4) adds the connection rows HS9–HS13 (a HELLO that fails
 * at §4 step 3, 4 or 5 is answered by NO_KEY and a handshake without a
 * shared key), the key rows HK9–HK11 and the enrolment rows HE1–HE2.
 */
import { LockstepError } from '../errors';
import { MAX_KEY_ID, MessageType } from '../protocol/constants';
import { APP_FRAME_TYPES, requireRow, type StateTable } from '../protocol/state-table';

export type HubConnectionState = 'awaitingHello' | 'awaitingRecoverInit' | 'awaitingRecoverFinish' | 'deciding' | 'established' | 'closed';

export type HubConnectionEvent =
  | 'hello'
  /** HS9: a HELLO (seq 0, this session) that failed at §4 step 3, 4 or 5, recovery configured and the source's limit allowing. */
  | 'helloFailed'
  | 'recoverInit'
  | 'recoverFinish'
  /** HS12: the decision is made (by the core: IN_SYNC, ids; or by the host's decideRecovery). */
  | 'decided'
  | 'handshakeTimeout'
  | 'idleTimeout'
  | 'closed'
  | 'appFrame'
  | 'rekeyAck'
  | 'enrolAck';

export type HubConnectionRowId = 'HS2' | 'HS4' | 'HS5' | 'HS7' | 'HS8' | 'HS9' | 'HS10' | 'HS11' | 'HS12' | 'HS13' | 'HE2' | 'HSX';

/** HS1: a connection accepted starts in awaitingHello with a CHALLENGE sent. */
export const HUB_OPEN_ROW = 'HS1';
/**
 * HS3 / HS6: a frame failing a check before / after the HELLO authenticated.
 * HS13: anything else or a failed check during a recovery handshake closes it
 * (in deciding too: a compliant device sends nothing until RECOVER_RESULT).
 */
export const HUB_REJECT_ROWS = { awaitingHello: 'HS3', established: 'HS6', awaitingRecoverInit: 'HS13', awaitingRecoverFinish: 'HS13', deciding: 'HS13' } as const;

export interface HubConnectionRow {
  readonly id: HubConnectionRowId;
  readonly next: HubConnectionState;
}

/** A transport close or a close by the core, in any open state (not a numbered row of the spec: the end of a connection). */
const CLOSED: HubConnectionRow = { id: 'HSX', next: 'closed' };

export const HUB_CONNECTION_TABLE: StateTable<HubConnectionState, HubConnectionEvent, HubConnectionRow> = {
  awaitingHello: {
    // H-SESSION-2, H-SESSION-3, H-HELLO-1, H-HELLO-2.
    hello: { id: 'HS2', next: 'established' },
    // H-REC-1, H-REC-2.
    helloFailed: { id: 'HS9', next: 'awaitingRecoverInit' },
    // H-TIMER-2.
    handshakeTimeout: { id: 'HS4', next: 'closed' },
    closed: CLOSED,
  },
  awaitingRecoverInit: {
    recoverInit: { id: 'HS10', next: 'awaitingRecoverFinish' },
    handshakeTimeout: { id: 'HS13', next: 'closed' },
    closed: CLOSED,
  },
  awaitingRecoverFinish: {
    recoverFinish: { id: 'HS11', next: 'deciding' },
    handshakeTimeout: { id: 'HS13', next: 'closed' },
    closed: CLOSED,
  },
  // No timeout here: the wait is the hub's (its host's decision, then its own write), as for input held during a persist.
  deciding: {
    decided: { id: 'HS12', next: 'closed' },
    closed: CLOSED,
  },
  established: {
    // H-TIMER-1, W-TIMER-1: only accepted frames reset the idle timer.
    idleTimeout: { id: 'HS5', next: 'closed' },
    // W-PING-1, W-ERROR-1, W-DATA-3 … W-DATA-5.
    appFrame: { id: 'HS7', next: 'established' },
    // A REKEY_ACK has a row here, so it passes §4 step 2 (W-CHECK-2).
    rekeyAck: { id: 'HS8', next: 'established' },
    // §12.4 names the enrolment rows HE…: an authenticated ENROL_ACK goes to the enrolment table (as HS8 goes to the key table).
    enrolAck: { id: 'HE2', next: 'established' },
    closed: CLOSED,
  },
  closed: {},
};

/** The row for `event` in `state`, or undefined (for a frame: HS3/HS6, rejected). */
export function hubConnectionRow(state: HubConnectionState, event: HubConnectionEvent): HubConnectionRow | undefined {
  return HUB_CONNECTION_TABLE[state][event];
}

/** For inputs the core itself raises: a missing row is a bug, thrown as a typed error. */
export function requireHubConnectionRow(state: HubConnectionState, event: HubConnectionEvent): HubConnectionRow {
  return requireRow(HUB_CONNECTION_TABLE, state, event, 'hub connection');
}

/** The connection event a device frame of `type` is; undefined for types a device never sends. */
export function hubFrameEvent(type: number): HubConnectionEvent | undefined {
  if (APP_FRAME_TYPES.has(type)) return 'appFrame';
  switch (type) {
    case MessageType.HELLO:
      return 'hello';
    case MessageType.REKEY_ACK:
      return 'rekeyAck';
    case MessageType.ENROL_ACK:
      return 'enrolAck';
    case MessageType.RECOVER_INIT:
      return 'recoverInit';
    case MessageType.RECOVER_FINISH:
      return 'recoverFinish';
    default:
      return undefined;
  }
}

// ---- Key table H-K ----

export type HubRotateAction = 'storePending' | 'queueAfterConfirm';

export interface HubRotateRow {
  readonly id: 'HK1' | 'HK2';
  readonly when: (pendingId: number | undefined, persisting: boolean) => boolean;
  readonly action: HubRotateAction;
}

/**
 * The rotate rows of H-K, in order. HK2 never replaces an unconfirmed
 * pending key (rule H1); it remembers one rotation to start once the pending
 * key is confirmed (or once an outstanding write is durable).
 */
export const HUB_ROTATE_ROWS: readonly HubRotateRow[] = [
  // H-REKEY-1, H-REKEY-3: persisted before offered, id A + 1.
  { id: 'HK1', when: (pendingId, persisting) => pendingId === undefined && !persisting, action: 'storePending' },
  // H-REKEY-2: an offered pending key is never replaced.
  { id: 'HK2', when: () => true, action: 'queueAfterConfirm' },
];

export function hubRotateRow(pendingId: number | undefined, persisting: boolean): HubRotateRow {
  for (const row of HUB_ROTATE_ROWS) if (row.when(pendingId, persisting)) return row;
  throw new LockstepError('UNEXPECTED_MESSAGE', 'no H-K row for rotate');
}

/**
 * The other H-K rows, named where the core applies them: HK3 (re-offer
 * timer), HK4 (offer on a new session), HK5 (a frame under the pending key:
 * persist the promotion, then CONFIRM — a REKEY_ACK is fully answered by
 * that CONFIRM), HK6 (a repeated REKEY_ACK of the active key: CONFIRM
 * again), HK7 (a failed database write: reload the device), HK8 (a frame
 * under a dh pending key: derive the key from its share, then HK5).
 */
export const HUB_KEY_ROWS = {
  /** H-RETRY-1, H-RETRY-2 (§8.4). */
  reoffer: 'HK3',
  /** H-REKEY-4. */
  offerOnSession: 'HK4',
  /** H-CONFIRM-1 … H-CONFIRM-4. */
  promoteOnPendingKey: 'HK5',
  /** H-CONFIRM-5: in (A) and in (A, P). */
  confirmAgain: 'HK6',
  /** H-KEY-5. */
  storageFailed: 'HK7',
  /** §11.4 (H-DH-4): a frame under a dh pending key brings the device's share; the key is derived from it, then HK5. */
  deriveOnPendingKey: 'HK8',
  /** §12.4 (H-REC-6): an accepted recovery replaces the pending slot by (N, K_N), durably, before RECOVER_RESULT ACCEPTED (rule R2). */
  recoveryAccepted: 'HK9',
  /** §12.4: a device frame under the recovered N promotes it: HK5, unchanged. */
  promoteRecovered: 'HK10',
  /** §12.4 (H-DH-7): ERROR REKEY_MODE_MISMATCH for a classic pending P, under A: mode dh and a dh pending P in one commit, then REKEY_DH. */
  modeMismatch: 'HK11',
  /**
   * §12.4 (hub.ts #peerRefused, H-REC-9): ERROR REKEY_ID_NOT_NEXT under A for a recovered pending N > A + 1, in a session
   * established before N became pending: the session is closed; the next HELLO under A starts a recovery whose N' is above every id.
   */
  recoveredRefused: 'HK12',
} as const;

/** The enrolment rows (§12.4, §12.6). */
export const HUB_ENROL_ROWS = {
  /** H-ENROL-1: enrolment ready (armed, then a dh-derived key promoted) and a session established: send ENROL(id, S_h). */
  offer: 'HE1',
  /** H-ENROL-2, H-ENROL-3: ENROL_ACK(id, S_d): persist S_d and disarm; one that would change an enrolled S_d, or arrives unready, is STATIC_KEY_LOCKED. */
  acknowledged: 'HE2',
} as const;

// ---- HS12: what the core decides by itself once the device is authenticated ----

/** What the core knows at the decision (after tag3), re-read from the device's slots at that moment (rule R3). */
export interface HubRecoveryFacts {
  /** `check` matches the hub's active key, or its pending key (R4). */
  readonly checkMatchesHeld: boolean;
  /** N as chosen at HS10. */
  readonly newKeyId: number;
  /** max(A, P) now. */
  readonly highestHeld: number;
}

export type HubRecoveryOutcome = 'inSync' | 'idsMoved' | 'idsExhausted' | 'askHost';

export interface HubRecoveryRow {
  readonly id: 'HS12';
  readonly outcome: HubRecoveryOutcome;
  readonly when: (facts: HubRecoveryFacts) => boolean;
}

/**
 * HS12's rows, in order: IN_SYNC when the device seals with a key the hub
 * holds (no change, R4); no result when the hub's slots moved to N or past
 * it since HS10 (R3); KEY_IDS_EXHAUSTED past the last id; else the host's
 * policy (recoveryRequest). The host's ACCEPTED is rechecked (idsMoved)
 * again when it is applied.
 */
export const HUB_RECOVERY_ROWS: readonly HubRecoveryRow[] = [
  { id: 'HS12', outcome: 'inSync', when: (facts) => facts.checkMatchesHeld },
  { id: 'HS12', outcome: 'idsMoved', when: (facts) => facts.newKeyId <= facts.highestHeld },
  { id: 'HS12', outcome: 'idsExhausted', when: (facts) => facts.newKeyId > MAX_KEY_ID },
  { id: 'HS12', outcome: 'askHost', when: () => true },
];

export function hubRecoveryRow(facts: HubRecoveryFacts): HubRecoveryRow {
  for (const row of HUB_RECOVERY_ROWS) if (row.when(facts)) return row;
  throw new LockstepError('UNEXPECTED_MESSAGE', 'no HS12 row');
}
