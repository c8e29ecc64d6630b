/**
 * The hub's durable state in SQLite (better-sqlite3, synchronous API).
 *
 * Invariants:
 * - WAL journal with synchronous=FULL: a transaction is durable when
 *   `commit` returns, so the host may call `HubCore.persisted` right after
 *   (docs/PROTOCOL.md §8.2 rules H1, H2).
 * - Key slot changes are conditional updates: storePending only when no
 *   pending key exists and the active id is the one the op follows;
 *   promote only when the pending id matches. A write that does not apply
 *   reports failure instead of clobbering a key (e.g. a second hub process
 *   on the same file).
 * - Every key (active and pending) is stored wrapped under a key-encryption
 *   key that is not in the database (tools/hub/kek.ts, docs/HUB.md §4.1);
 *   the row says which KEK version wraps it, `kek_state` which version new
 *   wraps use. A store whose database holds wrapped keys and that has no
 *   KEK for them refuses to open (KekError KEK_UNAVAILABLE / KEK_MISMATCH).
 * - secure_delete is on, so SQLite zeroes the pages an old key leaves; and
 *   after every commit that retired a key (a promotion), the WAL is
 *   checkpointed and truncated, so no older copy of the row survives in
 *   hub.db-wal either (retried at the next commit if a reader blocks it).
 * - The database file is created with mode 0600 before SQLite opens it, so it
 *   is never readable by others, not even for a moment; SQLite gives its
 *   -journal, -wal and -shm files the database file's mode.
 */
import { chmodSync, closeSync, existsSync, openSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import Database from 'better-sqlite3';
import { LockstepError } from '../../modules/errors';
import type { HubPersistOp } from '../../modules/hub/actions';
import type { HubPendingSlot } from '../../modules/hub/hub';
import type { KeySlot, RekeyMode } from '../../modules/platform/keys';
import { KekError, resolveKeyring, type Keyring, type KeyringChoice } from './kek';
import { appendAudit, countsSince, recordKeyEvents, findRevocation, readAudit, revocationsAfter, revokeInDatabase, type AuditEntry, type AuditEntryInput, type AuditQuery, type Revocation } from './audit';
import { migrate, SCHEMA_VERSION } from './migrations';
import type { DeviceRecord } from './records';

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
}

/** A device without its keys (what `devices` lists; needs no KEK). */
export type DeviceSummary = Omit<StoredDevice, 'active' | 'pending'> & {
  readonly activeKeyId: number;
  readonly pendingKeyId: number | undefined;
  /** How the pending key was offered (§11), when there is one. */
  readonly pendingMode: RekeyMode | undefined;
  readonly activeKek: number;
};

interface DeviceRow {
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

export interface HubLock {
  readonly pid: number;
  readonly host: string;
  /** Random per hub instance: two hubs in one process are told apart. */
  readonly instance: string;
  readonly startedAt: number;
  readonly heartbeatAt: number;
}

export interface StoreOptions extends KeyringChoice {
  readonly readonly?: boolean;
  /**
   * Checkpoint and truncate the WAL after each commit that promoted a key, so
   * the retired key's row leaves hub.db-wal (default true; false only for
   * the benchmark's comparison).
   */
  readonly truncateWalAfterPromotion?: boolean;
}

/** WAL checkpoints run to erase retired keys (stats and the benchmark). */
export interface ScrubStats {
  checkpoints: number;
  /** Checkpoints that could not complete because a reader held an old snapshot (retried at the next commit). */
  busy: number;
  /** Time spent in them, ms. */
  totalMs: number;
}

/** What `rotateKek` did. */
export interface KekRotation {
  readonly from: number[];
  readonly to: number;
  readonly rewrapped: number;
  readonly transactions: number;
  readonly checkpointed: boolean;
}

const REWRAP_BATCH = 256;

const SELECT_DEVICE = 'SELECT rowid, * FROM devices';

export class HubStore {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #statements: ReturnType<typeof prepare>;

  readonly #keyring: Keyring | undefined;
  /**
   * Checkpoint + truncate the WAL after commits that promote (the default;
   * see StoreOptions). Settable so the benchmark can compare within one run.
   */
  truncateWalAfterPromotion: boolean;
  /** Record each applied key-slot write in the audit trail, in its own commit's transaction (tools/hub/audit.ts). */
  auditKeyEvents = true;
  #scrubPending = false;
  readonly scrub: ScrubStats = { checkpoints: 0, busy: 0, totalMs: 0 };

  constructor(path: string, options: StoreOptions = {}) {
    this.path = path;
    const fresh = path !== ':memory:' && !existsSync(path);
    if (options.readonly === true && fresh) throw new LockstepError('LOCAL_BAD_ARGUMENT', `no hub database at ${path}`);
    if (options.readonly !== true && path !== ':memory:') createPrivately(path, fresh);
    this.#db = new Database(path, { readonly: options.readonly === true, fileMustExist: options.readonly === true });
    this.truncateWalAfterPromotion = options.truncateWalAfterPromotion ?? true;
    try {
      // A busy writer (the serving hub) briefly holds the lock; CLI commands wait.
      this.#db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      const wrapped = wrappedKekIds(this.#db);
      // The default keyring file is created only for a database without wrapped keys.
      this.#keyring = options.readonly === true ? readonlyKeyring(path, options) : resolveKeyring(path, options, wrapped.length === 0);
      if (this.#keyring === undefined && wrapped.length > 0 && options.readonly !== true) throw kekUnavailable(path, wrapped);
      if (options.readonly !== true) {
        this.#db.pragma('journal_mode = WAL');
        this.#db.pragma('synchronous = FULL');
        this.#db.pragma('secure_delete = ON');
        const before = this.#db.pragma('user_version', { simple: true }) as number;
        migrate(this.#db, undefined, { keyring: () => this.#keyring as Keyring });
        if (before > 0 && before < 3 && path !== ':memory:') this.#checkpoint(); // the plaintext rows leave the WAL too
        this.#adoptKeyring();
      }
      this.#statements = prepare(this.#db);
      if (this.#keyring !== undefined) this.#checkKeyring();
    } catch (error) {
      this.#db.close();
      throw error;
    }
  }

  close(): void {
    this.#db.close();
  }

  get schemaVersion(): number {
    return this.#db.pragma('user_version', { simple: true }) as number;
  }

  /** The KEK version new wraps use. */
  get activeKek(): number {
    return (this.#db.prepare('SELECT active_kek FROM kek_state WHERE singleton = 1').get() as { active_kek: number }).active_kek;
  }

  /** Where the keyring comes from (never the key material). */
  get keyringDescription(): string | undefined {
    return this.#keyring?.description;
  }

  /**
   * If the recorded active KEK is not in the keyring and no row uses it (a
   * database without devices given a new keyring), the keyring's newest
   * version becomes active.
   */
  #adoptKeyring(): void {
    const keyring = this.#keyring as Keyring;
    const active = this.activeKek;
    if (keyring.has(active)) return;
    if (wrappedKekIds(this.#db).length === 0) {
      this.#db.prepare('UPDATE kek_state SET active_kek = ? WHERE singleton = 1').run(keyring.newestId);
      return;
    }
    throw new KekError('KEK_UNAVAILABLE', `database ${this.path}: new keys are to be wrapped under KEK version ${active}, which ${keyring.description} does not hold`);
  }

  /** Every KEK version in use must be available and open a row: the hub refuses to start otherwise. */
  #checkKeyring(): void {
    const keyring = this.#keyring as Keyring;
    for (const kekId of wrappedKekIds(this.#db)) {
      if (!keyring.has(kekId)) throw kekUnavailable(this.path, [kekId], keyring.description);
      const row = this.#db.prepare('SELECT rowid, * FROM devices WHERE active_kek = ? LIMIT 1').get(kekId) as DeviceRow | undefined;
      if (row !== undefined) keyring.unwrap(kekId, row.device_id, row.active_id, row.active_key).fill(0);
    }
  }

  // ---- Devices ----

  loadDevices(): StoredDevice[] {
    return (this.#statements.all.all() as DeviceRow[]).map((row) => this.#fromRow(row));
  }

  /** Every device without its keys (no KEK needed). */
  listDevices(): DeviceSummary[] {
    return (this.#statements.all.all() as DeviceRow[]).map(summaryOf);
  }

  /** One device without its keys (no KEK needed). */
  getSummary(deviceId: string): DeviceSummary | undefined {
    const row = this.#statements.one.get(deviceId.toLowerCase()) as DeviceRow | undefined;
    return row === undefined ? undefined : summaryOf(row);
  }

  getDevice(deviceId: string): StoredDevice | undefined {
    const row = this.#statements.one.get(deviceId.toLowerCase()) as DeviceRow | undefined;
    return row === undefined ? undefined : this.#fromRow(row);
  }

  /** Devices added after `rowid` (by another process, e.g. the provision command). */
  devicesAfter(rowid: number): StoredDevice[] {
    return (this.#statements.after.all(rowid) as DeviceRow[]).map((row) => this.#fromRow(row));
  }

  #fromRow(row: DeviceRow): StoredDevice {
    const keyring = this.#keyring;
    if (keyring === undefined) throw kekUnavailable(this.path, [row.active_kek]);
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
    return { ...summaryOf(row), active, ...(pending === undefined ? {} : { pending }) } as StoredDevice;
  }

  #wrap(kekId: number, deviceId: string, keyId: number, key: Uint8Array): Buffer {
    if (this.#keyring === undefined) throw kekUnavailable(this.path, [kekId]);
    return this.#keyring.wrap(kekId, deviceId, keyId, key);
  }

  /** Inserts a provisioned device; throws LOCAL_BAD_ARGUMENT if the id exists. */
  insertDevice(record: DeviceRecord, now: number): StoredDevice {
    // issue 17: a revoked id stays refused (a copy of its old record must not come back).
    if (findRevocation(this.#db, record.deviceId) !== undefined) throw new LockstepError('LOCAL_BAD_ARGUMENT', `device ${record.deviceId} was revoked`);
    if (record.mode !== 'dh' && record.mode !== 'classic') throw new LockstepError('LOCAL_BAD_ARGUMENT', `device ${record.deviceId}: mode must be "dh" or "classic"`);
    try {
      const kekId = this.activeKek;
      this.#statements.insert.run(record.deviceId, record.active.id, kekId, this.#wrap(kekId, record.deviceId, record.active.id, record.active.key), now, now, record.mode);
    } catch (error) {
      if ((error as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        throw new LockstepError('LOCAL_BAD_ARGUMENT', `device ${record.deviceId} is already provisioned`);
      }
      throw error;
    }
    return this.getDevice(record.deviceId) as StoredDevice;
  }

  /** Inserts several devices atomically: all or none. */
  insertDevices(records: readonly DeviceRecord[], now: number): void {
    this.#db.transaction(() => {
      for (const record of records) this.insertDevice(record, now);
    })();
  }

  /**
   * Commits the ops in one transaction (group commit) and reports, per op,
   * whether it applied. A SQLite error aborts the whole batch and throws:
   * nothing of it is durable.
   */
  commit(ops: readonly HubPersistOp[], now: number): boolean[] {
    let promoted = false;
    // IMMEDIATE: the write lock is taken before the active KEK is read, so a
    // `kek rotate` switching versions in another process is never missed.
    const applied = this.#db.transaction(() => {
      const kekId = this.activeKek;
      const results = ops.map((op) => {
        if (op.kind === 'storePending') {
          if (op.dh === undefined) {
            const wrapped = this.#wrap(kekId, op.deviceId, op.id, op.key);
            return this.#statements.storePending.run(op.id, kekId, wrapped, 0, now, op.deviceId, op.id - 1).changes === 1;
          }
          // Rule H4: the ephemeral pair is durable (the private key under the KEK) before REKEY_DH is sent.
          const pair = new Uint8Array(64);
          pair.set(op.dh.privateKey, 0);
          pair.set(op.dh.publicKey, 32);
          try {
            const wrapped = this.#wrap(kekId, op.deviceId, op.id, pair);
            return this.#statements.storePending.run(op.id, kekId, wrapped, 1, now, op.deviceId, op.id - 1).changes === 1;
          } finally {
            pair.fill(0);
          }
        }
        // issue 14's ops (storeRecovered, storeDeviceStatic) are not written by this store yet: reported as not applied.
        if (op.kind !== 'promote') return false;
        if (op.key !== undefined) {
          // HK8: the derived key becomes active; the row's wrapped ephemeral pair is overwritten in the same commit (rule H5).
          const wrapped = this.#wrap(kekId, op.deviceId, op.id, op.key);
          const done = this.#statements.promoteDerived.run(kekId, wrapped, now, op.deviceId, op.id).changes === 1;
          promoted ||= done;
          return done;
        }
        const done = this.#statements.promote.run(now, op.deviceId, op.id).changes === 1;
        promoted ||= done;
        return done;
      });
      if (this.auditKeyEvents) recordKeyEvents(this.#db, ops, results, now); // issue 17: in the same transaction as the key change
      return results;
    }).immediate();
    if ((promoted && this.truncateWalAfterPromotion) || this.#scrubPending) this.#checkpoint();
    return applied;
  }

  /**
   * Moves every committed page into the database file and truncates the WAL
   * to zero bytes, so the frames holding a retired key's row are gone. Never
   * waits for readers (busy_timeout 0 meanwhile): if one holds an old
   * snapshot the checkpoint is incomplete and is retried at the next commit.
   * Returns whether it completed.
   */
  #checkpoint(): boolean {
    const started = performance.now();
    this.#db.pragma('busy_timeout = 0');
    let busy = true;
    try {
      const [result] = this.#db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[];
      busy = result === undefined || result.busy !== 0;
    } catch (error) {
      if ((error as { code?: string }).code !== 'SQLITE_BUSY' && (error as { code?: string }).code !== 'SQLITE_LOCKED') throw error;
    } finally {
      this.#db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    }
    this.scrub.checkpoints++;
    this.scrub.totalMs += performance.now() - started;
    if (busy) this.scrub.busy++;
    this.#scrubPending = busy;
    return !busy;
  }

  /** Runs the WAL checkpoint now, waiting up to `timeoutMs` for readers to let go. */
  async checkpointNow(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#checkpoint()) return true;
      if (Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /**
   * KEK rotation, online: makes version `to` (which the keyring must hold)
   * the one new wraps use, then re-wraps every row under another version in
   * short IMMEDIATE transactions (a serving hub's commits interleave; each
   * re-wrap reads and writes the row under the write lock, so no rotation
   * is lost), then checkpoints so the old wrapped forms leave the WAL.
   */
  async rotateKek(to: number, onProgress?: (rewrapped: number) => void): Promise<KekRotation> {
    const keyring = this.#keyring;
    if (keyring === undefined || !keyring.has(to)) throw new KekError('KEK_UNAVAILABLE', `KEK version ${to} is not in ${keyring?.description ?? 'any keyring'}`);
    const from = wrappedKekIds(this.#db).filter((id) => id !== to);
    this.#db.prepare('UPDATE kek_state SET active_kek = ? WHERE singleton = 1').run(to);
    const select = this.#db.prepare(`SELECT rowid, * FROM devices WHERE active_kek != ? OR pending_kek != ? LIMIT ${REWRAP_BATCH}`);
    const update = this.#db.prepare('UPDATE devices SET active_kek = ?, active_key = ?, pending_kek = ?, pending_key = ? WHERE rowid = ?');
    let rewrapped = 0;
    let transactions = 0;
    for (;;) {
      const count = this.#db.transaction(() => {
        const rows = select.all(to, to) as DeviceRow[];
        for (const row of rows) {
          const active = keyring.unwrap(row.active_kek, row.device_id, row.active_id, row.active_key);
          const pending =
            row.pending_id === null || row.pending_key === null || row.pending_kek === null
              ? undefined
              : keyring.unwrap(row.pending_kek, row.device_id, row.pending_id, row.pending_key);
          update.run(to, keyring.wrap(to, row.device_id, row.active_id, active), pending === undefined ? null : to,
            pending === undefined ? null : keyring.wrap(to, row.device_id, row.pending_id as number, pending), row.rowid);
          active.fill(0);
          pending?.fill(0);
        }
        return rows.length;
      }).immediate();
      transactions++;
      rewrapped += count;
      onProgress?.(rewrapped);
      if (count < REWRAP_BATCH) break;
      await new Promise((resolve) => setImmediate(resolve)); // let a hub in this process commit in between
    }
    const checkpointed = this.path === ':memory:' ? true : await this.checkpointNow();
    return { from, to, rewrapped, transactions, checkpointed };
  }

  /** The raw stored (wrapped) forms of a device's keys: for audits and the tests that scan files for them. */
  wrappedForms(deviceId: string): { active: { kek: number; bytes: Buffer }; pending?: { kek: number; bytes: Buffer } } | undefined {
    const row = this.#statements.one.get(deviceId.toLowerCase()) as DeviceRow | undefined;
    if (row === undefined) return undefined;
    return {
      active: { kek: row.active_kek, bytes: row.active_key },
      ...(row.pending_key === null || row.pending_kek === null ? {} : { pending: { kek: row.pending_kek, bytes: row.pending_key } }),
    };
  }

  /** Records when devices were last seen (one transaction; not safety-relevant). */
  touch(lastSeen: ReadonlyMap<string, number>): void {
    if (lastSeen.size === 0) return;
    this.#db.transaction(() => {
      for (const [deviceId, at] of lastSeen) this.#statements.touch.run(at, deviceId);
    })();
  }

  /** Asks the serving hub to rotate a device (picked up by its control poll). */
  /**
   * §11.6: the device's mode moves to dh (never back). The serving hub picks
   * the change up at its next control poll (mode_changed_at); it applies from
   * the next rotation. Answers what happened.
   */
  upgradeToDh(deviceId: string, now: number): 'upgraded' | 'already' | 'missing' {
    const summary = this.getSummary(deviceId);
    if (summary === undefined) return 'missing';
    if (summary.mode === 'dh') return 'already';
    this.#statements.setMode.run(now, deviceId.toLowerCase());
    return 'upgraded';
  }

  /** Devices whose mode another process changed (the control poll applies and clears them). */
  modeChanges(): string[] {
    return (this.#statements.modeChanges.all() as { device_id: string }[]).map((row) => row.device_id);
  }

  clearModeChange(deviceId: string): void {
    this.#statements.clearModeChange.run(deviceId);
  }

  requestRotation(deviceId: string, now: number): boolean {
    return this.#statements.requestRotation.run(now, deviceId.toLowerCase()).changes === 1;
  }

  rotationRequests(): string[] {
    return (this.#statements.requests.all() as { device_id: string }[]).map((row) => row.device_id);
  }

  // ---- issue 17: audit trail and revocation (tools/hub/audit.ts) ----

  /** `durable: false` for key events: no fsync of their own (see audit.ts). */
  appendAudit(entries: readonly AuditEntryInput[], now: number, durable = true): void {
    appendAudit(this.#db, entries, now, durable);
  }

  readAudit(query: AuditQuery): AuditEntry[] {
    return readAudit(this.#db, query);
  }

  /** Entries of `action` per `bucketMs` since `since` (see audit.ts countsSince). */
  auditCounts(action: string, since: number, bucketMs: number): Map<number, number> {
    return countsSince(this.#db, action, since, bucketMs);
  }

  /** Deletes the device with its keys and records the revocation (see audit.ts); undefined if there is no such device. */
  revokeDevice(deviceId: string, actor: string, reason: string | undefined, now: number): Revocation | undefined {
    return revokeInDatabase(this.#db, deviceId, actor, reason, now);
  }

  revocation(deviceId: string): Revocation | undefined {
    return findRevocation(this.#db, deviceId);
  }

  revocationsAfter(seq: number): Revocation[] {
    return revocationsAfter(this.#db, seq);
  }

  /** KEK wraps and unwraps so far (counts only). */
  get kekOperations(): { wrap: number; unwrap: number; unwrapFailed: number } {
    return this.#keyring?.operations ?? { wrap: 0, unwrap: 0, unwrapFailed: 0 };
  }

  // ---- The serving-hub lock ----

  /**
   * Takes the lock for hub `instance` unless another live hub holds it: a
   * holder on this host whose process is gone, or whose heartbeat is older
   * than `staleMs`, is taken over. Returns the holder that keeps it, if any.
   */
  acquireLock(instance: string, now: number, staleMs: number, isAlive: (pid: number) => boolean = processAlive, pid = process.pid): HubLock | undefined {
    const host = hostname();
    return this.#db.transaction(() => {
      const holder = this.readLock();
      if (holder !== undefined && holder.instance !== instance) {
        const dead = holder.host === host && !isAlive(holder.pid);
        if (!dead && now - holder.heartbeatAt < staleMs) return holder;
      }
      this.#statements.lock.run(pid, host, instance, now, now);
      return undefined;
    }).immediate();
  }

  readLock(): HubLock | undefined {
    const row = this.#statements.readLock.get() as { pid: number; host: string; instance: string; started_at: number; heartbeat_at: number } | undefined;
    return row === undefined
      ? undefined
      : { pid: row.pid, host: row.host, instance: row.instance, startedAt: row.started_at, heartbeatAt: row.heartbeat_at };
  }

  heartbeat(instance: string, now: number): void {
    this.#statements.heartbeat.run(now, instance);
  }

  releaseLock(instance: string): void {
    this.#statements.unlock.run(instance);
  }
}

function prepare(db: Database.Database) {
  return {
    all: db.prepare(`${SELECT_DEVICE} ORDER BY rowid`),
    one: db.prepare(`${SELECT_DEVICE} WHERE device_id = ?`),
    after: db.prepare(`${SELECT_DEVICE} WHERE rowid > ? ORDER BY rowid`),
    insert: db.prepare('INSERT INTO devices (device_id, active_id, active_kek, active_key, created_at, active_since, mode) VALUES (?, ?, ?, ?, ?, ?, ?)'),
    storePending: db.prepare(
      `UPDATE devices SET pending_id = ?, pending_kek = ?, pending_key = ?, pending_dh = ?, pending_since = ?, rotate_requested_at = NULL
       WHERE device_id = ? AND active_id = ? AND pending_id IS NULL`,
    ),
    promote: db.prepare(
      `UPDATE devices SET active_id = pending_id, active_kek = pending_kek, active_key = pending_key, active_since = ?,
         pending_id = NULL, pending_kek = NULL, pending_key = NULL, pending_dh = 0, pending_since = NULL, rotations = rotations + 1
       WHERE device_id = ? AND pending_id = ? AND pending_dh = 0`,
    ),
    promoteDerived: db.prepare(
      `UPDATE devices SET active_id = pending_id, active_kek = ?, active_key = ?, active_since = ?,
         pending_id = NULL, pending_kek = NULL, pending_key = NULL, pending_dh = 0, pending_since = NULL, rotations = rotations + 1
       WHERE device_id = ? AND pending_id = ? AND pending_dh = 1`,
    ),
    setMode: db.prepare(`UPDATE devices SET mode = 'dh', mode_changed_at = ? WHERE device_id = ?`),
    modeChanges: db.prepare('SELECT device_id FROM devices WHERE mode_changed_at IS NOT NULL'),
    clearModeChange: db.prepare('UPDATE devices SET mode_changed_at = NULL WHERE device_id = ?'),
    touch: db.prepare('UPDATE devices SET last_seen_at = ? WHERE device_id = ?'),
    requestRotation: db.prepare('UPDATE devices SET rotate_requested_at = ? WHERE device_id = ?'),
    requests: db.prepare('SELECT device_id FROM devices WHERE rotate_requested_at IS NOT NULL ORDER BY rotate_requested_at'),
    lock: db.prepare(
      `INSERT INTO hub_lock (singleton, pid, host, instance, started_at, heartbeat_at) VALUES (1, ?, ?, ?, ?, ?)
       ON CONFLICT (singleton) DO UPDATE SET pid = excluded.pid, host = excluded.host, instance = excluded.instance,
         started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at`,
    ),
    readLock: db.prepare('SELECT pid, host, instance, started_at, heartbeat_at FROM hub_lock WHERE singleton = 1'),
    heartbeat: db.prepare('UPDATE hub_lock SET heartbeat_at = ? WHERE singleton = 1 AND instance = ?'),
    unlock: db.prepare('DELETE FROM hub_lock WHERE singleton = 1 AND instance = ?'),
  };
}

const BUSY_TIMEOUT_MS = 5000;

function summaryOf(row: DeviceRow): DeviceSummary {
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

/** The KEK versions that wrap some row (none before migration 3). */
function wrappedKekIds(db: Database.Database): number[] {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version < 3 || version > SCHEMA_VERSION) return []; // (a newer schema is refused by migrate)
  const rows = db.prepare('SELECT active_kek AS id FROM devices UNION SELECT pending_kek FROM devices WHERE pending_kek IS NOT NULL').all() as { id: number }[];
  return rows.map((r) => r.id).sort((a, b) => a - b);
}

/**
 * A read-only store (`hub devices`, `hub kek status`) lists devices without
 * their keys, so a missing or unusable keyring does not stop it: reading a
 * key then throws KEK_UNAVAILABLE.
 */
function readonlyKeyring(path: string, choice: KeyringChoice): Keyring | undefined {
  try {
    return resolveKeyring(path, choice, false);
  } catch (error) {
    if (error instanceof KekError) return undefined;
    throw error;
  }
}

function kekUnavailable(path: string, kekIds: number[], where?: string): KekError {
  return new KekError(
    'KEK_UNAVAILABLE',
    `database ${path} holds keys wrapped under KEK version ${kekIds.join(', ')}, and ${where ?? 'no keyring'} provides it: ` +
      `give the keyring with --kek-file (or LOCKSTEP_KEK_FILE, or LOCKSTEP_KEK), or put its file at ${path}.kek. ` +
      'A database copied without its KEK opens no device.',
  );
}

/**
 * Creates the database file owner-only (0600, O_EXCL) before SQLite opens
 * it: SQLite itself would create it 0644 (less the umask), and a chmod
 * afterwards leaves a window in which another local user can open it and
 * keep reading through that descriptor. An existing database (or its
 * -wal/-shm) found readable by others is tightened to 0600.
 */
function createPrivately(path: string, fresh: boolean): void {
  if (fresh) {
    try {
      closeSync(openSync(path, 'wx', 0o600));
    } catch (error) {
      if ((error as { code?: string }).code !== 'EEXIST') throw error;
    }
  }
  for (const file of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) {
    try {
      if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
    } catch (error) {
      if ((error as { code?: string }).code !== 'ENOENT') throw error;
    }
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as { code?: string }).code === 'EPERM';
  }
}
