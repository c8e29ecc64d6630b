/**
 * What the operator API, the dashboard and the metrics need of a hub
 * (docs/HUB.md §12), met by both backends: the SQLite hub (tools/hub/server.ts,
 * whose database answers at once) and an instance of a PostgreSQL tier
 * (tools/hub/postgres/hub.ts, whose database answers asynchronously; it adds
 * the lease and database figures of `tier`). Every call that reaches the
 * database may return a promise: the API awaits them all.
 */
import type { EventEmitter } from 'node:events';
import type { AuditEntry, AuditEntryInput, AuditQuery, Revocation } from '../audit';
import type { DeviceSummary } from '../device-row';
import type { Transport } from '../link';
import type { DeviceRecord } from '../records';
import type { RecoveryPolicy, RecoveryRecord, RecoveryRequestRow } from '../recovery';
import type { RecoveryCounters } from '../recovery-host';
import type { DeviceView, HubEvents, HubStats, RotateResult } from '../types';

export type MaybePromise<T> = T | Promise<T>;

export interface OperatorStore {
  /** The database answers (the readiness check); throws when it does not. */
  ping(): MaybePromise<unknown>;
  readAudit(query: AuditQuery): MaybePromise<AuditEntry[]>;
  /** Entries of `action` per `bucketMs` since `since` (the rotation chart's start). */
  auditCounts(action: string, since: number, bucketMs: number): MaybePromise<Map<number, number>>;
  listDevices(): MaybePromise<DeviceSummary[]>;
  getSummary(deviceId: string): MaybePromise<DeviceSummary | undefined>;
  insertDevices(records: readonly DeviceRecord[], now: number): MaybePromise<void>;
  revocation(deviceId: string): MaybePromise<Revocation | undefined>;
  revocationsAfter(seq: number): MaybePromise<Revocation[]>;
  readonly kekOperations: { readonly wrap: number; readonly unwrap: number; readonly unwrapFailed: number };
}

/** A PostgreSQL instance's leases and database connection (lockstep_lease_*, lockstep_database_* metrics). */
export interface TierFigures {
  readonly leasesTaken: number;
  readonly leasesLost: number;
  readonly leaseRefused: number;
  readonly leaseFailures: number;
  readonly fencedOut: number;
  readonly failedTransactions: number;
  readonly leased: number;
  readonly waitingForLease: number;
  /** LISTEN connection up (0: reconnecting with backoff). */
  readonly listening: boolean;
  readonly listenBackoffMs: number;
  readonly pool: { readonly total: number; readonly idle: number; readonly waiting: number };
}

export interface OperatorHub extends Pick<EventEmitter<HubEvents>, 'on' | 'off'> {
  readonly store: OperatorStore;
  readonly addresses: readonly { transport: Transport; host: string; port: number }[];
  readonly deviceIds: string[];
  hasDevice(deviceId: string): boolean;
  deviceState(deviceId: string): DeviceView;
  stats(): HubStats;
  rotate(deviceId: string): MaybePromise<RotateResult>;
  revoke(deviceId: string, actor: string, reason?: string): Promise<Revocation | undefined>;
  audit(entries: AuditEntryInput | readonly AuditEntryInput[]): MaybePromise<void>;
  readonly recoveryPolicy: RecoveryPolicy;
  readonly staticKeyIds: { current: number; ids: number[] } | undefined;
  readonly recoveryCounters: RecoveryCounters;
  recoveryRequests(): MaybePromise<RecoveryRequestRow[]>;
  recentRecoveries(limit?: number): MaybePromise<RecoveryRecord[]>;
  approveRecovery(deviceId: string, actor: string): MaybePromise<'approved' | 'already' | 'none' | 'missing'>;
  /** PostgreSQL only: the instance's lease and database figures. */
  readonly tierFigures?: TierFigures;
}

/** Runs `use` at once on a value, or when a promise settles (errors go to `failed`): SQLite stays synchronous. */
export function whenReady<T>(value: MaybePromise<T>, use: (value: T) => void, failed: (error: unknown) => void = () => {}): void {
  if (value instanceof Promise) value.then(use, failed);
  else use(value);
}
