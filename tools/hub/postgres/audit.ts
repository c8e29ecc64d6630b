/**
 * The audit trail and revocations on PostgreSQL (docs/HUB.md §12.5, §12.6,
 * §13.10): the same rows and rules as tools/hub/audit.ts on SQLite, in the
 * tables of PostgreSQL migration 4 (`audit_log`, append-only by a trigger
 * that refuses UPDATE and DELETE; `revoked_devices`).
 *
 * - Key events (rotation.start, rotation.confirm) are inserted inside the
 *   fenced group-commit transaction that makes the key change, so an entry
 *   is durable exactly when its change is (PgHubStore.commit).
 * - Administrative actions are written in their own transaction before the
 *   caller answers (synchronous_commit=on: durable on return).
 * - A revocation deletes the row (both wrapped key slots), records the id in
 *   revoked_devices and writes its audit entry in one transaction, and sends
 *   NOTIFY lockstep_revoke (a wake-up only: every instance also polls
 *   revoked_devices by seq, the record). The deleted row's dead tuple and the
 *   WAL keep its wrapped keys until the KEK version that wrapped them is
 *   destroyed (crypto-shredding, docs/HUB.md §13.6).
 * - Never key material: details pass `checkDetail` (flat, short strings).
 */
import type pg from 'pg';
import type { HubPersistOp } from '../../../modules/hub/actions';
import { auditEntryOf, checkDetail, MAX_AUDIT_PAGE, revocationOf, type AuditEntry, type AuditEntryInput, type AuditQuery, type AuditRow, type Revocation, type RevocationRow } from '../audit';

export const NOTIFY_REVOKE = 'lockstep_revoke';

type Queryable = Pick<pg.PoolClient, 'query'>;

/** Inserts entries with one statement (a caller's transaction, or its own). */
export async function appendAuditPg(db: Queryable, entries: readonly AuditEntryInput[], now: number): Promise<void> {
  if (entries.length === 0) return;
  const details = entries.map((e) => checkDetail(e.detail)); // before anything is written
  await db.query(
    `INSERT INTO audit_log (at, actor, action, device_id, outcome, detail)
     SELECT $1, a, b, d, o, t FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS u(a, b, d, o, t)`,
    [
      now,
      entries.map((e) => e.actor.slice(0, 64)),
      entries.map((e) => e.action),
      entries.map((e) => e.deviceId?.toLowerCase() ?? null),
      entries.map((e) => e.outcome),
      details,
    ],
  );
}

/** The key events of a group commit, inside its transaction (only the ops that applied). */
export async function recordKeyEventsPg(db: Queryable, ops: readonly HubPersistOp[], applied: readonly boolean[], now: number): Promise<void> {
  const entries: AuditEntryInput[] = [];
  // The same entries as SQLite's recordKeyEvents (tools/hub/audit.ts).
  for (const [i, op] of ops.entries()) {
    if (applied[i] !== true) continue;
    if (op.kind === 'storePending') {
      entries.push({ actor: 'hub', action: 'rotation.start', deviceId: op.deviceId, outcome: 'ok', detail: { keyId: op.id, mode: op.dh === undefined ? 'classic' : 'dh', ...(op.modeChange === 'dh' ? { modeChange: 'dh' } : {}) } });
    } else if (op.kind === 'promote') {
      entries.push({ actor: 'hub', action: 'rotation.confirm', deviceId: op.deviceId, outcome: 'ok', detail: { keyId: op.id, ...(op.enrolmentReady === true ? { enrolmentReady: true } : {}) } });
    } else if (op.kind === 'storeRecovered') {
      entries.push({ actor: 'hub', action: 'recovery.store', deviceId: op.deviceId, outcome: 'ok', detail: { keyId: op.id } });
    } else {
      entries.push({ actor: 'hub', action: 'enrol.store', deviceId: op.deviceId, outcome: 'ok', detail: { hubStaticId: op.hubStaticId } });
    }
  }
  await appendAuditPg(db, entries, now);
}

export async function readAuditPg(db: Queryable, query: AuditQuery): Promise<AuditEntry[]> {
  const where: string[] = [];
  const args: (string | number)[] = [];
  if (query.before !== undefined) {
    args.push(query.before);
    where.push(`seq < $${args.length}`);
  }
  if (query.deviceId !== undefined) {
    args.push(query.deviceId.toLowerCase());
    where.push(`device_id = $${args.length}`);
  }
  if (query.action !== undefined) {
    args.push(query.action);
    where.push(`action = $${args.length}`);
  }
  const limit = Math.min(Math.max(Math.floor(query.limit ?? 100), 1), MAX_AUDIT_PAGE);
  const rows = await db.query<AuditRow>(`SELECT * FROM audit_log ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ${limit}`, args);
  return rows.rows.map(auditEntryOf); // (BIGINT columns arrive as numbers: the store's type parser)
}

export async function revocationsAfterPg(db: Queryable, seq: number, limit = 1000): Promise<Revocation[]> {
  return (await db.query<RevocationRow>('SELECT * FROM revoked_devices WHERE seq > $1 ORDER BY seq LIMIT $2', [seq, limit])).rows.map(revocationOf);
}

export async function findRevocationPg(db: Queryable, deviceId: string): Promise<Revocation | undefined> {
  const row = (await db.query<RevocationRow>('SELECT * FROM revoked_devices WHERE device_id = $1', [deviceId.toLowerCase()])).rows[0];
  return row === undefined ? undefined : revocationOf(row);
}

/**
 * Inside the caller's transaction: deletes the row (locked first, so a
 * concurrent fenced write of the serving instance either committed before or
 * matches no row after), records the revocation and its audit entry, and
 * notifies the instances (delivered at commit). Undefined: no such device.
 */
export async function revokeInTransaction(client: Queryable, deviceId: string, actor: string, reason: string | undefined, now: number): Promise<Revocation | undefined> {
  const id = deviceId.toLowerCase();
  const row = (await client.query<{ active_id: number }>('DELETE FROM devices WHERE device_id = $1 RETURNING active_id', [id])).rows[0];
  if (row === undefined) return undefined;
  const inserted = (
    await client.query<RevocationRow>(
      'INSERT INTO revoked_devices (device_id, revoked_at, actor, reason, last_key_id) VALUES ($1, $2, $3, $4, $5) RETURNING *',
      [id, now, actor.slice(0, 64), reason ?? null, row.active_id],
    )
  ).rows[0] as RevocationRow;
  await appendAuditPg(client, [{ actor, action: 'device.revoke', deviceId: id, outcome: 'ok', detail: { lastKeyId: Number(row.active_id) } }], now);
  await client.query('SELECT pg_notify($1, $2)', [NOTIFY_REVOKE, id]);
  return revocationOf(inserted);
}
