/**
 * A `devices` row as both backends store it (the same columns in SQLite's
 * and PostgreSQL's migrations), and the summary of a row without its keys.
 * The one definition tools/hub/store.ts and tools/hub/postgres/store.ts share.
 */
import type { KeySlot, RekeyMode } from '../../modules/platform/keys';
import type { HubPendingSlot } from '../../modules/hub/hub';
import type { Keyring } from './kek';

export interface StoredDevice {
  readonly deviceId: string;
  readonly mode: RekeyMode;
  readonly active: KeySlot;
  /** A classic pending key, or a dh pending slot: the hub's ephemeral pair (stored as h ‖ H, wrapped like a key). */
  readonly pending?: HubPendingSlot;
  readonly createdAt: number;
  readonly activeSince: number;
  readonly pendingSince: number | undefined;
  readonly lastSeenAt: number | undefined;
  readonly rotations: number;
  readonly rotateRequestedAt: number | undefined;
  readonly rowid: number;
  /** Issue 14 (§12.6): the device's static public key S_d, the hub static id it knows; absent = not enrolled. */
  readonly devicePublicKey?: Uint8Array;
  readonly hubStaticId?: number;
  /** `hub enrol` armed it (HE1), or a dh key promoted after arming made it ready. */
  readonly enrolment?: 'armed' | 'ready';
  readonly enrolmentArmedAt?: number;
}

/** A device without its keys (what `devices` lists; needs no KEK). */
export type DeviceSummary = Omit<StoredDevice, 'active' | 'pending'> & {
  readonly activeKeyId: number;
  readonly pendingKeyId: number | undefined;
  /** How the pending key was offered (§11), when there is one. */
  readonly pendingMode: RekeyMode | undefined;
  readonly activeKek: number;
};

export interface DeviceRow {
  rowid: number;
  device_id: string;
  active_id: number;
  active_kek: number;
  active_key: Buffer;
  pending_id: number | null;
  pending_kek: number | null;
  pending_key: Buffer | null;
  created_at: number;
  active_since: number;
  pending_since: number | null;
  last_seen_at: number | null;
  rotations: number;
  rotate_requested_at: number | null;
  mode: RekeyMode;
  pending_dh: number;
  // recovery (SQLite migration 6, PostgreSQL migration 5; absent in an older database opened read-only)
  device_public_key?: Buffer | null;
  hub_static_id?: number | null;
  enrolment?: 'armed' | 'ready' | null;
  enrolment_armed_at?: number | null;
}

export function summaryOfRow(row: DeviceRow): DeviceSummary {
  return {
    deviceId: row.device_id,
    activeKeyId: row.active_id,
    pendingKeyId: row.pending_id ?? undefined,
    mode: row.mode,
    pendingMode: row.pending_id === null ? undefined : row.pending_dh === 1 ? 'dh' : 'classic',
    activeKek: row.active_kek,
    createdAt: row.created_at,
    activeSince: row.active_since,
    pendingSince: row.pending_since ?? undefined,
    lastSeenAt: row.last_seen_at ?? undefined,
    rotations: row.rotations,
    rotateRequestedAt: row.rotate_requested_at ?? undefined,
    rowid: row.rowid,
    ...(row.device_public_key === null || row.device_public_key === undefined ? {} : { devicePublicKey: new Uint8Array(row.device_public_key) }),
    ...(row.hub_static_id === null || row.hub_static_id === undefined ? {} : { hubStaticId: row.hub_static_id }),
    ...(row.enrolment === null || row.enrolment === undefined ? {} : { enrolment: row.enrolment }),
    ...(row.enrolment_armed_at === null || row.enrolment_armed_at === undefined ? {} : { enrolmentArmedAt: row.enrolment_armed_at }),
  };
}

/** The row with its keys unwrapped under `keyring` (both backends' stores read rows through this). */
export function storedOfRow(row: DeviceRow, keyring: Keyring): StoredDevice {
  const active = { id: row.active_id, key: keyring.unwrap(row.active_kek, row.device_id, row.active_id, row.active_key) };
  let pending: HubPendingSlot | undefined;
  if (row.pending_id !== null && row.pending_key !== null && row.pending_kek !== null) {
    const bytes = keyring.unwrap(row.pending_kek, row.device_id, row.pending_id, row.pending_key);
    if (row.pending_dh === 1) {
      // §11: a dh pending slot is the hub's ephemeral pair h ‖ H (64 bytes, wrapped like a key).
      pending = { id: row.pending_id, dh: { privateKey: bytes.slice(0, 32), publicKey: bytes.slice(32) } };
      bytes.fill(0);
    } else {
      pending = { id: row.pending_id, key: bytes };
    }
  }
  return { ...summaryOfRow(row), active, ...(pending === undefined ? {} : { pending }) } as StoredDevice;
}
