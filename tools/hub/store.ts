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
import { storedOfRow, summaryOfRow, type DeviceRow, type DeviceSummary, type StoredDevice } from './device-row';
import { chmodSync, closeSync, existsSync, openSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import Database from 'better-sqlite3';
import { LockstepError } from '../../modules/errors';
import type { HubPersistOp } from '../../modules/hub/actions';
import type { KeySlot, RekeyMode } from '../../modules/platform/keys';
import { KekError, resolveKeyring, type Keyring, type KeyringChoice } from './kek';
import { appendAudit, countsSince, recordKeyEvents, findRevocation, readAudit, revocationsAfter, revokeInDatabase, type AuditEntry, type AuditEntryInput, type AuditQuery, type Revocation } from './audit';
import { migrate, SCHEMA_VERSION } from './migrations';
import type { DeviceRecord } from './records';
import { decide, type RecoveryDecision, type RecoveryPolicy, type RecoveryRecord, type RecoveryRequestInput, type RecoveryRequestRow, RECOVERY_STATUS_NAMES } from './recovery';
import { appendRevocation, defaultRevocationPath, readRevocations } from './revocation-file';
import { createStaticKeyFile, staticKeyPath, type StaticKeyChoice } from './static-keys';

export type { DeviceSummary, StoredDevice } from './device-row';


export interface HubLock {
  readonly pid: number;
  readonly host: string;
  /** Random per hub instance: two hubs in one process are told apart. */
  readonly instance: string;
  readonly startedAt: number;
  readonly heartbeatAt: number;
}

export interface StoreOptions extends KeyringChoice, StaticKeyChoice {
  readonly readonly?: boolean;
  /** The append-only revocation file (tools/hub/revocation-file.ts); default `<db>.revoked`. */
  readonly revocationFile?: string;
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
  /** Where revocations survive a restore (undefined for ':memory:'). */
  readonly revocationFile: string | undefined;
  /** The hub static key file of this database (tools/hub/static-keys.ts; undefined for ':memory:'). */
  readonly staticKeyFile: string | undefined;
  /** Device rows the revocation file erased again when this store opened (a restored backup older than a revocation). */
  readonly reRevoked: string[] = [];

  constructor(path: string, options: StoreOptions = {}) {
    this.path = path;
    const fresh = path !== ':memory:' && !existsSync(path);
    if (options.readonly === true && fresh) throw new LockstepError('LOCAL_BAD_ARGUMENT', `no hub database at ${path}`);
    if (options.readonly !== true && path !== ':memory:') createPrivately(path, fresh);
    this.#db = new Database(path, { readonly: options.readonly === true, fileMustExist: options.readonly === true });
    this.truncateWalAfterPromotion = options.truncateWalAfterPromotion ?? true;
    this.revocationFile = path === ':memory:' ? options.revocationFile : (options.revocationFile ?? defaultRevocationPath(path));
    this.staticKeyFile = path === ':memory:' ? options.staticKeyFile : staticKeyPath(path, options);
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
      if (options.readonly !== true) {
        // Issue 14: the hub's static key pair is created with the database, outside it (docs/HUB.md §14.3).
        if (fresh && this.staticKeyFile !== undefined && !existsSync(this.staticKeyFile)) createStaticKeyFile(this.staticKeyFile, Date.now());
        this.#applyRevocationFile();
      }
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
    return (this.#statements.all.all() as DeviceRow[]).map(summaryOfRow);
  }

  /** One device without its keys (no KEK needed). */
  getSummary(deviceId: string): DeviceSummary | undefined {
    const row = this.#statements.one.get(deviceId.toLowerCase()) as DeviceRow | undefined;
    return row === undefined ? undefined : summaryOfRow(row);
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
    if (this.#keyring === undefined) throw kekUnavailable(this.path, [row.active_kek]);
    return storedOfRow(row, this.#keyring);
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
      if ((record.devicePublicKey === undefined) !== (record.hubStaticId === undefined)) {
        throw new LockstepError('LOCAL_BAD_ARGUMENT', `device ${record.deviceId}: devicePublicKey and hubStaticId go together`);
      }
      this.#statements.insert.run(record.deviceId, record.active.id, kekId, this.#wrap(kekId, record.deviceId, record.active.id, record.active.key), now, now, record.mode,
        record.devicePublicKey === undefined ? null : Buffer.from(record.devicePublicKey), record.hubStaticId ?? null);
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
        if (op.kind === 'storeRecovered') {
          // HK9 (issue 14). secure_delete zeroes the replaced pending's cells; the WAL is truncated after this commit as after a promotion.
          const wrapped = this.#wrap(kekId, op.deviceId, op.id, op.key);
          const done = this.#statements.storeRecovered.run(op.id, kekId, wrapped, now, op.deviceId, op.id, op.id).changes === 1;
          promoted ||= done;
          return done;
        }
        if (op.kind === 'storeDeviceStatic') {
          const key = Buffer.from(op.publicKey);
          return this.#statements.storeDeviceStatic.run(key, op.hubStaticId, op.deviceId, key, op.hubStaticId).changes === 1;
        }
        if (op.kind === 'storePending') {
          if (op.modeChange === 'dh') {
            // HK11: the replaced classic pending's key is erased like a retired one (secure_delete, WAL truncated after the commit).
            const pair = new Uint8Array(64);
            pair.set(op.dh.privateKey, 0);
            pair.set(op.dh.publicKey, 32);
            try {
              const wrapped = this.#wrap(kekId, op.deviceId, op.id, pair);
              const done = this.#statements.storePendingModeChange.run(op.id, kekId, wrapped, now, op.deviceId, op.id - 1, op.id).changes === 1;
              promoted ||= done;
              return done;
            } finally {
              pair.fill(0);
            }
          }
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
        let done: boolean;
        if (op.key !== undefined) {
          // HK8: the derived key becomes active; the row's wrapped ephemeral pair is overwritten in the same commit (rule H5).
          const wrapped = this.#wrap(kekId, op.deviceId, op.id, op.key);
          done = this.#statements.promoteDerived.run(kekId, wrapped, now, op.deviceId, op.id).changes === 1;
        } else {
          done = this.#statements.promote.run(now, op.deviceId, op.id).changes === 1;
        }
        // HE1 (issue 14): enrolment becomes ready in the commit that promotes the dh key after arming.
        if (done && op.enrolmentReady === true) this.#statements.enrolmentReady.run(op.deviceId);
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
    const id = deviceId.toLowerCase();
    // Issue 14: the revocation file first (fsync'd), so a restore of the database cannot undo it (docs/HUB.md §14.4).
    if (this.revocationFile !== undefined && /^[0-9a-f]{16}$/.test(id) && this.#statements.one.get(id) !== undefined) {
      appendRevocation(this.revocationFile, { deviceId: id, revokedAt: now, actor, reason: reason ?? null });
    }
    const revocation = revokeInDatabase(this.#db, deviceId, actor, reason, now);
    if (revocation !== undefined) this.#db.prepare('DELETE FROM recovery_requests WHERE device_id = ?').run(id);
    return revocation;
  }

  revocation(deviceId: string): Revocation | undefined {
    return findRevocation(this.#db, deviceId);
  }

  revocationsAfter(seq: number): Revocation[] {
    return revocationsAfter(this.#db, seq);
  }

  // ---- issue 14: recovery (tools/hub/recovery.ts, docs/HUB.md §14) ----

  /**
   * Decides an authenticated recovery request by the policy (tools/hub/recovery.ts `decide`),
   * in one IMMEDIATE transaction that reads the device's accepted recoveries in the window
   * and its approval, charges the count (ACCEPTED), records or clears the request, and writes
   * the audit entry: two processes on this file never both take the last slot.
   */
  decideRecovery(request: RecoveryRequestInput, policy: RecoveryPolicy, now: number, actor = 'hub'): RecoveryDecision {
    const deviceId = request.deviceId.toLowerCase();
    return this.#db.transaction(() => {
      this.#db.prepare('DELETE FROM recoveries WHERE device_id = ? AND at <= ?').run(deviceId, now - policy.windowMs);
      const accepted = (this.#db.prepare('SELECT at FROM recoveries WHERE device_id = ? ORDER BY at').all(deviceId) as { at: number }[]).map((r) => r.at);
      const pending = this.#db.prepare('SELECT approved_at FROM recovery_requests WHERE device_id = ?').get(deviceId) as { approved_at: number | null } | undefined;
      const revoked = findRevocation(this.#db, deviceId) !== undefined || this.#statements.one.get(deviceId) === undefined;
      const decision = decide(policy, request, { revoked, acceptedInWindow: accepted, approvedAt: pending?.approved_at ?? undefined }, now);
      if (decision.charge) this.#db.prepare('INSERT INTO recoveries (device_id, at, new_key_id) VALUES (?, ?, ?)').run(deviceId, now, request.newKeyId);
      if (decision.clearRequest) this.#db.prepare('DELETE FROM recovery_requests WHERE device_id = ?').run(deviceId);
      if (decision.record) {
        this.#db
          .prepare(
            `INSERT INTO recovery_requests (device_id, first_at, last_at, attempts, new_key_id, claimed_active, claimed_future) VALUES (?, ?, ?, 1, ?, ?, ?)
             ON CONFLICT (device_id) DO UPDATE SET last_at = excluded.last_at, attempts = attempts + 1, new_key_id = excluded.new_key_id,
               claimed_active = excluded.claimed_active, claimed_future = excluded.claimed_future,
               approved_at = CASE WHEN ? THEN NULL ELSE approved_at END, approved_by = CASE WHEN ? THEN NULL ELSE approved_by END`,
          )
          .run(deviceId, now, now, request.newKeyId, request.claimedActive, request.claimedFuture, decision.reason === 'approvalExpired' ? 1 : 0, decision.reason === 'approvalExpired' ? 1 : 0);
      }
      appendAudit(this.#db, [{ actor, action: 'recovery.decide', deviceId, outcome: RECOVERY_STATUS_NAMES[decision.status], detail: {
        reason: decision.reason, policy: policy.mode, newKeyId: request.newKeyId, claimedActive: request.claimedActive, claimedFuture: request.claimedFuture,
        retryAfterSeconds: decision.retryAfterSeconds, acceptedInWindow: accepted.length + (decision.charge ? 1 : 0),
      } }], now);
      return decision;
    }).immediate();
  }

  /**
   * An operator approves the device's recorded request (`hub recover`): the next authenticated
   * request is accepted (within the approval's validity and the per-device limit).
   * 'approved', 'already' (approved before), 'none' (no request recorded), 'missing' (no such device).
   */
  approveRecovery(deviceId: string, actor: string, now: number): 'approved' | 'already' | 'none' | 'missing' {
    const id = deviceId.toLowerCase();
    return this.#db.transaction(() => {
      if (this.#statements.one.get(id) === undefined) return 'missing';
      const row = this.#db.prepare('SELECT approved_at FROM recovery_requests WHERE device_id = ?').get(id) as { approved_at: number | null } | undefined;
      if (row === undefined) return 'none';
      if (row.approved_at !== null) return 'already';
      this.#db.prepare('UPDATE recovery_requests SET approved_at = ?, approved_by = ? WHERE device_id = ?').run(now, actor.slice(0, 64), id);
      appendAudit(this.#db, [{ actor, action: 'recovery.approve', deviceId: id, outcome: 'ok' }], now);
      return 'approved';
    }).immediate();
  }

  /** Recorded requests, oldest first (at most `limit`). */
  recoveryRequests(limit = 1000): RecoveryRequestRow[] {
    const rows = this.#db.prepare('SELECT * FROM recovery_requests ORDER BY first_at LIMIT ?').all(Math.max(1, Math.min(limit, 10_000))) as {
      device_id: string; first_at: number; last_at: number; attempts: number; new_key_id: number; claimed_active: number; claimed_future: number; approved_at: number | null; approved_by: string | null;
    }[];
    return rows.map((r) => ({
      deviceId: r.device_id, firstAt: r.first_at, lastAt: r.last_at, attempts: r.attempts, newKeyId: r.new_key_id, claimedActive: r.claimed_active,
      claimedFuture: r.claimed_future, approvedAt: r.approved_at ?? undefined, approvedBy: r.approved_by ?? undefined,
    }));
  }

  /** Accepted recoveries, newest first (the per-device count keeps one window of them). */
  recentRecoveries(limit = 100): RecoveryRecord[] {
    const rows = this.#db.prepare('SELECT seq, device_id, at, new_key_id FROM recoveries ORDER BY seq DESC LIMIT ?').all(Math.max(1, Math.min(limit, 1000))) as { seq: number; device_id: string; at: number; new_key_id: number }[];
    return rows.map((r) => ({ seq: r.seq, deviceId: r.device_id, at: r.at, newKeyId: r.new_key_id }));
  }

  /**
   * `hub enrol` (HE1): arms enrolment for a device without a static key; the serving hub reloads
   * the record at its next poll (record_changed_at). 'armed', 'enrolled' (it has a static key: a
   * second enrolment is refused, §12.6), 'missing'.
   */
  armEnrolment(deviceId: string, now: number): 'armed' | 'enrolled' | 'missing' {
    const id = deviceId.toLowerCase();
    const summary = this.getSummary(id);
    if (summary === undefined) return 'missing';
    if (summary.devicePublicKey !== undefined) return 'enrolled';
    this.#statements.armEnrolment.run(now, now, id);
    return 'armed';
  }

  /** Devices whose record another process changed (enrolment armed): the control poll reloads and clears them. */
  recordChanges(): string[] {
    return (this.#statements.recordChanges.all() as { device_id: string }[]).map((row) => row.device_id);
  }

  clearRecordChange(deviceId: string): void {
    this.#statements.clearRecordChange.run(deviceId);
  }

  /** How many device records name each hub static id (`hub static-key retire` refuses a referenced one). */
  staticKeyReferences(): Map<number, number> {
    const rows = this.#db.prepare('SELECT hub_static_id AS id, COUNT(*) AS n FROM devices WHERE hub_static_id IS NOT NULL GROUP BY hub_static_id').all() as { id: number; n: number }[];
    return new Map(rows.map((r) => [r.id, r.n]));
  }

  /**
   * Applies the revocation file (issue 14, docs/HUB.md §14.4): every device it names is
   * erased again if its row came back with a restored backup, and recorded as revoked
   * in the database (so provisioning the id is refused).
   */
  #applyRevocationFile(): void {
    if (this.revocationFile === undefined) return;
    const lines = readRevocations(this.revocationFile);
    if (lines.length === 0) return;
    this.#db.transaction(() => {
      const insert = this.#db.prepare('INSERT OR IGNORE INTO revoked_devices (device_id, revoked_at, actor, reason, last_key_id) VALUES (?, ?, ?, ?, ?)');
      for (const line of lines) {
        const row = this.#db.prepare('SELECT active_id FROM devices WHERE device_id = ?').get(line.deviceId) as { active_id: number } | undefined;
        if (row !== undefined) {
          this.#db.prepare('DELETE FROM devices WHERE device_id = ?').run(line.deviceId);
          this.#db.prepare('DELETE FROM recovery_requests WHERE device_id = ?').run(line.deviceId);
          this.reRevoked.push(line.deviceId);
          appendAudit(this.#db, [{ actor: 'hub', action: 'device.revoke', deviceId: line.deviceId, outcome: 'reapplied', detail: { source: 'revocationFile', lastKeyId: row.active_id } }], Date.now());
        }
        insert.run(line.deviceId, line.revokedAt, line.actor.slice(0, 64), line.reason === null ? null : line.reason.slice(0, 200), row?.active_id ?? 0);
      }
    }).immediate();
    if (this.reRevoked.length > 0 && this.path !== ':memory:') this.#checkpoint();
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

  /** The database answers (the operator API's readiness check). */
  ping(): void {
    this.readLock();
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
    insert: db.prepare(
      'INSERT INTO devices (device_id, active_id, active_kek, active_key, created_at, active_since, mode, device_public_key, hub_static_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
    ),
    // Issue 14. HK9: the recovered key replaces the pending slot (classic form), only above every id the row holds (R3).
    storeRecovered: db.prepare(
      `UPDATE devices SET pending_id = ?, pending_kek = ?, pending_key = ?, pending_dh = 0, pending_since = ?, rotate_requested_at = NULL
       WHERE device_id = ? AND ? > active_id AND (pending_id IS NULL OR ? > pending_id)`,
    ),
    // HE2: S_d once; the same key again is a no-op that applies; another one never (STATIC_KEY_LOCKED).
    storeDeviceStatic: db.prepare(
      `UPDATE devices SET device_public_key = ?, hub_static_id = ?, enrolment = NULL, enrolment_armed_at = NULL, record_changed_at = NULL
       WHERE device_id = ? AND ((device_public_key IS NULL AND enrolment = 'ready') OR (device_public_key = ? AND hub_static_id = ?))`,
    ),
    // HK11: mode dh and the dh pending replacing the refused classic one (same id), one commit.
    storePendingModeChange: db.prepare(
      `UPDATE devices SET mode = 'dh', mode_changed_at = NULL, pending_id = ?, pending_kek = ?, pending_key = ?, pending_dh = 1, pending_since = ?, rotate_requested_at = NULL
       WHERE device_id = ? AND active_id = ? AND (pending_id IS NULL OR (pending_id = ? AND pending_dh = 0))`,
    ),
    enrolmentReady: db.prepare(`UPDATE devices SET enrolment = 'ready' WHERE device_id = ? AND enrolment = 'armed'`),
    armEnrolment: db.prepare(`UPDATE devices SET enrolment = 'armed', enrolment_armed_at = ?, record_changed_at = ? WHERE device_id = ? AND device_public_key IS NULL`),
    recordChanges: db.prepare('SELECT device_id FROM devices WHERE record_changed_at IS NOT NULL'),
    clearRecordChange: db.prepare('UPDATE devices SET record_changed_at = NULL WHERE device_id = ?'),
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
