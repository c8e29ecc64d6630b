/**
 * A hub device row as an in-memory store holds it, and the row after a
 * persist op (the model every simulated hub database follows; tools/hub's
 * SQLite store does the same in SQL).
 */
import type { HubPersistOp } from '../../modules/hub/actions';
import { copyPending, type HubPendingSlot } from '../../modules/hub/hub';
import type { KeySlot, RekeyMode } from '../../modules/platform/keys';

export interface HubRow {
  readonly mode: RekeyMode;
  readonly active: KeySlot;
  readonly pending?: HubPendingSlot;
}

/** Copies of every byte (the core wipes what it retires). */
export function copyHubRow(row: HubRow): HubRow {
  const active = { id: row.active.id, key: row.active.key.slice() };
  return row.pending === undefined ? { mode: row.mode, active } : { mode: row.mode, active, pending: copyPending(row.pending) };
}

export function hubRowAfter(row: HubRow, op: HubPersistOp): HubRow {
  if (op.kind === 'storePending') {
    const pending: HubPendingSlot = op.dh === undefined ? { id: op.id, key: op.key.slice() } : { id: op.id, dh: { privateKey: op.dh.privateKey.slice(), publicKey: op.dh.publicKey.slice() } };
    return { mode: op.modeChange ?? row.mode, active: row.active, pending };
  }
  // Issue 14: HK9 replaces the pending slot; HE2 changes no key slot.
  if (op.kind === 'storeRecovered') return { mode: row.mode, active: row.active, pending: { id: op.id, key: op.key.slice() } };
  if (op.kind === 'storeDeviceStatic') return row;
  const pending = row.pending;
  if (pending === undefined || pending.id !== op.id) throw new Error(`hub row: promote ${op.id} without that pending key`);
  const key = pending.dh === undefined ? pending.key : op.key;
  if (key === undefined) throw new Error(`hub row: promote ${op.id} of a dh pending key without the derived key`);
  return { mode: row.mode, active: { id: op.id, key: key.slice() } };
}

/** A copy of `op` whose bytes the store owns. */
export function copyHubOp(op: HubPersistOp): HubPersistOp {
  if (op.kind === 'storePending') {
    return op.dh === undefined ? { ...op, key: op.key.slice() } : { ...op, dh: { privateKey: op.dh.privateKey.slice(), publicKey: op.dh.publicKey.slice() } };
  }
  if (op.kind === 'storeDeviceStatic') return { ...op, publicKey: op.publicKey.slice() };
  return op.key === undefined ? { ...op } : { ...op, key: op.key.slice() };
}
