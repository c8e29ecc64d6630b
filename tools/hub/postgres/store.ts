/**
 * The hub's durable state in PostgreSQL (node-postgres), for many hub
 * instances sharing one database (docs/HUB.md §13).
 *
 * Invariants:
 * - Durability as on SQLite: every session runs with synchronous_commit=on,
 *   so a commit is durable (flushed to the primary's WAL, and to a
 *   synchronous standby where one is configured) when `commit` resolves;
 *   the host calls `HubCore.persisted` only then (rules H1, H2).
 * - Fencing (docs/HUB.md §13.2): an instance acts for a device only under a
 *   lease: `lease` increments the device's epoch and returns the row as it
 *   is now, in one statement (the reload and the epoch are one atomic
 *   step). Every key-slot write is conditional on (epoch, row_version) as
 *   the instance last saw them, and bumps row_version; a write from an
 *   instance whose lease was taken over matches no row and reports failure.
 *   No lease expires: safety never depends on timing.
 * - Keys are wrapped under the KEK exactly as on SQLite (tools/hub/kek.ts);
 *   the KEK is never in the database. A retired key is gone once the KEK
 *   version that wrapped it is destroyed (crypto-shredding, docs/HUB.md §13.5):
 *   dead tuples, WAL and base backups only ever hold wrapped forms.
 * - The pool is bounded (`poolSize`); a query waits at most
 *   `connectTimeoutMs` for a connection, and a session idle inside a
 *   transaction is ended by the server (idle_in_transaction_session_timeout:
 *   liveness only, e.g. an instance stopped mid-transaction).
 */
import { checkDetail } from '../audit';
import { decide, RECOVERY_STATUS_NAMES, type RecoveryDecision, type RecoveryPolicy, type RecoveryRecord, type RecoveryRequestInput, type RecoveryRequestRow } from '../recovery';
import { appendRevocation, readRevocations } from '../revocation-file';
import { hostname } from 'node:os';
import pg from 'pg';
import { LockstepError } from '../../../modules/errors';
import { RecoveryStatus } from '../../../modules/protocol/constants';
import type { HubPersistOp } from '../../../modules/hub/actions';
import type { RekeyMode } from '../../../modules/platform/keys';
import { KekError, Keyring, resolveKeyring, type KeyringChoice } from '../kek';
import type { DeviceRecord } from '../records';
import type { DeviceSummary, StoredDevice } from '../store';
import { storedOfRow, summaryOfRow, type DeviceRow } from '../device-row';
import type { AuditEntry, AuditEntryInput, AuditQuery, Revocation } from '../audit';
import { appendAuditPg, findRevocationPg, NOTIFY_REVOKE, readAuditPg, recordKeyEventsPg, revocationsAfterPg, revokeInTransaction } from './audit';
import { ATTENTION_PREDICATE, migratePostgres } from './schema';

/** What an instance holds for a device it serves: the epoch it took and the row version it last wrote or read. */
export interface Fence {
  readonly epoch: number;
  rowVersion: number;
}

export interface PgStoreOptions extends KeyringChoice {
  /** Connections in the pool (bounded); default 8. */
  readonly poolSize?: number;
  /** How long a query waits for a pool connection, ms; default 5000. */
  readonly connectTimeoutMs?: number;
  /** Server-side statement timeout, ms; default 10000. */
  readonly statementTimeoutMs?: number;
  /** This instance's id (lease owner). */
  readonly instance?: string;
  /**
   * false: key-slot writes are unconditional — no epoch, no row version, no
   * key-id condition (the broken variant the tests and docs/model/fencing.pml
   * refute; never in production).
   */
  readonly fenced?: boolean;
  /** Called for errors of idle pool connections (e.g. pg_terminate_backend). */
  readonly onPoolError?: (error: Error) => void;
  /**
   * The append-only revocation file that survives a restore of the database (docs/HUB.md §14.4):
   * default `<KEK file>.revoked` beside the keyring file (--kek-file or LOCKSTEP_KEK_FILE); false:
   * none (a keyring given inline has no file to sit beside: then name one).
   */
  readonly revocationFile?: string | false;
}

/** The row with the fence (PostgreSQL migration 2). */
interface PgRow extends DeviceRow {
  epoch: number;
  lease_owner: string | null;
  row_version: number;
}

const INT8 = 20;
const types = {
  getTypeParser: (oid: number, format?: 'text' | 'binary') =>
    oid === INT8 ? (value: string) => Number(value) : (pg.types.getTypeParser as (o: number, f?: string) => unknown)(oid, format),
} as pg.CustomTypesConfig;

/** A recovery decided after another instance took the device's lease: the device asks again this soon. */
const LEASE_LOST_RETRY_SECONDS = 5;

export const NOTIFY_ROTATE = 'lockstep_rotate';
/** The control poll's query ($1: the instance); tests/hub-postgres-poll.test.ts checks that it is served by the partial index. */
export const ATTENTION_QUERY =
  'SELECT device_id, epoch, mode, record_changed_at IS NOT NULL AS changed, rotate_requested_at IS NOT NULL AS rotate FROM devices ' +
  `WHERE lease_owner = $1 AND (${ATTENTION_PREDICATE}) ORDER BY rotate_requested_at NULLS LAST`;
export const NOTIFY_LEASE = 'lockstep_lease';

export class PgHubStore {
  readonly path: string;
  readonly instance: string;
  readonly fenced: boolean;
  readonly #pool: pg.Pool;
  readonly #keyring: Keyring;
  readonly #config: pg.PoolConfig;
  /** Record each applied key-slot write in the audit trail, inside its own commit's transaction (tools/hub/postgres/audit.ts). */
  auditKeyEvents = true;
  /** The revocation file this store appends to and applied when it opened (undefined: none). */
  readonly revocationFile: string | undefined;
  /** Devices the revocation file erased again when the store opened (a restore had brought their rows back). */
  readonly reRevoked: string[] = [];
  /** Device ids the revocation file holds (so the table's revocations are folded into it once). */
  readonly #inFile = new Set<string>();

  private constructor(url: string, keyring: Keyring, config: pg.PoolConfig, options: PgStoreOptions) {
    this.path = redact(url);
    this.#keyring = keyring;
    this.#config = config;
    this.#pool = new pg.Pool(config);
    this.#pool.on('error', (error) => options.onPoolError?.(error));
    this.instance = options.instance ?? `${hostname()}:${process.pid}`;
    this.fenced = options.fenced ?? true;
    this.revocationFile = options.revocationFile === false ? undefined : (options.revocationFile ?? pgSidecarPath(options, 'revoked'));
  }

  /** Connects, migrates and checks the keyring against the stored rows. */
  static async open(url: string, options: PgStoreOptions = {}): Promise<PgHubStore> {
    const keyring = pgKeyring(options);
    const statementTimeout = options.statementTimeoutMs ?? 10_000;
    const config: pg.PoolConfig = {
      connectionString: url,
      max: options.poolSize ?? 8,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
      idleTimeoutMillis: 30_000,
      types,
      options: `-c synchronous_commit=on -c statement_timeout=${statementTimeout} -c idle_in_transaction_session_timeout=${statementTimeout}`,
    };
    const store = new PgHubStore(url, keyring, config, options);
    try {
      const client = await store.#pool.connect();
      let broken = false;
      const onError = (): void => {
        broken = true;
      };
      client.on('error', onError);
      try {
        await migratePostgres(client, () => keyring.newestId);
      } finally {
        client.removeListener('error', onError);
        client.release(broken);
      }
      await store.#adoptKeyring();
      await store.#checkKeyring();
      await store.#applyRevocationFile();
    } catch (error) {
      await store.close();
      throw error;
    }
    return store;
  }

  /** The pool settings (for a LISTEN client of the same database). */
  get clientConfig(): pg.ClientConfig {
    return { ...this.#config } as pg.ClientConfig;
  }

  async close(): Promise<void> {
    await this.#pool.end().catch(() => {});
  }

  get keyringDescription(): string {
    return this.#keyring.description;
  }

  async activeKek(): Promise<number> {
    return Number((await this.#pool.query<{ active_kek: number }>('SELECT active_kek FROM kek_state WHERE singleton = 1')).rows[0]?.active_kek);
  }

  async #adoptKeyring(): Promise<void> {
    const active = await this.activeKek();
    if (this.#keyring.has(active)) return;
    if ((await this.kekVersionsInUse()).length === 0) {
      await this.#pool.query('UPDATE kek_state SET active_kek = $1 WHERE singleton = 1', [this.#keyring.newestId]);
      return;
    }
    throw new KekError('KEK_UNAVAILABLE', `database ${this.path}: new keys are to be wrapped under KEK version ${active}, which ${this.#keyring.description} does not hold`);
  }

  async #checkKeyring(): Promise<void> {
    for (const kekId of await this.kekVersionsInUse()) {
      if (!this.#keyring.has(kekId)) throw kekUnavailable(this.path, [kekId], this.#keyring.description);
      const row = (await this.#pool.query<PgRow>('SELECT * FROM devices WHERE active_kek = $1 LIMIT 1', [kekId])).rows[0];
      if (row !== undefined) this.#keyring.unwrap(kekId, row.device_id, row.active_id, row.active_key).fill(0);
    }
  }

  /** The KEK versions that wrap some row: a version not listed may be destroyed (crypto-shredding). */
  async kekVersionsInUse(): Promise<number[]> {
    const rows = await this.#pool.query<{ id: number }>(
      'SELECT active_kek AS id FROM devices UNION SELECT pending_kek FROM devices WHERE pending_kek IS NOT NULL ORDER BY 1',
    );
    return rows.rows.map((r) => Number(r.id));
  }

  // ---- Devices ----

  async loadDevices(): Promise<StoredDevice[]> {
    return (await this.#pool.query<PgRow>('SELECT * FROM devices ORDER BY rowid')).rows.map((row) => this.#fromRow(row));
  }

  async listDevices(): Promise<DeviceSummary[]> {
    return (await this.#pool.query<PgRow>('SELECT * FROM devices ORDER BY rowid')).rows.map(summaryOfRow);
  }

  async getDevice(deviceId: string): Promise<StoredDevice | undefined> {
    const row = (await this.#pool.query<PgRow>('SELECT * FROM devices WHERE device_id = $1', [deviceId.toLowerCase()])).rows[0];
    return row === undefined ? undefined : this.#fromRow(row);
  }

  /** The device as stored now, with the fence fields (no lease taken). */
  async readDevice(deviceId: string): Promise<{ device: StoredDevice; fence: Fence } | undefined> {
    const row = (await this.#pool.query<PgRow>('SELECT * FROM devices WHERE device_id = $1', [deviceId.toLowerCase()])).rows[0];
    return row === undefined ? undefined : { device: this.#fromRow(row), fence: { epoch: row.epoch, rowVersion: row.row_version } };
  }

  async devicesAfter(rowid: number): Promise<StoredDevice[]> {
    return (await this.#pool.query<PgRow>('SELECT * FROM devices WHERE rowid > $1 ORDER BY rowid', [rowid])).rows.map((row) => this.#fromRow(row));
  }

  async insertDevice(record: DeviceRecord, now: number): Promise<StoredDevice> {
    await this.insertDevices([record], now);
    return (await this.getDevice(record.deviceId)) as StoredDevice;
  }

  /**
   * Inserts devices atomically (all or none); LOCAL_BAD_ARGUMENT if one exists.
   * Rows go in multi-row statements (`unnest` of column arrays, up to
   * INSERT_CHUNK rows each) in one transaction: 100,000 devices take a
   * hundred round trips, not 200,000 (the fleet benchmark provisions that many).
   */
  async insertDevices(records: readonly DeviceRecord[], now: number): Promise<void> {
    for (const record of records) {
      if (record.mode !== 'dh' && record.mode !== 'classic') throw new LockstepError('LOCAL_BAD_ARGUMENT', `device ${record.deviceId}: mode must be "dh" or "classic"`);
    }
    await this.#transaction(async (client) => {
      const kekId = await activeKekFor(client);
      // A revoked id stays refused (a copy of its old record must not come back), as on SQLite.
      const revoked = await client.query<{ device_id: string }>('SELECT device_id FROM revoked_devices WHERE device_id = ANY($1::text[]) LIMIT 1', [records.map((r) => r.deviceId.toLowerCase())]);
      if (revoked.rows[0] !== undefined) throw new LockstepError('LOCAL_BAD_ARGUMENT', `device ${revoked.rows[0].device_id} was revoked`);
      for (let from = 0; from < records.length; from += INSERT_CHUNK) {
        const chunk = records.slice(from, from + INSERT_CHUNK);
        try {
          await client.query(
            'INSERT INTO devices (device_id, active_id, active_kek, active_key, created_at, active_since, mode, device_public_key, hub_static_id) ' +
              'SELECT d, a, $3::bigint, k, $4::bigint, $4::bigint, m, p, h FROM unnest($1::text[], $2::bigint[], $5::bytea[], $6::text[], $7::bytea[], $8::bigint[]) AS t(d, a, k, m, p, h)',
            [
              chunk.map((r) => r.deviceId),
              chunk.map((r) => r.active.id),
              kekId,
              now,
              chunk.map((r) => this.#keyring.wrap(kekId, r.deviceId, r.active.id, r.active.key)),
              chunk.map((r) => r.mode),
              chunk.map((r) => (r.devicePublicKey === undefined ? null : Buffer.from(r.devicePublicKey))),
              chunk.map((r) => r.hubStaticId ?? null),
            ],
          );
        } catch (error) {
          if ((error as { code?: string }).code === '23505') {
            // detail: Key (device_id)=(<id>) already exists.
            const id = /=\(([^)]*)\)/.exec((error as { detail?: string }).detail ?? '')?.[1] ?? 'in this batch';
            throw new LockstepError('LOCAL_BAD_ARGUMENT', `device ${id} is already provisioned`);
          }
          throw error;
        }
      }
    });
  }

  /**
   * Takes the device's lease for this instance: epoch + 1, and the row as it
   * is at that instant (one statement, so no write of another instance falls
   * between the reload and the epoch). Also tells the other instances
   * (NOTIFY, delivered at commit; only a wake-up: they also see the epoch
   * move when they poll or when their next write fails). The update and the
   * notification are one autocommitted statement: one round trip per lease
   * instead of four (BEGIN, UPDATE, NOTIFY, COMMIT), the same transaction.
   */
  async lease(deviceId: string): Promise<{ device: StoredDevice; fence: Fence } | undefined> {
    const row = (
      await this.#pool.query<PgRow>(
        'WITH leased AS (UPDATE devices SET epoch = epoch + 1, lease_owner = $2 WHERE device_id = $1 RETURNING *) ' +
          "SELECT leased.*, pg_notify($3, leased.device_id || ' ' || leased.epoch || ' ' || $2) AS notified FROM leased",
        [deviceId.toLowerCase(), this.instance, NOTIFY_LEASE],
      )
    ).rows[0];
    if (row === undefined) return undefined;
    return { device: this.#fromRow(row), fence: { epoch: row.epoch, rowVersion: row.row_version } };
  }

  /** Current epochs of the given devices (an instance checks whether it still holds its leases). */
  async epochs(deviceIds: readonly string[]): Promise<Map<string, number>> {
    return new Map([...(await this.leaseView(deviceIds))].map(([id, view]) => [id, view.epoch]));
  }

  /** Epoch and rekey mode of the given devices (the serving instance's poll: lost leases, mode changes made elsewhere). */
  async leaseView(deviceIds: readonly string[]): Promise<Map<string, { epoch: number; mode: RekeyMode; recordChanged: boolean }>> {
    if (deviceIds.length === 0) return new Map();
    const rows = await this.#pool.query<{ device_id: string; epoch: number; mode: RekeyMode; changed: boolean }>(
      'SELECT device_id, epoch, mode, record_changed_at IS NOT NULL AS changed FROM devices WHERE device_id = ANY($1::text[])',
      [deviceIds],
    );
    return new Map(rows.rows.map((r) => [r.device_id, { epoch: r.epoch, mode: r.mode, recordChanged: r.changed }]));
  }

  /**
   * The rows leased to this instance that ask something of it (schema
   * migration 7's partial index): a rotation request, a mode change, a
   * changed record. The control poll's query each second, whatever the number
   * of devices the instance serves; losing a lease is the NOTIFY's and the
   * sweep's (leaseView) to notice.
   */
  async attention(): Promise<{ deviceId: string; epoch: number; mode: RekeyMode; recordChanged: boolean; rotateRequested: boolean }[]> {
    const rows = await this.#pool.query<{ device_id: string; epoch: number; mode: RekeyMode; changed: boolean; rotate: boolean }>(ATTENTION_QUERY, [this.instance]);
    return rows.rows.map((r) => ({ deviceId: r.device_id, epoch: r.epoch, mode: r.mode, recordChanged: r.changed, rotateRequested: r.rotate }));
  }

  /**
   * §11.6: the device's mode moves to dh (never back); durable in the row, so
   * every instance's next lease adopts it and the serving one's poll applies it.
   */
  async upgradeToDh(deviceId: string, now: number): Promise<'upgraded' | 'already' | 'missing'> {
    const row = (await this.#pool.query<{ mode: RekeyMode }>('SELECT mode FROM devices WHERE device_id = $1', [deviceId.toLowerCase()])).rows[0];
    if (row === undefined) return 'missing';
    if (row.mode === 'dh') return 'already';
    await this.#pool.query("UPDATE devices SET mode = 'dh', mode_changed_at = $2 WHERE device_id = $1", [deviceId.toLowerCase(), now]);
    return 'upgraded';
  }

  /**
   * Commits the ops in one transaction (group commit: one WAL flush) and
   * reports per op whether it applied. Each write applies only under the
   * device's fence (epoch and row version as this instance holds them),
   * which is advanced on success. A database error rejects: nothing of the
   * batch is durable (or, if the connection broke during COMMIT, the
   * outcome is unknown: the host reloads, rule HK7).
   */
  async commit(ops: readonly HubPersistOp[], now: number, fences: ReadonlyMap<string, Fence>): Promise<boolean[]> {
    const advanced: [Fence, number][] = [];
    const applied = await this.#transaction(async (client) => {
      // FOR SHARE: a KEK switch (UPDATE kek_state) waits for this commit, and this one for it, so no new wrap uses a version being retired.
      const kekId = Number((await client.query<{ active_kek: number }>('SELECT active_kek FROM kek_state WHERE singleton = 1 FOR SHARE')).rows[0]?.active_kek);
      const results: boolean[] = [];
      for (const op of ops) {
        const fence = fences.get(op.deviceId);
        if (fence === undefined && this.fenced) {
          results.push(false);
          continue;
        }
        // The broken variant (fenced: false) writes unconditionally, as a store without any fence would.
        const guard = this.fenced ? 'AND epoch = $3 AND row_version = $4' : 'AND $3::bigint IS NOT NULL AND $4::bigint IS NOT NULL';
        const slotGuard = (condition: string) => (this.fenced ? condition : '');
        const fenceArgs = [fence?.epoch ?? 0, fence?.rowVersion ?? 0];
        let result: pg.QueryResult<{ row_version: number }>;
        if (op.kind === 'storeRecovered') {
          // Issue 14, HK9: the recovered key replaces the pending slot (classic form), only above every id the row holds (R3).
          result = await client.query(
            `UPDATE devices SET pending_id = $5, pending_kek = $6, pending_key = $7, pending_dh = 0, pending_since = $8, rotate_requested_at = NULL,
               row_version = row_version + 1
             WHERE device_id = $1 AND $2 = 1 ${guard} AND $5 > active_id AND (pending_id IS NULL OR $5 > pending_id) RETURNING row_version`,
            [op.deviceId, 1, ...fenceArgs, op.id, kekId, this.#keyring.wrap(kekId, op.deviceId, op.id, op.key), now],
          );
        } else if (op.kind === 'storeDeviceStatic') {
          // HE2: S_d once (the same again applies; another never).
          result = await client.query(
            `UPDATE devices SET device_public_key = $5, hub_static_id = $6, enrolment = NULL, enrolment_armed_at = NULL, record_changed_at = NULL,
               row_version = row_version + 1
             WHERE device_id = $1 AND $2 = 1 ${guard} AND ((device_public_key IS NULL AND enrolment = 'ready') OR (device_public_key = $5 AND hub_static_id = $6)) RETURNING row_version`,
            [op.deviceId, 1, ...fenceArgs, Buffer.from(op.publicKey), op.hubStaticId],
          );
        } else if (op.kind === 'storePending' && op.modeChange === 'dh') {
          // HK11: mode dh and the dh pending replacing the refused classic one (same id), one commit.
          const bytes = concatPair(op.dh.privateKey, op.dh.publicKey);
          let wrapped: Buffer;
          try {
            wrapped = this.#keyring.wrap(kekId, op.deviceId, op.id, bytes);
          } finally {
            bytes.fill(0);
          }
          result = await client.query(
            `UPDATE devices SET mode = 'dh', mode_changed_at = NULL, pending_id = $5, pending_kek = $6, pending_key = $7, pending_dh = 1, pending_since = $8,
               rotate_requested_at = NULL, row_version = row_version + 1
             WHERE device_id = $1 AND $2 = 1 ${guard} AND active_id = $5 - 1 AND (pending_id IS NULL OR (pending_id = $5 AND pending_dh = 0)) RETURNING row_version`,
            [op.deviceId, 1, ...fenceArgs, op.id, kekId, wrapped, now],
          );
        } else if (op.kind === 'storePending') {
          // Rule H4 (dh mode): the hub's ephemeral pair h ‖ H is stored wrapped like a key, before REKEY_DH is sent.
          const bytes = op.dh === undefined ? op.key : concatPair(op.dh.privateKey, op.dh.publicKey);
          let wrapped: Buffer;
          try {
            wrapped = this.#keyring.wrap(kekId, op.deviceId, op.id, bytes);
          } finally {
            if (op.dh !== undefined) bytes.fill(0);
          }
          result = await client.query(
            `UPDATE devices SET pending_id = $5, pending_kek = $6, pending_key = $7, pending_dh = $9, pending_since = $8, rotate_requested_at = NULL,
               row_version = row_version + 1
             WHERE device_id = $1 AND $2 = 1 ${guard} ${slotGuard('AND active_id = $5 - 1 AND pending_id IS NULL')} RETURNING row_version`,
            [op.deviceId, 1, ...fenceArgs, op.id, kekId, wrapped, now, op.dh === undefined ? 0 : 1],
          );
        } else if (op.key !== undefined) {
          // HK8: the derived key becomes active; the wrapped ephemeral pair is overwritten in the same commit (rule H5).
          result = await client.query(
            `UPDATE devices SET active_id = pending_id, active_kek = $7, active_key = $8, active_since = $5,
               pending_id = NULL, pending_kek = NULL, pending_key = NULL, pending_dh = 0, pending_since = NULL, rotations = rotations + 1,
               row_version = row_version + 1
             WHERE device_id = $1 AND $2 = 1 ${guard} ${slotGuard('AND pending_id = $6 AND pending_dh = 1')} AND pending_id IS NOT NULL AND $6::bigint IS NOT NULL RETURNING row_version`,
            [op.deviceId, 1, ...fenceArgs, now, op.id, kekId, this.#keyring.wrap(kekId, op.deviceId, op.id, op.key)],
          );
        } else {
          result = await client.query(
            `UPDATE devices SET active_id = pending_id, active_kek = pending_kek, active_key = pending_key, active_since = $5,
               pending_id = NULL, pending_kek = NULL, pending_key = NULL, pending_dh = 0, pending_since = NULL, rotations = rotations + 1,
               row_version = row_version + 1
             WHERE device_id = $1 AND $2 = 1 ${guard} ${slotGuard('AND pending_id = $6 AND pending_dh = 0')} AND pending_id IS NOT NULL AND $6::bigint IS NOT NULL RETURNING row_version`,
            [op.deviceId, 1, ...fenceArgs, now, op.id],
          );
        }
        if (op.kind === 'promote' && op.enrolmentReady === true && result.rows[0] !== undefined) {
          // HE1 (issue 14): enrolment becomes ready in the commit that promotes the dh key after arming.
          await client.query(`UPDATE devices SET enrolment = 'ready' WHERE device_id = $1 AND enrolment = 'armed'`, [op.deviceId]);
        }
        const row = result.rows[0];
        if (row !== undefined && fence !== undefined) advanced.push([fence, row.row_version]);
        results.push(row !== undefined);
      }
      if (this.auditKeyEvents) await recordKeyEventsPg(client, ops, results, now); // durable exactly with the key change
      return results;
    });
    for (const [fence, rowVersion] of advanced) fence.rowVersion = rowVersion;
    return applied;
  }

  /**
   * KEK rotation, online, as on SQLite: version `to` (which the keyring must
   * hold) becomes the one new wraps use, then every row under another
   * version is re-wrapped in short transactions (each locks its rows, so a
   * serving instance's fenced writes interleave; the key bytes and the fence
   * do not change). Afterwards no row needs the old versions: destroying
   * them from the keyring is what erases every retired key still in dead
   * tuples, WAL segments and backups (crypto-shredding, docs/HUB.md §13.6).
   */
  async rotateKek(to: number, onProgress?: (rewrapped: number) => void): Promise<{ from: number[]; to: number; rewrapped: number; transactions: number }> {
    if (!this.#keyring.has(to)) throw new KekError('KEK_UNAVAILABLE', `KEK version ${to} is not in ${this.#keyring.description}`);
    const from = (await this.kekVersionsInUse()).filter((id) => id !== to);
    await this.#pool.query('UPDATE kek_state SET active_kek = $1 WHERE singleton = 1', [to]);
    let rewrapped = 0;
    let transactions = 0;
    for (;;) {
      const count = await this.#transaction(async (client) => {
        const rows = (
          await client.query<PgRow>(
            'SELECT * FROM devices WHERE active_kek <> $1 OR pending_kek <> $1 ORDER BY rowid LIMIT 256 FOR UPDATE',
            [to],
          )
        ).rows;
        for (const row of rows) {
          const active = this.#keyring.unwrap(row.active_kek, row.device_id, row.active_id, row.active_key);
          const pending =
            row.pending_id === null || row.pending_key === null || row.pending_kek === null
              ? undefined
              : this.#keyring.unwrap(row.pending_kek, row.device_id, row.pending_id, row.pending_key);
          await client.query('UPDATE devices SET active_kek = $1, active_key = $2, pending_kek = $3, pending_key = $4 WHERE rowid = $5', [
            to,
            this.#keyring.wrap(to, row.device_id, row.active_id, active),
            pending === undefined ? null : to,
            pending === undefined ? null : this.#keyring.wrap(to, row.device_id, row.pending_id as number, pending),
            row.rowid,
          ]);
          active.fill(0);
          pending?.fill(0);
        }
        return rows.length;
      });
      transactions++;
      rewrapped += count;
      onProgress?.(rewrapped);
      if (count < 256) break;
    }
    // The crypto-shredding clock of each version no row needs any more starts now (docs/HUB.md §13.6).
    const inUse = new Set(await this.kekVersionsInUse());
    await this.retireKekVersions(from.filter((id) => !inUse.has(id)), Date.now());
    return { from, to, rewrapped, transactions };
  }

  // ---- The crypto-shredding schedule (docs/HUB.md §13.6, table kek_versions) ----

  /** Records that these versions wrap no row any more (the first record of a version counts). */
  async retireKekVersions(ids: readonly number[], now: number): Promise<void> {
    if (ids.length === 0) return;
    await this.#pool.query('INSERT INTO kek_versions (kek_id, retired_at) SELECT unnest($1::bigint[]), $2 ON CONFLICT (kek_id) DO NOTHING', [ids, now]);
  }

  /** Every retired version: since when, and whether (when) it was destroyed. */
  async kekVersions(): Promise<{ kekId: number; retiredAt: number; destroyedAt: number | undefined }[]> {
    const rows = await this.#pool.query<{ kek_id: number; retired_at: number; destroyed_at: number | null }>('SELECT * FROM kek_versions ORDER BY kek_id');
    return rows.rows.map((r) => ({ kekId: Number(r.kek_id), retiredAt: Number(r.retired_at), destroyedAt: r.destroyed_at === null ? undefined : Number(r.destroyed_at) }));
  }

  /**
   * Records the destruction of versions (the caller removed them from the
   * keyring source first). Refused for a version that still wraps a row or
   * is the active one: destroying it would lose those devices.
   */
  async markKekDestroyed(ids: readonly number[], now: number): Promise<void> {
    if (ids.length === 0) return;
    await this.#transaction(async (client) => {
      const active = Number((await client.query<{ active_kek: number }>('SELECT active_kek FROM kek_state WHERE singleton = 1 FOR UPDATE')).rows[0]?.active_kek);
      const used = await client.query<{ id: number }>(
        'SELECT active_kek AS id FROM devices WHERE active_kek = ANY($1::bigint[]) UNION SELECT pending_kek FROM devices WHERE pending_kek = ANY($1::bigint[]) LIMIT 1',
        [ids],
      );
      if (ids.includes(active) || used.rows[0] !== undefined) {
        throw new KekError('KEK_UNAVAILABLE', `KEK version ${ids.includes(active) ? active : Number(used.rows[0]?.id)} still wraps keys in ${this.path}; it must not be destroyed`);
      }
      await client.query(
        'INSERT INTO kek_versions (kek_id, retired_at, destroyed_at) SELECT unnest($1::bigint[]), $2, $2 ON CONFLICT (kek_id) DO UPDATE SET destroyed_at = COALESCE(kek_versions.destroyed_at, excluded.destroyed_at)',
        [ids, now],
      );
    });
  }

  /** Versions recorded as destroyed (a serving instance drops them from its memory: `forgetDestroyedKeks`). */
  async destroyedKekVersions(): Promise<number[]> {
    return (await this.#pool.query<{ kek_id: number }>('SELECT kek_id FROM kek_versions WHERE destroyed_at IS NOT NULL ORDER BY kek_id')).rows.map((r) => Number(r.kek_id));
  }

  /** Zeroes and forgets the destroyed versions this instance still holds in memory; returns those it dropped. */
  async forgetDestroyedKeks(): Promise<number[]> {
    const destroyed = await this.destroyedKekVersions();
    if (!destroyed.some((id) => this.#keyring.ids.includes(id))) return [];
    // The active version first (a reload of the source, which no longer holds the destroyed ones), so the keyring never runs empty.
    if (!this.#keyring.has(await this.activeKek())) return [];
    const held = new Set(this.#keyring.ids);
    const dropped = destroyed.filter((id) => held.has(id));
    for (const id of dropped) this.#keyring.forget(id);
    return dropped;
  }

  /** The KEK versions this instance holds (ids only). */
  get keyringIds(): number[] {
    return this.#keyring.ids;
  }

  // ---- Audit trail and revocation (tools/hub/postgres/audit.ts, docs/HUB.md §12.5, §12.6) ----

  /** Administrative actions, durable when this resolves. */
  async appendAudit(entries: readonly AuditEntryInput[], now: number): Promise<void> {
    await appendAuditPg(this.#pool, entries, now);
  }

  readAudit(query: AuditQuery): Promise<AuditEntry[]> {
    return readAuditPg(this.#pool, query);
  }

  /**
   * Deletes the device with its keys, records the revocation and its audit entry, wakes the instances;
   * undefined if there is no such device. The revocation file first (fsync'd), so a point-in-time
   * restore of the database cannot undo it (docs/HUB.md §14.4).
   */
  async revokeDevice(deviceId: string, actor: string, reason: string | undefined, now: number): Promise<Revocation | undefined> {
    const id = deviceId.toLowerCase();
    if (this.revocationFile !== undefined && /^[0-9a-f]{16}$/.test(id) && !this.#inFile.has(id)) {
      if ((await this.#pool.query('SELECT 1 FROM devices WHERE device_id = $1', [id])).rows.length === 1) {
        appendRevocation(this.revocationFile, { deviceId: id, revokedAt: now, actor, reason: reason ?? null });
        this.#inFile.add(id);
      }
    }
    return this.#transaction(async (client) => {
      const revocation = await revokeInTransaction(client, deviceId, actor, reason, now);
      if (revocation !== undefined) await client.query('DELETE FROM recovery_requests WHERE device_id = $1', [id]);
      return revocation;
    });
  }

  /**
   * Revocations the table holds and the file does not (made by another instance or host, whose file
   * this is not): appended, so this file survives a restore with them too. Called by the control poll.
   */
  foldIntoRevocationFile(revocations: readonly Revocation[]): void {
    if (this.revocationFile === undefined) return;
    for (const r of revocations) {
      if (this.#inFile.has(r.deviceId)) continue;
      appendRevocation(this.revocationFile, { deviceId: r.deviceId, revokedAt: r.revokedAt, actor: r.actor, reason: r.reason ?? null });
      this.#inFile.add(r.deviceId);
    }
  }

  /**
   * Applies the revocation file at open (as the SQLite store does): a row a restore brought back is
   * erased again (audited `device.revoke` / `reapplied`, instances woken), the id recorded as revoked;
   * then the table's revocations the file lacks are appended to it.
   */
  async #applyRevocationFile(): Promise<void> {
    if (this.revocationFile === undefined) return;
    const lines = readRevocations(this.revocationFile);
    for (const line of lines) this.#inFile.add(line.deviceId);
    if (lines.length > 0) {
      // Set-wise (a statement each, whatever the file's length): rows a restore brought back, then the ids recorded as revoked.
      await this.#transaction(async (client) => {
        const ids = lines.map((l) => l.deviceId);
        const back = (await client.query<{ device_id: string; active_id: number }>('DELETE FROM devices WHERE device_id = ANY($1::text[]) RETURNING device_id, active_id', [ids])).rows;
        const lastKey = new Map(back.map((r) => [r.device_id, Number(r.active_id)]));
        if (back.length > 0) {
          await client.query('DELETE FROM recovery_requests WHERE device_id = ANY($1::text[])', [back.map((r) => r.device_id)]);
          await appendAuditPg(client, back.map((r) => ({ actor: 'hub', action: 'device.revoke', deviceId: r.device_id, outcome: 'reapplied', detail: { source: 'revocationFile', lastKeyId: Number(r.active_id) } })), Date.now());
          for (const r of back) await client.query('SELECT pg_notify($1, $2)', [NOTIFY_REVOKE, r.device_id]);
          this.reRevoked.push(...back.map((r) => r.device_id));
        }
        await client.query(
          `INSERT INTO revoked_devices (device_id, revoked_at, actor, reason, last_key_id)
           SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[]) ON CONFLICT (device_id) DO NOTHING`,
          [ids, lines.map((l) => l.revokedAt), lines.map((l) => l.actor.slice(0, 64)), lines.map((l) => (l.reason === null ? null : l.reason.slice(0, 200))), lines.map((l) => lastKey.get(l.deviceId) ?? 0)],
        );
      });
    }
    for (let seq = 0; ; ) {
      const page = await revocationsAfterPg(this.#pool, seq);
      if (page.length === 0) break;
      this.foldIntoRevocationFile(page);
      seq = (page[page.length - 1] as Revocation).seq;
    }
  }

  revocation(deviceId: string): Promise<Revocation | undefined> {
    return findRevocationPg(this.#pool, deviceId);
  }

  revocationsAfter(seq: number): Promise<Revocation[]> {
    return revocationsAfterPg(this.#pool, seq);
  }

  /** The raw stored (wrapped) forms of a device's keys (audits, tests). */
  async wrappedForms(deviceId: string): Promise<{ active: { kek: number; bytes: Buffer }; pending?: { kek: number; bytes: Buffer } } | undefined> {
    const row = (await this.#pool.query<PgRow>('SELECT * FROM devices WHERE device_id = $1', [deviceId.toLowerCase()])).rows[0];
    if (row === undefined) return undefined;
    return {
      active: { kek: row.active_kek, bytes: row.active_key },
      ...(row.pending_key === null || row.pending_kek === null ? {} : { pending: { kek: row.pending_kek, bytes: row.pending_key } }),
    };
  }

  /** Last-seen times (one transaction; not safety-relevant, not fenced). */
  async touch(lastSeen: ReadonlyMap<string, number>): Promise<void> {
    if (lastSeen.size === 0) return;
    const ids = [...lastSeen.keys()];
    const times = ids.map((id) => lastSeen.get(id) as number);
    await this.#pool.query(
      'UPDATE devices d SET last_seen_at = GREATEST(COALESCE(d.last_seen_at, 0), t.at) FROM unnest($1::text[], $2::bigint[]) AS t(id, at) WHERE d.device_id = t.id',
      [ids, times],
    );
  }

  /**
   * The durable rotation command: the request is a column of the device's
   * row (cleared by the commit of the device's next pending key), so it
   * survives any instance and PostgreSQL restart; the NOTIFY only wakes the
   * instance that serves the device.
   */
  // ---- issue 14: recovery (the per-device count in the database, shared by every instance) ----

  /** Lock the device's row while deciding (default); false only for the test's broken variant. */
  recoveryRowLock = true;
  /** Tests only: runs between reading the count and charging it (to interleave two instances deterministically). */
  beforeRecoveryCharge: (() => Promise<void>) | undefined;

  /**
   * As HubStore.decideRecovery: the device's row is locked (FOR UPDATE) for the transaction,
   * so two instances deciding for one device serialize and never both take the last slot.
   */
  async decideRecovery(request: RecoveryRequestInput, policy: RecoveryPolicy, now: number, actor = 'hub', fence?: Fence): Promise<RecoveryDecision> {
    const deviceId = request.deviceId.toLowerCase();
    return this.#transaction(async (client) => {
      // The broken variant (recoveryRowLock false, tests only) reads without the lock, as a store without it would.
      const locked = (
        await client.query<{ epoch: number; active_id: number; pending_id: number | null }>(
          `SELECT epoch, active_id, pending_id FROM devices WHERE device_id = $1 ${this.recoveryRowLock ? 'FOR UPDATE' : ''}`,
          [deviceId],
        )
      ).rows[0];
      const exists = locked !== undefined;
      if (exists && fence !== undefined && this.fenced) {
        // An instance decides only under the lease it took for this request: another instance leased the device since (a newer
        // connection of it): nothing is charged or recorded, the device asks again shortly (its write here would be fenced out anyway).
        if (Number(locked.epoch) !== fence.epoch) {
          return { status: RecoveryStatus.RATE_LIMITED, retryAfterSeconds: LEASE_LOST_RETRY_SECONDS, reason: 'leaseLost', charge: false, record: false, clearRequest: false };
        }
        // Under this lease every write of an earlier lease has committed or can never apply (its fence moved): an accepted
        // recovery whose key the row does not hold was fenced out and recovered nothing, so it is not counted against the device.
        await client.query('DELETE FROM recoveries WHERE device_id = $1 AND new_key_id > $2 AND new_key_id IS DISTINCT FROM $3', [deviceId, locked.active_id, locked.pending_id]);
      }
      const revoked = !exists || (await client.query('SELECT 1 FROM revoked_devices WHERE device_id = $1', [deviceId])).rows.length === 1;
      await client.query('DELETE FROM recoveries WHERE device_id = $1 AND at <= $2', [deviceId, now - policy.windowMs]);
      const accepted = (await client.query<{ at: number }>('SELECT at FROM recoveries WHERE device_id = $1 ORDER BY at', [deviceId])).rows.map((r) => Number(r.at));
      const pending = (await client.query<{ approved_at: number | null }>('SELECT approved_at FROM recovery_requests WHERE device_id = $1', [deviceId])).rows[0];
      const decision = decide(policy, request, { revoked, acceptedInWindow: accepted, approvedAt: pending?.approved_at ?? undefined }, now);
      await this.beforeRecoveryCharge?.();
      if (decision.charge) await client.query('INSERT INTO recoveries (device_id, at, new_key_id) VALUES ($1, $2, $3)', [deviceId, now, request.newKeyId]);
      if (decision.clearRequest) await client.query('DELETE FROM recovery_requests WHERE device_id = $1', [deviceId]);
      if (decision.record) {
        const expired = decision.reason === 'approvalExpired';
        await client.query(
          `INSERT INTO recovery_requests (device_id, first_at, last_at, attempts, new_key_id, claimed_active, claimed_future) VALUES ($1, $2, $2, 1, $3, $4, $5)
           ON CONFLICT (device_id) DO UPDATE SET last_at = excluded.last_at, attempts = recovery_requests.attempts + 1, new_key_id = excluded.new_key_id,
             claimed_active = excluded.claimed_active, claimed_future = excluded.claimed_future,
             approved_at = CASE WHEN $6 THEN NULL ELSE recovery_requests.approved_at END, approved_by = CASE WHEN $6 THEN NULL ELSE recovery_requests.approved_by END`,
          [deviceId, now, request.newKeyId, request.claimedActive, request.claimedFuture, expired],
        );
      }
      const detail = checkDetail({
        reason: decision.reason, policy: policy.mode, newKeyId: request.newKeyId, claimedActive: request.claimedActive, claimedFuture: request.claimedFuture,
        retryAfterSeconds: decision.retryAfterSeconds, acceptedInWindow: accepted.length + (decision.charge ? 1 : 0),
      });
      await client.query('INSERT INTO audit_log (at, actor, action, device_id, outcome, detail) VALUES ($1, $2, $3, $4, $5, $6)', [now, actor, 'recovery.decide', deviceId, RECOVERY_STATUS_NAMES[decision.status], detail]);
      return decision;
    });
  }

  /** As HubStore.approveRecovery. */
  async approveRecovery(deviceId: string, actor: string, now: number): Promise<'approved' | 'already' | 'none' | 'missing'> {
    const id = deviceId.toLowerCase();
    return this.#transaction(async (client) => {
      if ((await client.query('SELECT 1 FROM devices WHERE device_id = $1', [id])).rows.length === 0) return 'missing';
      const row = (await client.query<{ approved_at: number | null }>('SELECT approved_at FROM recovery_requests WHERE device_id = $1 FOR UPDATE', [id])).rows[0];
      if (row === undefined) return 'none';
      if (row.approved_at !== null) return 'already';
      await client.query('UPDATE recovery_requests SET approved_at = $2, approved_by = $3 WHERE device_id = $1', [id, now, actor.slice(0, 64)]);
      await client.query("INSERT INTO audit_log (at, actor, action, device_id, outcome) VALUES ($1, $2, 'recovery.approve', $3, 'ok')", [now, actor.slice(0, 64), id]);
      return 'approved';
    });
  }

  /** As HubStore.recoveryRequests. */
  async recoveryRequests(limit = 1000): Promise<RecoveryRequestRow[]> {
    const rows = (await this.#pool.query('SELECT * FROM recovery_requests ORDER BY first_at LIMIT $1', [Math.max(1, Math.min(limit, 10_000))])).rows as Record<string, unknown>[];
    return rows.map((r) => ({
      deviceId: r.device_id as string, firstAt: Number(r.first_at), lastAt: Number(r.last_at), attempts: Number(r.attempts), newKeyId: Number(r.new_key_id),
      claimedActive: Number(r.claimed_active), claimedFuture: Number(r.claimed_future),
      approvedAt: r.approved_at === null ? undefined : Number(r.approved_at), approvedBy: (r.approved_by as string | null) ?? undefined,
    }));
  }

  /** A device without its keys (needs no KEK). */
  async getSummary(deviceId: string): Promise<DeviceSummary | undefined> {
    const row = (await this.#pool.query<PgRow>('SELECT * FROM devices WHERE device_id = $1', [deviceId.toLowerCase()])).rows[0];
    return row === undefined ? undefined : summaryOfRow(row);
  }

  /** As HubStore.recentRecoveries: accepted recoveries, newest first. */
  async recentRecoveries(limit = 100): Promise<RecoveryRecord[]> {
    const rows = (await this.#pool.query<{ seq: number; device_id: string; at: number; new_key_id: number }>('SELECT seq, device_id, at, new_key_id FROM recoveries ORDER BY seq DESC LIMIT $1', [Math.max(1, Math.min(limit, 1000))])).rows;
    return rows.map((r) => ({ seq: Number(r.seq), deviceId: r.device_id, at: Number(r.at), newKeyId: Number(r.new_key_id) }));
  }

  /** The serving instance reloaded a record another process changed (enrolment armed). */
  async clearRecordChange(deviceId: string): Promise<void> {
    await this.#pool.query('UPDATE devices SET record_changed_at = NULL WHERE device_id = $1', [deviceId]);
  }

  /** As HubStore.armEnrolment. */
  async armEnrolment(deviceId: string, now: number): Promise<'armed' | 'enrolled' | 'missing'> {
    const id = deviceId.toLowerCase();
    const row = (await this.#pool.query<{ device_public_key: Buffer | null }>('SELECT device_public_key FROM devices WHERE device_id = $1', [id])).rows[0];
    if (row === undefined) return 'missing';
    if (row.device_public_key !== null) return 'enrolled';
    await this.#pool.query(`UPDATE devices SET enrolment = 'armed', enrolment_armed_at = $2, record_changed_at = $2 WHERE device_id = $1 AND device_public_key IS NULL`, [id, now]);
    return 'armed';
  }

  /** As HubStore.staticKeyReferences. */
  async staticKeyReferences(): Promise<Map<number, number>> {
    const rows = (await this.#pool.query<{ id: number; n: number }>('SELECT hub_static_id AS id, COUNT(*)::bigint AS n FROM devices WHERE hub_static_id IS NOT NULL GROUP BY hub_static_id')).rows;
    return new Map(rows.map((r) => [Number(r.id), Number(r.n)]));
  }

  async requestRotation(deviceId: string, now: number): Promise<boolean> {
    return this.#transaction(async (client) => {
      const changed = (await client.query('UPDATE devices SET rotate_requested_at = COALESCE(rotate_requested_at, $2) WHERE device_id = $1', [deviceId.toLowerCase(), now])).rowCount === 1;
      if (changed) await client.query('SELECT pg_notify($1, $2)', [NOTIFY_ROTATE, deviceId.toLowerCase()]);
      return changed;
    });
  }

  /** Devices with a rotation request, oldest first (the CLI; an instance polls `attention`). */
  async rotationRequests(): Promise<string[]> {
    const rows = await this.#pool.query<{ device_id: string }>('SELECT device_id FROM devices WHERE rotate_requested_at IS NOT NULL ORDER BY rotate_requested_at');
    return rows.rows.map((r) => r.device_id);
  }

  /** Records this instance (informational: who serves, since when). */
  async heartbeat(now: number, startedAt: number): Promise<void> {
    await this.#pool.query(
      `INSERT INTO hub_instances (instance, host, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (instance) DO UPDATE SET heartbeat_at = excluded.heartbeat_at`,
      [this.instance, hostname(), process.pid, startedAt, now],
    );
  }

  async forgetInstance(): Promise<void> {
    await this.#pool.query('DELETE FROM hub_instances WHERE instance = $1', [this.instance]);
  }

  /** The server's durability settings as this instance's sessions see them (the hub logs them at start). */
  async durability(): Promise<{ synchronousCommit: string; fsync: string; synchronousStandbyNames: string }> {
    const row = (
      await this.#pool.query<{ sc: string; fs: string; ssn: string }>(
        "SELECT current_setting('synchronous_commit') AS sc, current_setting('fsync') AS fs, current_setting('synchronous_standby_names') AS ssn",
      )
    ).rows[0];
    return { synchronousCommit: row?.sc ?? '?', fsync: row?.fs ?? '?', synchronousStandbyNames: row?.ssn ?? '' };
  }

  /** The database answers (the operator API's readiness check). */
  async ping(): Promise<void> {
    await this.#pool.query('SELECT 1');
  }

  /** KEK wraps and unwraps of this process (counts only). */
  get kekOperations(): { wrap: number; unwrap: number; unwrapFailed: number } {
    return this.#keyring.operations;
  }

  /**
   * Entries of `action` per `bucketMs` since `since` (the dashboard's rotation chart at start),
   * over the newest `maxRows` entries by sequence (the primary key, scanned backwards).
   */
  async auditCounts(action: string, since: number, bucketMs: number, maxRows = 500_000): Promise<Map<number, number>> {
    const bucket = Math.max(1, Math.floor(bucketMs));
    const rows = (
      await this.#pool.query<{ bucket: number; n: number }>(
        `SELECT (at / ${bucket})::bigint AS bucket, COUNT(*)::bigint AS n FROM (SELECT at, action FROM audit_log ORDER BY seq DESC LIMIT $3) recent
         WHERE action = $1 AND at >= $2 GROUP BY 1`,
        [action, since, maxRows],
      )
    ).rows;
    return new Map(rows.map((r) => [Number(r.bucket) * bucket, Number(r.n)]));
  }

  /** Pool figures (bounded connections). */
  get poolStats(): { total: number; idle: number; waiting: number } {
    return { total: this.#pool.totalCount, idle: this.#pool.idleCount, waiting: this.#pool.waitingCount };
  }

  #fromRow(row: PgRow): StoredDevice {
    return storedOfRow(row, this.#keyring);
  }

  async #transaction<T>(body: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    let broken = false;
    // A checked-out client has no error listener of the pool's: a session terminated between two statements would crash the process.
    const onError = (): void => {
      broken = true;
    };
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      const result = await body(client);
      await client.query('COMMIT');
      return result;
    } catch (error) {
      try {
        await client.query('ROLLBACK');
      } catch {
        broken = true;
      }
      throw error;
    } finally {
      client.removeListener('error', onError);
      client.release(broken);
    }
  }
}

/** Rows per multi-row INSERT of `insertDevices` (9 columns as arrays: one statement of a few hundred KiB). */
const INSERT_CHUNK = 2000;

function concatPair(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  const pair = new Uint8Array(64);
  pair.set(privateKey, 0);
  pair.set(publicKey, 32);
  return pair;
}

async function activeKekFor(client: pg.PoolClient): Promise<number> {
  return Number((await client.query<{ active_kek: number }>('SELECT active_kek FROM kek_state WHERE singleton = 1 FOR SHARE')).rows[0]?.active_kek);
}

/** The keyring of a PostgreSQL hub: given, or from --kek-file / LOCKSTEP_KEK_FILE / LOCKSTEP_KEK (there is no default file next to a URL). */
function pgKeyring(choice: KeyringChoice): Keyring {
  const keyring = resolveKeyring('postgres', { ...choice, env: { ...(choice.env ?? process.env) } }, false);
  // resolveKeyring's last resort is a default file next to a database path, meaningless for a URL:
  if (keyring === undefined || (choice.keyring === undefined && choice.kekFile === undefined && !envHasKek(choice.env ?? process.env))) {
    throw new KekError(
      'KEK_UNAVAILABLE',
      'a PostgreSQL hub needs its key-encryption keyring from outside the database: --kek-file (or LOCKSTEP_KEK_FILE, or LOCKSTEP_KEK); every instance uses the same keyring',
    );
  }
  return keyring;
}

/**
 * A file beside the tier's keyring file (`<KEK file>.<suffix>`: `.revoked`, `.static`), or undefined
 * when the keyring has no file (given inline, or as LOCKSTEP_KEK): every instance reads the same
 * keyring file, so each finds these beside it (docs/HUB.md §13.1, §14.3, §14.4).
 */
export function pgSidecarPath(choice: KeyringChoice, suffix: 'revoked' | 'static'): string | undefined {
  if (choice.keyring !== undefined && choice.kekFile === undefined) return undefined;
  const file = choice.kekFile ?? (choice.env ?? process.env).LOCKSTEP_KEK_FILE;
  return file === undefined || file === '' ? undefined : `${file}.${suffix}`;
}

/**
 * The tier's static key file (docs/HUB.md §14.3): `staticKeyFile` (`--static-key-file`), else
 * LOCKSTEP_STATIC_KEY_FILE, else `<KEK file>.static`; undefined when none can be named (an inline keyring).
 */
export function pgStaticKeyPath(choice: KeyringChoice, staticKeyFile: string | undefined): string | undefined {
  const env = choice.env ?? process.env;
  if (staticKeyFile !== undefined) return staticKeyFile;
  if ((env.LOCKSTEP_STATIC_KEY_FILE ?? '') !== '') return env.LOCKSTEP_STATIC_KEY_FILE;
  return pgSidecarPath(choice, 'static');
}

function envHasKek(env: Readonly<Record<string, string | undefined>>): boolean {
  return (env.LOCKSTEP_KEK_FILE ?? '') !== '' || (env.LOCKSTEP_KEK ?? '') !== '';
}

function kekUnavailable(path: string, kekIds: number[], where: string): KekError {
  return new KekError('KEK_UNAVAILABLE', `database ${path} holds keys wrapped under KEK version ${kekIds.join(', ')}, and ${where} does not provide it`);
}

/** The URL without its password (for logs and errors); a SQLite path is returned as it is. */
export function redact(url: string): string {
  if (!isPostgresUrl(url)) return url;
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

export function isPostgresUrl(database: unknown): database is string {
  return typeof database === 'string' && /^postgres(ql)?:\/\//.test(database);
}
