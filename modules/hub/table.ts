/**
 * The hub's per-connection transitions as data (docs/PROTOCOL.md §8.2,
 * table H-S). Key-slot changes are the two named transitions in hub.ts
 * (#pendingStored, #pendingPromoted).
 */
import { LockstepError } from '../errors';

export type HubConnectionState = 'awaitingHello' | 'established' | 'closed';
export type HubConnectionEvent = 'hello' | 'closed';

export const HUB_CONNECTION_TABLE: Readonly<Record<HubConnectionState, Partial<Record<HubConnectionEvent, HubConnectionState>>>> = {
  awaitingHello: { hello: 'established', closed: 'closed' },
  established: { closed: 'closed' },
  closed: {},
};

export function nextHubConnectionState(state: HubConnectionState, eventName: HubConnectionEvent): HubConnectionState {
  const next = HUB_CONNECTION_TABLE[state][eventName];
  if (next === undefined) throw new LockstepError('UNEXPECTED_MESSAGE', `no transition for ${eventName} in ${state}`);
  return next;
}
