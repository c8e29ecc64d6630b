/**
 * The audit trail (docs/HUB.md §12): an append-only record, in the hub
 * database (migration 5), of every administrative action and key event —
 * who (a token id, `cli:<user>`, `hub` for the hub's own key events), what,
 * when, outcome. Triggers refuse UPDATE and DELETE on the table.
 *
 * Never key material: an entry's detail holds only numbers, booleans and
 * short strings (ids, error codes), checked here before anything is written,
 * so no code path can put a key (64 bytes = 128 hex digits) in a row.
 *
 * Key events (a pending key stored = rotation.start, a promotion =
 * rotation.confirm) are inserted by the store inside the group commit that
 * makes the change (`recordKeyEvents`). Administrative actions are written
 * synchronously, before the response.
 */
import type Database from 'better-sqlite3';
import type { HubPersistOp } from '../../modules/hub/actions';

export type AuditDetail = Readonly<Record<string, string | number | boolean | null>>;

export interface AuditEntryInput {
  readonly actor: string;
  readonly action: string;
  readonly deviceId?: string | undefined;
  readonly outcome: string;
  readonly detail?: AuditDetail;
}

export interface AuditEntry extends AuditEntryInput {
  readonly seq: number;
  readonly at: number;
}

export interface AuditQuery {
  /** Entries with seq < before (paging backwards from the newest). */
  readonly before?: number;
  readonly deviceId?: string;
  readonly action?: string;
  readonly limit?: number;
}

export interface Revocation {
  readonly seq: number;
  readonly deviceId: string;
  readonly revokedAt: number;
  readonly actor: string;
  readonly reason: string | undefined;
  readonly lastKeyId: number;
}

const MAX_DETAIL_STRING = 64;
export const MAX_AUDIT_PAGE = 500;

/** Refuses a detail that could carry key material (a long string) or is not flat. */
export function checkDetail(detail: AuditDetail | undefined): string | null {
  if (detail === undefined) return null;
  for (const [name, value] of Object.entries(detail)) {
    if (value !== null && typeof value === 'object') throw new Error(`audit detail ${name}: not flat`);
    if (typeof value === 'string' && value.length > MAX_DETAIL_STRING) throw new Error(`audit detail ${name}: longer than ${MAX_DETAIL_STRING} characters`);
  }
  return JSON.stringify(detail);
}

/** A row of audit_log as both backends return it (tools/hub/postgres/audit.ts reads the same table). */
export interface AuditRow {
  seq: number;
  at: number;
  actor: string;
  action: string;
  device_id: string | null;
  outcome: string;
  detail: string | null;
}

/**
 * Appends entries in one transaction. `durable: false` (key events) commits
 * without an fsync of its own (synchronous=NORMAL for this transaction: in
 * WAL mode the rows become durable with the next key commit's fsync, which
 * covers every earlier WAL frame, or at the next checkpoint), so auditing a
 * rotation adds no fsync; consistency is WAL's either way.
 */
export function appendAudit(db: Database.Database, entries: readonly AuditEntryInput[], now: number, durable = true): void {
  if (entries.length === 0) return;
  const insert = db.prepare('INSERT INTO audit_log (at, actor, action, device_id, outcome, detail) VALUES (?, ?, ?, ?, ?, ?)');
  const rows = entries.map((e) => [now, e.actor.slice(0, 64), e.action, e.deviceId?.toLowerCase() ?? null, e.outcome, checkDetail(e.detail)] as const);
  const write = db.transaction(() => {
    for (const row of rows) insert.run(...row);
  });
  if (durable || db.memory) {
    write();
    return;
  }
  const before = db.pragma('synchronous', { simple: true }) as number;
  db.pragma('synchronous = NORMAL');
  try {
    write();
  } finally {
    db.pragma(`synchronous = ${before}`);
  }
}

export function readAudit(db: Database.Database, query: AuditQuery): AuditEntry[] {
  const where: string[] = [];
  const args: (string | number)[] = [];
  if (query.before !== undefined) {
    where.push('seq < ?');
    args.push(query.before);
  }
  if (query.deviceId !== undefined) {
    where.push('device_id = ?');
    args.push(query.deviceId.toLowerCase());
  }
  if (query.action !== undefined) {
    where.push('action = ?');
    args.push(query.action);
  }
  const limit = Math.min(Math.max(query.limit ?? 100, 1), MAX_AUDIT_PAGE);
  const sql = `SELECT * FROM audit_log ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ${limit}`;
  return (db.prepare(sql).all(...args) as AuditRow[]).map(auditEntryOf);
}

export function auditEntryOf(row: AuditRow): AuditEntry {
  return {
    seq: row.seq,
    at: row.at,
    actor: row.actor,
    action: row.action,
    ...(row.device_id === null ? {} : { deviceId: row.device_id }),
    outcome: row.outcome,
    ...(row.detail === null ? {} : { detail: JSON.parse(row.detail) as AuditDetail }),
  };
}

/** A row of revoked_devices (both backends). */
export interface RevocationRow {
  seq: number;
  device_id: string;
  revoked_at: number;
  actor: string;
  reason: string | null;
  last_key_id: number;
}

export function revocationOf(row: RevocationRow): Revocation {
  return { seq: row.seq, deviceId: row.device_id, revokedAt: row.revoked_at, actor: row.actor, reason: row.reason ?? undefined, lastKeyId: row.last_key_id };
}

export function revocationsAfter(db: Database.Database, seq: number, limit = 1000): Revocation[] {
  return (db.prepare('SELECT * FROM revoked_devices WHERE seq > ? ORDER BY seq LIMIT ?').all(seq, limit) as RevocationRow[]).map(revocationOf);
}

export function findRevocation(db: Database.Database, deviceId: string): Revocation | undefined {
  const row = db.prepare('SELECT * FROM revoked_devices WHERE device_id = ?').get(deviceId.toLowerCase()) as RevocationRow | undefined;
  return row === undefined ? undefined : revocationOf(row);
}

/**
 * Deletes the device's row (both key slots with it; secure_delete zeroes the
 * freed cells), records the revocation and its audit entry, in one
 * transaction. Returns undefined when there is no such device (nothing
 * changed). The caller checkpoints the WAL so no older copy of the row stays.
 */
export function revokeInDatabase(db: Database.Database, deviceId: string, actor: string, reason: string | undefined, now: number): Revocation | undefined {
  const id = deviceId.toLowerCase();
  return db.transaction(() => {
    const row = db.prepare('SELECT active_id FROM devices WHERE device_id = ?').get(id) as { active_id: number } | undefined;
    if (row === undefined) return undefined;
    db.prepare('DELETE FROM devices WHERE device_id = ?').run(id);
    db.prepare('INSERT INTO revoked_devices (device_id, revoked_at, actor, reason, last_key_id) VALUES (?, ?, ?, ?, ?)').run(id, now, actor.slice(0, 64), reason ?? null, row.active_id);
    appendAudit(db, [{ actor, action: 'device.revoke', deviceId: id, outcome: 'ok', detail: { lastKeyId: row.active_id } }], now);
    return findRevocation(db, id);
  }).immediate();
}

/**
 * How many entries of `action` fell in each `bucketMs` bucket since `since`
 * (the dashboard's rate chart survives a hub restart). The first entry at or
 * after `since` is found by binary search on seq (times grow with seq), so
 * only the tail is read, and at most `maxRows` of it.
 */
export function countsSince(db: Database.Database, action: string, since: number, bucketMs: number, maxRows = 500_000): Map<number, number> {
  const last = (db.prepare('SELECT MAX(seq) AS seq FROM audit_log').get() as { seq: number | null }).seq;
  const out = new Map<number, number>();
  if (last === null) return out;
  const atOf = db.prepare('SELECT at FROM audit_log WHERE seq >= ? ORDER BY seq LIMIT 1');
  let low = 1;
  let high = last + 1;
  while (low < high) {
    const mid = Math.floor((low + high) / 2);
    const row = atOf.get(mid) as { at: number } | undefined;
    if (row !== undefined && row.at < since) low = mid + 1;
    else high = mid;
  }
  const rows = db
    .prepare(`SELECT (at / ${Math.floor(bucketMs)}) AS bucket, COUNT(*) AS n FROM (SELECT at FROM audit_log WHERE seq >= ? AND action = ? AND at >= ? ORDER BY seq LIMIT ?) GROUP BY bucket`)
    .all(low, action, since, maxRows) as { bucket: number; n: number }[];
  for (const row of rows) out.set(Math.floor(row.bucket) * bucketMs, row.n);
  return out;
}

const keyEventInserts = new WeakMap<Database.Database, Database.Statement>();

/**
 * The key events of a group commit, inserted inside its transaction (the
 * caller's): a row is durable exactly when the key change it records is,
 * and auditing costs no transaction or fsync of its own.
 */
export function recordKeyEvents(db: Database.Database, ops: readonly HubPersistOp[], applied: readonly boolean[], now: number): void {
  let insert = keyEventInserts.get(db);
  if (insert === undefined) {
    insert = db.prepare("INSERT INTO audit_log (at, actor, action, device_id, outcome, detail) VALUES (?, 'hub', ?, ?, 'ok', ?)");
    keyEventInserts.set(db, insert);
  }
  for (const [i, op] of ops.entries()) {
    if (applied[i] !== true) continue;
    if (op.kind === 'storePending') {
      const mode = op.modeChange === 'dh' ? ',"modeChange":"dh"' : '';
      insert.run(now, 'rotation.start', op.deviceId, `{"keyId":${op.id},"mode":"${op.dh === undefined ? 'classic' : 'dh'}"${mode}}`);
    } else if (op.kind === 'promote') {
      insert.run(now, 'rotation.confirm', op.deviceId, op.enrolmentReady === true ? `{"keyId":${op.id},"enrolmentReady":true}` : `{"keyId":${op.id}}`);
    } else if (op.kind === 'storeRecovered') {
      insert.run(now, 'recovery.store', op.deviceId, `{"keyId":${op.id}}`); // issue 14: HK9, in the commit that makes it durable
    } else {
      insert.run(now, 'enrol.store', op.deviceId, `{"hubStaticId":${op.hubStaticId}}`); // issue 14: HE2
    }
  }
}

/** Entries written at the end of this turn of the event loop (rare events: a failed commit). */
export class AuditLog {
  static readonly MAX_BUFFERED = 4096;
  readonly #buffer: AuditEntryInput[] = [];
  #scheduled = false;
  written = 0;
  failures = 0;

  constructor(
    private readonly write: (entries: readonly AuditEntryInput[], durable: boolean) => void,
    private readonly failed: (error: unknown) => void,
  ) {}

  /** An administrative action: durable when this returns (throws if it could not be written). */
  now(entries: readonly AuditEntryInput[]): void {
    this.flush();
    this.write(entries, true);
    this.written += entries.length;
  }

  /** A key event: written at the end of this turn of the event loop. */
  later(entry: AuditEntryInput): void {
    checkDetail(entry.detail);
    this.#buffer.push(entry);
    if (this.#buffer.length >= AuditLog.MAX_BUFFERED) this.flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.#scheduled = false;
    if (this.#buffer.length === 0) return;
    const entries = this.#buffer.splice(0);
    try {
      this.write(entries, false);
      this.written += entries.length;
    } catch (error) {
      this.failures += entries.length;
      this.failed(error);
    }
  }
}
