/**
 * The sync invariants between one device and the hub (docs/PROTOCOL.md §9),
 * checked on their durable states:
 * - S1: the key the device seals with (its future key if it has one, else
 *   its active key) is one the hub accepts (its active or pending key);
 * - S2: the key the hub seals with (its active key) is one the device holds;
 * - one key id names one key on both sides.
 * A device violating these can no longer reach the hub: it has lost sync.
 */
import { toHex } from '../../modules/bytes';
import type { DeviceKeys } from '../../modules/platform/keys';
import { resolveHubKeys, type HubKeysView } from '../testing/hub-keys-view';

/** The hub's slots (a dh pending slot is resolved against the device's stored share, §11). */
export type HubKeys = HubKeysView & { readonly deviceId?: string };

/** undefined when the pair can still talk; otherwise what is wrong. */
export function syncProblem(device: DeviceKeys, hubView: HubKeys, deviceId: string = hubView.deviceId ?? '0000000000000000'): string | undefined {
  const hub = resolveHubKeys(hubView, device, deviceId);
  const deviceSlots = device.future === undefined ? [device.active] : [device.active, device.future];
  const hubSlots = hub.pending === undefined ? [hub.active] : [hub.active, hub.pending];
  for (const d of deviceSlots) {
    for (const h of hubSlots) {
      if (d.id === h.id && toHex(d.key) !== toHex(h.key)) return `key id ${d.id} names different keys on device and hub`;
    }
  }
  const deviceSeal = device.future ?? device.active;
  if (!hubSlots.some((slot) => slot.id === deviceSeal.id)) {
    return `device seals with key ${deviceSeal.id}; hub accepts ${hubSlots.map((s) => s.id).join(',')}`;
  }
  if (!deviceSlots.some((slot) => slot.id === hub.active.id)) {
    return `hub seals with key ${hub.active.id}; device holds ${deviceSlots.map((s) => s.id).join(',')}`;
  }
  return undefined;
}

/** Settled: one shared key, nothing in flight. */
export function settled(device: DeviceKeys, hub: HubKeys): boolean {
  return device.future === undefined && hub.pending === undefined && device.active.id === hub.active.id && toHex(device.active.key) === toHex(hub.active.key);
}
