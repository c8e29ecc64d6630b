/**
 * A `devices` row as both backends store it (SQLite migrations 1-5,
 * PostgreSQL migrations 1-3: the same columns), and the summary of a row
 * without its keys. Imported by tools/hub/postgres/store.ts; tools/hub/store.ts
 * still has its own copy (DeviceRow, summaryOf) until it is folded onto this
 * one (docs/HUB.md §13.9).
 */
import type { RekeyMode } from '../../modules/platform/keys';
import type { DeviceSummary } from './store';

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
  };
}
