/**
 * The hub's state tables as data (docs/PROTOCOL.md §8.2): the per-connection
 * table H-S and the per-device key table H-K, with the spec's row ids. The
 * core (hub.ts) looks every input up here and runs the handler named by the
 * row; a device frame with no row is rejected (HS3 before the HELLO, HS6
 * after) and changes nothing.
 *
 * Key slots are not changed here: the transitions that move them are
 * #pendingStored, #pendingPromoted and #reloaded in hub.ts.
 */
import { LockstepError } from '../errors';
import { MessageType } from '../protocol/constants';
import { APP_FRAME_TYPES, requireRow, type StateTable } from '../protocol/state-table';

export type HubConnectionState = 'awaitingHello' | 'established' | 'closed';

export type HubConnectionEvent = 'hello' | 'handshakeTimeout' | 'idleTimeout' | 'closed' | 'appFrame' | 'rekeyAck';

export type HubConnectionRowId = 'HS2' | 'HS4' | 'HS5' | 'HS7' | 'HS8' | 'HSX';

/** HS1: a connection accepted starts in awaitingHello with a CHALLENGE sent. */
export const HUB_OPEN_ROW = 'HS1';
/** HS3 / HS6: a frame failing a check before / after the HELLO authenticated. */
export const HUB_REJECT_ROWS = { awaitingHello: 'HS3', established: 'HS6' } as const;

export interface HubConnectionRow {
  readonly id: HubConnectionRowId;
  readonly next: HubConnectionState;
}

/** A transport close or a close by the core, in any open state (not a numbered row of the spec: the end of a connection). */
const CLOSED: HubConnectionRow = { id: 'HSX', next: 'closed' };

export const HUB_CONNECTION_TABLE: StateTable<HubConnectionState, HubConnectionEvent, HubConnectionRow> = {
  awaitingHello: {
    hello: { id: 'HS2', next: 'established' },
    handshakeTimeout: { id: 'HS4', next: 'closed' },
    closed: CLOSED,
  },
  established: {
    idleTimeout: { id: 'HS5', next: 'closed' },
    appFrame: { id: 'HS7', next: 'established' },
    rekeyAck: { id: 'HS8', next: 'established' },
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
  { id: 'HK1', when: (pendingId, persisting) => pendingId === undefined && !persisting, action: 'storePending' },
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
  reoffer: 'HK3',
  offerOnSession: 'HK4',
  promoteOnPendingKey: 'HK5',
  confirmAgain: 'HK6',
  storageFailed: 'HK7',
  /** §11.4: a frame under a dh pending key brings the device's share; the key is derived from it, then HK5. */
  deriveOnPendingKey: 'HK8',
} as const;
