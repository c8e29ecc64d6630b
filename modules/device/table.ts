/**
 * The device's session transitions as data (docs/PROTOCOL.md §8.1, table
 * D-S). Key-slot changes are not here: they are the two named transitions
 * in device.ts (#keyStored, #keyPromoted).
 */
import { LockstepError } from '../errors';

export type DeviceSessionState = 'offline' | 'awaitingChallenge' | 'awaitingWelcome' | 'established';
export type DeviceSessionEvent = 'connected' | 'challenge' | 'welcome' | 'disconnected';

export const DEVICE_SESSION_TABLE: Readonly<Record<DeviceSessionState, Partial<Record<DeviceSessionEvent, DeviceSessionState>>>> = {
  offline: { connected: 'awaitingChallenge' },
  awaitingChallenge: { connected: 'awaitingChallenge', challenge: 'awaitingWelcome', disconnected: 'offline' },
  awaitingWelcome: { connected: 'awaitingChallenge', welcome: 'established', disconnected: 'offline' },
  established: { connected: 'awaitingChallenge', disconnected: 'offline' },
};

export function nextDeviceSessionState(state: DeviceSessionState, eventName: DeviceSessionEvent): DeviceSessionState {
  const next = DEVICE_SESSION_TABLE[state][eventName];
  if (next === undefined) throw new LockstepError('UNEXPECTED_MESSAGE', `no transition for ${eventName} in ${state}`);
  return next;
}
