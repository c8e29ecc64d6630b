/**
 * What the device's and the hub's state tables (modules/device/table.ts,
 * modules/hub/table.ts; docs/PROTOCOL.md §8) share: the lookup that names a
 * missing row as a typed error, and the frame types both sides treat alike.
 */
import { LockstepError } from '../errors';
import { MessageType } from './constants';

export type StateTable<State extends string, Event extends string, Row> = Readonly<Record<State, Readonly<Partial<Record<Event, Row>>>>>;

/** For inputs a core raises itself (timers, closes): a missing row is a bug, thrown as a typed error. */
export function requireRow<State extends string, Event extends string, Row>(table: StateTable<State, Event, Row>, state: State, event: Event, tableName: string): Row {
  const row = table[state][event];
  if (row === undefined) throw new LockstepError('UNEXPECTED_MESSAGE', `no ${tableName} row for ${event} in ${state}`);
  return row;
}

/** Application data, keep-alive and error reports: the same rows on both sides (DS8, HS7). */
export const APP_FRAME_TYPES: ReadonlySet<number> = new Set([MessageType.DATA, MessageType.DATA_ACK, MessageType.PING, MessageType.PONG, MessageType.ERROR]);
