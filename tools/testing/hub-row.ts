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
  /** Recovery (docs/PROTOCOL.md §12.6): absent on a row provisioned without a credential. */
  readonly devicePublicKey?: Uint8Array;
  readonly hubStaticId?: number;
  readonly enrolment?: 'armed' | 'ready';
}

/** The recovery fields of `row`, copied, only those present. */
function recoveryFields(row: HubRow): Pick<HubRow, 'devicePublicKey' | 'hubStaticId' | 'enrolment'> {
  return {
    ...(row.devicePublicKey === undefined ? {} : { devicePublicKey: row.devicePublicKey.slice() }),
    ...(row.hubStaticId === undefined ? {} : { hubStaticId: row.hubStaticId }),
    ...(row.enrolment === undefined ? {} : { enrolment: row.enrolment }),
  };
}

/** Copies of every byte (the core wipes what it retires). */
export function copyHubRow(row: HubRow): HubRow {
  const active = { id: row.active.id, key: row.active.key.slice() };
  return row.pending === undefined ? { mode: row.mode, active, ...recoveryFields(row) } : { mode: row.mode, active, pending: copyPending(row.pending), ...recoveryFields(row) };
}

export function hubRowAfter(row: HubRow, op: HubPersistOp): HubRow {
  switch (op.kind) {
    case 'storePending': {
      const pending: HubPendingSlot = op.dh === undefined ? { id: op.id, key: op.key.slice() } : { id: op.id, dh: { privateKey: op.dh.privateKey.slice(), publicKey: op.dh.publicKey.slice() } };
      // HK11: the mode moves to dh in the same commit as the dh pending that replaces the refused classic one.
      return { ...recoveryFields(row), mode: op.modeChange ?? row.mode, active: row.active, pending };
    }
    case 'storeRecovered':
      // HK9: (N, K_N) replaces the pending slot, in the classic form.
      return { ...recoveryFields(row), mode: row.mode, active: row.active, pending: { id: op.id, key: op.key.slice() } };
    case 'storeDeviceStatic': {
      // HE2: S_d and its hub static id; enrolment disarmed in the same commit.
      const { enrolment: _disarmed, ...rest } = recoveryFields(row);
      const base = { ...rest, mode: row.mode, active: row.active, devicePublicKey: op.publicKey.slice(), hubStaticId: op.hubStaticId };
      return row.pending === undefined ? base : { ...base, pending: row.pending };
    }
    case 'promote': {
      const pending = row.pending;
      if (pending === undefined || pending.id !== op.id) throw new Error(`hub row: promote ${op.id} without that pending key`);
      const key = pending.dh === undefined ? pending.key : op.key;
      if (key === undefined) throw new Error(`hub row: promote ${op.id} of a dh pending key without the derived key`);
      const fields = recoveryFields(row);
      // HE1: an armed enrolment becomes ready with the promotion of a dh-derived key.
      return { ...fields, ...(op.enrolmentReady === true && row.enrolment === 'armed' ? { enrolment: 'ready' as const } : {}), mode: row.mode, active: { id: op.id, key: key.slice() } };
    }
  }
}

/** A copy of `op` whose bytes the store owns. */
export function copyHubOp(op: HubPersistOp): HubPersistOp {
  switch (op.kind) {
    case 'storePending':
      return op.dh === undefined ? { ...op, key: op.key.slice() } : { ...op, dh: { privateKey: op.dh.privateKey.slice(), publicKey: op.dh.publicKey.slice() } };
    case 'storeRecovered':
      return { ...op, key: op.key.slice() };
    case 'storeDeviceStatic':
      return { ...op, publicKey: op.publicKey.slice() };
    case 'promote':
      return op.key === undefined ? { ...op } : { ...op, key: op.key.slice() };
  }
}
