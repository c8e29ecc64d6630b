/**
 * The hub's simulated database: committed rows survive a crash, a write in
 * progress does not. A write is begun, then committed at a later step, then
 * acknowledged to the core at a later step still, so a hub crash can fall
 * before the commit (the write is lost), between commit and
 * acknowledgement (durable, but the core never heard), or after.
 */
import type { HubPersistOp } from '../../modules/hub/actions';
import type { HubDeviceRecord } from '../../modules/hub/hub';
import { copyHubOp, copyHubRow, hubRowAfter, type HubRow } from '../testing/hub-row';
import { fnv1a } from './rng';

export type { HubRow } from '../testing/hub-row';

export interface DbWrite {
  readonly op: HubPersistOp;
  /** When the commit happens. */
  commitAt: number;
  /** The commit step has happened (whether or not it made the write durable). */
  commitDone: boolean;
  /** The write is durable. */
  committed: boolean;
  /** When the core is told (after the commit, or before it for a lying host). */
  ackAt: number | undefined;
  acked: boolean;
  /** The commit is to be reported as failed (it may or may not have happened). */
  failure: 'none' | 'beforeCommit' | 'afterCommit';
}

export function rowAfter(row: HubRow, op: HubPersistOp): HubRow {
  return hubRowAfter(row, op);
}

export class SimHubDatabase {
  readonly #rows = new Map<string, HubRow>();
  /** Writes not yet finished, in the order they were begun (commits keep that order). */
  readonly writes: DbWrite[] = [];
  commits = 0;
  /**
   * Every durable state the database has been in, oldest first (the
   * scenario's backups: docs/VERIFICATION.md §11). The last one is always
   * the current durable state; a restore (`restore`) replaces the rows by
   * an earlier one and records the restored state as the newest.
   */
  readonly #snapshots: Map<string, HubRow>[] = [];

  insert(deviceId: string, row: HubRow): void {
    this.#rows.set(deviceId, copyHubRow(row));
    this.#snapshot();
  }

  /** Durable states recorded so far (the last is the current one). */
  get snapshots(): number {
    return this.#snapshots.length;
  }

  /** The rows of snapshot `index` (copies). */
  snapshotRows(index: number): ReadonlyMap<string, HubRow> {
    const snapshot = this.#snapshots[index];
    if (snapshot === undefined) throw new Error(`db: no snapshot ${index}`);
    return new Map([...snapshot].map(([id, row]) => [id, copyHubRow(row)]));
  }

  /**
   * An operator restores the database from backup `index` (or a failover to
   * a standby that had seen only that much): every row is replaced, writes
   * in progress are gone. The hub process must be down (the host crashes it first).
   */
  restore(index: number): void {
    const snapshot = this.snapshotRows(index);
    this.writes.length = 0;
    this.#rows.clear();
    for (const [id, row] of snapshot) this.#rows.set(id, row);
    this.#snapshot();
  }

  /** A digest of every recorded snapshot (the faults still possible depend on them). */
  snapshotsText(): string {
    return this.#snapshots.map((rows) => [...rows.values()].map((row) => `${row.active.id}.${fnv1a(row.active.key)}/${row.pending?.id ?? 0}.${row.pending === undefined ? 0 : fnv1a(row.pending.key ?? row.pending.dh.privateKey)}`).join(',')).join(';');
  }

  #snapshot(): void {
    this.#snapshots.push(new Map([...this.#rows].map(([id, row]) => [id, copyHubRow(row)])));
  }

  row(deviceId: string): HubRow {
    const row = this.#rows.get(deviceId);
    if (row === undefined) throw new Error(`db: no device ${deviceId}`);
    return row;
  }

  record(deviceId: string): HubDeviceRecord {
    const row = copyHubRow(this.row(deviceId));
    return { deviceId, ...row };
  }

  /**
   * Accepted recoveries per device (docs/PROTOCOL.md §12.7: counted in the
   * database after authentication, so a hub crash keeps them). Kept apart
   * from the rows: a restore does not roll the count back, which only
   * makes the limit stricter.
   */
  readonly #acceptedRecoveries = new Map<string, number[]>();

  acceptedRecoveries(deviceId: string): readonly number[] {
    return this.#acceptedRecoveries.get(deviceId) ?? [];
  }

  recordAcceptedRecovery(deviceId: string, at: number, windowMs: number): void {
    const recent = this.acceptedRecoveries(deviceId).filter((t) => t > at - windowMs);
    recent.push(at);
    this.#acceptedRecoveries.set(deviceId, recent);
  }

  records(): HubDeviceRecord[] {
    return [...this.#rows.keys()].map((id) => this.record(id));
  }

  begin(op: HubPersistOp, commitAt: number): DbWrite {
    const previous = this.writes[this.writes.length - 1];
    const copy: HubPersistOp = copyHubOp(op);
    const write: DbWrite = {
      op: copy,
      commitAt: Math.max(commitAt, previous?.commitAt ?? commitAt),
      commitDone: false,
      committed: false,
      ackAt: undefined,
      acked: false,
      failure: 'none',
    };
    this.writes.push(write);
    return write;
  }

  commit(write: DbWrite): void {
    this.#rows.set(write.op.deviceId, rowAfter(this.row(write.op.deviceId), write.op));
    write.committed = true;
    this.commits++;
    this.#snapshot();
  }

  /** Drops a write that is committed (or failed) and acknowledged. */
  finish(write: DbWrite): void {
    const at = this.writes.indexOf(write);
    if (at >= 0) this.writes.splice(at, 1);
  }

  /** The hub process died: writes in progress are gone (committed rows stay). */
  crash(): void {
    this.writes.length = 0;
  }

  /** Rows (with key digests) and writes in progress, for the state digest. */
  stateText(): string {
    const rows = [...this.#rows.entries()].map(([id, row]) => `${id}:${row.mode}${row.active.id}.${fnv1a(row.active.key)}/${row.pending?.id ?? 0}.${row.pending === undefined ? 0 : fnv1a(row.pending.key ?? row.pending.dh.privateKey)}`);
    const writes = this.writes.map((w) => `${w.op.kind}${'id' in w.op ? w.op.id : '-'}@${w.commitAt}:${w.commitDone ? 1 : 0}${w.committed ? 1 : 0}${w.ackAt ?? '-'}${w.acked ? 1 : 0}${w.failure}`);
    const accepted = [...this.#acceptedRecoveries.entries()].map(([id, times]) => `${id}:${times.join('.')}`);
    return `${rows.join(',')}|${writes.join(',')}|${accepted.join(',')}`;
  }

  digest(): string {
    return [...this.#rows.entries()].map(([id, row]) => `${id}:${row.active.id}/${row.pending?.id ?? 0}`).join(',');
  }
}
