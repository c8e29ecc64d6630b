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

  insert(deviceId: string, row: HubRow): void {
    this.#rows.set(deviceId, copyHubRow(row));
  }

  row(deviceId: string): HubRow {
    const row = this.#rows.get(deviceId);
    if (row === undefined) throw new Error(`db: no device ${deviceId}`);
    return row;
  }

  record(deviceId: string): HubDeviceRecord {
    const row = copyHubRow(this.row(deviceId));
    return row.pending === undefined ? { deviceId, mode: row.mode, active: row.active } : { deviceId, mode: row.mode, active: row.active, pending: row.pending };
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
    return `${rows.join(',')}|${writes.join(',')}`;
  }

  digest(): string {
    return [...this.#rows.entries()].map(([id, row]) => `${id}:${row.active.id}/${row.pending?.id ?? 0}`).join(',');
  }
}
