/**
 * The hub's simulated database: committed rows survive a crash, a write in
 * progress does not. A write is begun, then committed at a later step, then
 * acknowledged to the core at a later step still, so a hub crash can fall
 * before the commit (the write is lost), between commit and
 * acknowledgement (durable, but the core never heard), or after.
 *
 * Shared by several hub instances (docs/VERIFICATION.md §5a), it models the
 * PostgreSQL store's fencing (tools/hub/postgres/store.ts): each row has an
 * epoch and a row version; `lease` is its `UPDATE … SET epoch = epoch + 1
 * … RETURNING *` (the new epoch and the row in one atomic step), and a
 * key-slot write applies only under the fence its instance holds at the
 * commit (`pgWriteApplies`: the WHERE clauses of `PgHubStore.commit`). With
 * `fencing: 'unfenced'` (the broken variant, the store's `fenced: false`)
 * writes apply unconditionally, as that store's statements do.
 */
import type { HubPersistOp } from '../../modules/hub/actions';
import type { HubDeviceRecord } from '../../modules/hub/hub';
import { copyHubOp, copyHubRow, hubRowAfter, type HubRow } from '../testing/hub-row';
import { bytesEqual } from '../../modules/bytes';
import { fnv1a } from './rng';

export type { HubRow } from '../testing/hub-row';

/** How writes are conditioned: one hub (the SQLite store), or instances on the PostgreSQL store, fenced or not. */
export type DbFencing = 'single' | 'fenced' | 'unfenced';

/** What an instance holds for a device it serves (as tools/hub/postgres/store.ts `Fence`). */
export interface SimFence {
  readonly epoch: number;
  rowVersion: number;
}

export interface DbWrite {
  readonly op: HubPersistOp;
  /** The hub instance that began it. */
  readonly instance: number;
  /** Whether the commit changed the row (false: fenced out, or the slot conditions failed). */
  applied: boolean;
  /** The row version the commit gave the row (the instance advances its fence to it when told). */
  rowVersion: number | undefined;
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

interface Fenced {
  epoch: number;
  rowVersion: number;
  leaseOwner: number | undefined;
}

/**
 * Whether a key-slot write of the PostgreSQL store applies to `row`
 * (PgHubStore.commit): fenced, `epoch = $3 AND row_version = $4` plus the
 * slot conditions (a pending key only with none pending and the preceding
 * active id; a promotion only of the pending id, of its kind); unfenced, only
 * what the unfenced statements keep (a promotion needs some pending key).
 */
export function pgWriteApplies(row: HubRow, fence: Fenced, op: HubPersistOp, held: SimFence | undefined, fenced: boolean): boolean {
  if (fenced && (held === undefined || held.epoch !== fence.epoch || held.rowVersion !== fence.rowVersion)) return false;
  // The recovery ops' and the mode change's conditions are not slot guards: the unfenced store keeps them too.
  switch (op.kind) {
    case 'storeRecovered':
      return op.id > row.active.id && (row.pending === undefined || op.id > row.pending.id);
    case 'storeDeviceStatic':
      return (
        (row.devicePublicKey === undefined && row.enrolment === 'ready') ||
        (row.devicePublicKey !== undefined && bytesEqual(row.devicePublicKey, op.publicKey) && row.hubStaticId === op.hubStaticId)
      );
    case 'storePending':
      if (op.modeChange === 'dh') return row.active.id === op.id - 1 && (row.pending === undefined || (row.pending.id === op.id && row.pending.dh === undefined));
      // HK12 (`replaces`): over the refused pending it names; otherwise the slot is empty.
      return !fenced || (row.active.id === op.id - 1 && (op.replaces === undefined ? row.pending === undefined : row.pending?.id === op.replaces));
    case 'promote':
      if (!fenced) return row.pending !== undefined;
      return row.pending !== undefined && row.pending.id === op.id && (row.pending.dh !== undefined) === (op.key !== undefined);
  }
}

/** The row after an unfenced write (its statements take whatever pending key the row holds). */
function unfencedRowAfter(row: HubRow, op: HubPersistOp): HubRow {
  const pending = row.pending;
  if (op.kind !== 'promote' || pending === undefined || (pending.id === op.id && (pending.dh === undefined) === (op.key === undefined))) return rowAfter(row, op);
  // SET active_id = pending_id, active_key = the op's derived key (its dh statement) or pending_key (its classic one: for a dh pending, the wrapped pair's bytes).
  const pair = pending.dh === undefined ? undefined : new Uint8Array([...pending.dh.privateKey, ...pending.dh.publicKey]);
  const key = op.key ?? pending.key ?? pair!;
  return rowAfter({ ...row, pending: { id: pending.id, key } }, { kind: 'promote', deviceId: op.deviceId, id: pending.id, ...(op.enrolmentReady === true ? { enrolmentReady: true as const } : {}) });
}

export class SimHubDatabase {
  readonly #rows = new Map<string, HubRow>();
  readonly #fences = new Map<string, Fenced>();
  readonly fencing: DbFencing;
  /** Writes not yet finished, in the order they were begun (commits keep that order). */
  readonly writes: DbWrite[] = [];
  commits = 0;
  leases = 0;
  fencedOut = 0;

  constructor(fencing: DbFencing = 'single') {
    this.fencing = fencing;
  }

  insert(deviceId: string, row: HubRow): void {
    this.#rows.set(deviceId, copyHubRow(row));
    if (!this.#fences.has(deviceId)) this.#fences.set(deviceId, { epoch: 0, rowVersion: 0, leaseOwner: undefined });
  }

  /** The fence columns of a row (epoch, row version, lease owner). */
  fenceOf(deviceId: string): { readonly epoch: number; readonly rowVersion: number; readonly leaseOwner: number | undefined } {
    const fence = this.#fences.get(deviceId);
    if (fence === undefined) throw new Error(`db: no device ${deviceId}`);
    return fence;
  }

  /** PgHubStore.lease: epoch + 1 and the row as it is now, one atomic step. */
  lease(deviceId: string, instance: number): { record: HubDeviceRecord; fence: SimFence } {
    const fence = this.#fences.get(deviceId);
    if (fence === undefined) throw new Error(`db: no device ${deviceId}`);
    fence.epoch++;
    fence.leaseOwner = instance;
    this.leases++;
    return { record: this.record(deviceId), fence: { epoch: fence.epoch, rowVersion: fence.rowVersion } };
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

  begin(op: HubPersistOp, commitAt: number, instance = 0): DbWrite {
    // Commits keep the order in which one instance began them (one connection's transactions).
    const previous = this.writes.filter((w) => w.instance === instance).at(-1);
    const copy: HubPersistOp = copyHubOp(op);
    const write: DbWrite = {
      op: copy,
      instance,
      applied: false,
      rowVersion: undefined,
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

  /**
   * The write's transaction commits. One hub: it applies. Instances: under
   * the fence `held` (the instance's, read at this moment as the real store
   * reads it in the transaction), or unconditionally when unfenced.
   */
  commit(write: DbWrite, held?: SimFence): void {
    const id = write.op.deviceId;
    const row = this.row(id);
    write.committed = true;
    this.commits++;
    if (this.fencing === 'single') {
      this.#rows.set(id, rowAfter(row, write.op));
      write.applied = true;
      return;
    }
    const fence = this.#fences.get(id)!;
    if (!pgWriteApplies(row, fence, write.op, held, this.fencing === 'fenced')) {
      this.fencedOut++;
      return;
    }
    this.#rows.set(id, this.fencing === 'fenced' ? rowAfter(row, write.op) : unfencedRowAfter(row, write.op));
    fence.rowVersion++;
    write.applied = true;
    write.rowVersion = fence.rowVersion;
  }

  /** Drops a write that is committed (or failed) and acknowledged. */
  finish(write: DbWrite): void {
    const at = this.writes.indexOf(write);
    if (at >= 0) this.writes.splice(at, 1);
  }

  /** A hub process died: its writes in progress are gone (committed rows stay). */
  crash(instance = 0): void {
    for (let i = this.writes.length - 1; i >= 0; i--) if (this.writes[i]!.instance === instance) this.writes.splice(i, 1);
  }

  /** Writes of one instance not yet finished. */
  writesOf(instance: number): number {
    let count = 0;
    for (const write of this.writes) if (write.instance === instance) count++;
    return count;
  }

  /** Rows (with key digests) and writes in progress, for the state digest. */
  stateText(): string {
    const rows = [...this.#rows.entries()].map(([id, row]) => `${id}:${row.mode}${row.active.id}.${fnv1a(row.active.key)}/${row.pending?.id ?? 0}.${row.pending === undefined ? 0 : fnv1a(row.pending.key ?? row.pending.dh.privateKey)}`);
    const writes = this.writes.map(
      (w) =>
        `${w.op.kind}${'id' in w.op ? w.op.id : '-'}@${w.commitAt}:${w.commitDone ? 1 : 0}${w.committed ? 1 : 0}${w.ackAt ?? '-'}${w.acked ? 1 : 0}${w.failure}${this.fencing === 'single' ? '' : `/${w.instance}${w.applied ? 1 : 0}${w.rowVersion ?? '-'}`}`,
    );
    const fences = this.fencing === 'single' ? '' : `|${[...this.#fences.values()].map((f) => `${f.epoch}.${f.rowVersion}.${f.leaseOwner ?? '-'}`).join(',')}`;
    return `${rows.join(',')}|${writes.join(',')}${fences}`;
  }

  digest(): string {
    return [...this.#rows.entries()].map(([id, row]) => `${id}:${row.active.id}/${row.pending?.id ?? 0}`).join(',');
  }
}
