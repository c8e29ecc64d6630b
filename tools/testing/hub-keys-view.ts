/**
 * A hub view (active key and pending slot) resolved against a device view,
 * for checkers: a dh pending slot stands for the key its exchange leads to
 * with the device's stored share (docs/PROTOCOL.md §11.3), computed with the
 * same derivation as the hub core and memoised, since checkers look at the
 * same few exchanges millions of times.
 */
import { fromHex, toHex } from '../../modules/bytes';
import type { EphemeralKeyPair } from '../../modules/crypto/dh-rekey';
import { derivePendingKey, NO_KEY_YET, pendingSlotFor } from '../../modules/hub/pending-key';
import type { DeviceKeys, KeySlot } from '../../modules/platform/keys';
import { nodeKeyAgreement } from '../../hosts/node/key-agreement';

export interface HubKeysView {
  readonly active: KeySlot;
  readonly pending?: { readonly id: number; readonly key?: Uint8Array; readonly dh?: EphemeralKeyPair };
}

const MEMO_LIMIT = 4096;
const memo = new Map<string, Uint8Array>();

const memoDerive: typeof derivePendingKey = (primitives, active, pending, deviceId, deviceShare) => {
  const name = `${toHex(active.key)}${toHex(pending.dh.privateKey)}${toHex(deviceShare)}${pending.id}${toHex(deviceId)}`;
  const known = memo.get(name);
  if (known !== undefined) return known;
  const key = derivePendingKey(primitives, active, pending, deviceId, deviceShare);
  if (memo.size >= MEMO_LIMIT) memo.clear();
  memo.set(name, key);
  return key;
};

/** The hub's slots as KeySlots seen against `device` (a dh pending slot without a matching device share has NO_KEY_YET). */
export function resolveHubKeys(hub: HubKeysView, device: DeviceKeys | undefined, deviceId: string | Uint8Array): { active: KeySlot; pending?: KeySlot } {
  if (hub.pending === undefined) return { active: hub.active };
  const idBytes = typeof deviceId === 'string' ? fromHex(deviceId) : deviceId;
  return { active: hub.active, pending: pendingSlotFor(nodeKeyAgreement, hub.active, hub.pending, idBytes, device?.future, memoDerive) };
}

/** Whether a resolved slot has real key bytes (a dh pending slot may not have any yet). */
export function hasKey(slot: KeySlot): boolean {
  return slot.key !== NO_KEY_YET && slot.key.length > 0;
}
