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
 * - secure_delete is on, so SQLite zeroes the pages an old key leaves.
 * - The database file is created with mode 0600 before SQLite opens it, so it
 *   is never readable by others, not even for a moment; SQLite gives its
 *   -journal, -wal and -shm files the database file's mode.
 */
import { chmodSync, closeSync, existsSync, openSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import Database from 'better-sqlite3';
import { LockstepError } from '../../modules/errors';
import type { HubPersistOp } from '../../modules/hub/actions';
import type { KeySlot } from '../../modules/platform/keys';
import { migrate } from './migrations';
import type { DeviceRecord } from './records';

export interface StoredDevice {
  readonly deviceId: string;
  readonly active: KeySlot;
  readonly pending?: KeySlot;
  readonly createdAt: number;
  readonly activeSince: number;
  readonly pendingSince: number | undefined;
  readonly lastSeenAt: number | undefined;
  readonly rotations: number;
  readonly rotateRequestedAt: number | undefined;
  readonly rowid: number;
}

interface DeviceRow {
  rowid: number;
  device_id: string;
  active_id: number;
  active_key: Buffer;
  pending_id: number | null;
  pending_key: Buffer | null;
  created_at: number;
  active_since: number;
  pending_since: number | null;
  last_seen_at: number | null;
  rotations: number;
  rotate_requested_at: number | null;
}

export interface HubLock {
  readonly pid: number;
  readonly host: string;
  /** Random per hub instance: two hubs in one process are told apart. */
  readonly instance: string;
  readonly startedAt: number;
  readonly heartbeatAt: number;
}

export interface StoreOptions {
  readonly readonly?: boolean;
}

const SELECT_DEVICE = 'SELECT rowid, * FROM devices';

export class HubStore {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #statements: ReturnType<typeof prepare>;

  constructor(path: string, options: StoreOptions = {}) {
    this.path = path;
    const fresh = path !== ':memory:' && !existsSync(path);
    if (options.readonly === true && fresh) throw new LockstepError('LOCAL_BAD_ARGUMENT', `no hub database at ${path}`);
    if (options.readonly !== true && path !== ':memory:') createPrivately(path, fresh);
    this.#db = new Database(path, { readonly: options.readonly === true, fileMustExist: options.readonly === true });
    // A busy writer (the serving hub) briefly holds the lock; CLI commands wait.
    this.#db.pragma('busy_timeout = 5000');
    if (options.readonly !== true) {
      this.#db.pragma('journal_mode = WAL');
      this.#db.pragma('synchronous = FULL');
      this.#db.pragma('secure_delete = ON');
      migrate(this.#db);
    }
    this.#statements = prepare(this.#db);
  }

  close(): void {
    this.#db.close();
  }

  get schemaVersion(): number {
    return this.#db.pragma('user_version', { simple: true }) as number;
  }

  // ---- Devices ----

  loadDevices(): StoredDevice[] {
    return (this.#statements.all.all() as DeviceRow[]).map(fromRow);
  }

  getDevice(deviceId: string): StoredDevice | undefined {
    const row = this.#statements.one.get(deviceId.toLowerCase()) as DeviceRow | undefined;
    return row === undefined ? undefined : fromRow(row);
  }

  /** Devices added after `rowid` (by another process, e.g. the provision command). */
  devicesAfter(rowid: number): StoredDevice[] {
    return (this.#statements.after.all(rowid) as DeviceRow[]).map(fromRow);
  }

  /** Inserts a provisioned device; throws LOCAL_BAD_ARGUMENT if the id exists. */
  insertDevice(record: DeviceRecord, now: number): StoredDevice {
    try {
      this.#statements.insert.run(record.deviceId, record.active.id, record.active.key, now, now);
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
    return this.#db.transaction(() =>
      ops.map((op) => {
        if (op.kind === 'storePending') {
          return this.#statements.storePending.run(op.id, op.key, now, op.deviceId, op.id - 1).changes === 1;
        }
        return this.#statements.promote.run(now, op.deviceId, op.id).changes === 1;
      }),
    )();
  }

  /** Records when devices were last seen (one transaction; not safety-relevant). */
  touch(lastSeen: ReadonlyMap<string, number>): void {
    if (lastSeen.size === 0) return;
    this.#db.transaction(() => {
      for (const [deviceId, at] of lastSeen) this.#statements.touch.run(at, deviceId);
    })();
  }

  /** Asks the serving hub to rotate a device (picked up by its control poll). */
  requestRotation(deviceId: string, now: number): boolean {
    return this.#statements.requestRotation.run(now, deviceId.toLowerCase()).changes === 1;
  }

  rotationRequests(): string[] {
    return (this.#statements.requests.all() as { device_id: string }[]).map((row) => row.device_id);
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
    insert: db.prepare('INSERT INTO devices (device_id, active_id, active_key, created_at, active_since) VALUES (?, ?, ?, ?, ?)'),
    storePending: db.prepare(
      `UPDATE devices SET pending_id = ?, pending_key = ?, pending_since = ?, rotate_requested_at = NULL
       WHERE device_id = ? AND active_id = ? AND pending_id IS NULL`,
    ),
    promote: db.prepare(
      `UPDATE devices SET active_id = pending_id, active_key = pending_key, active_since = ?,
         pending_id = NULL, pending_key = NULL, pending_since = NULL, rotations = rotations + 1
       WHERE device_id = ? AND pending_id = ?`,
    ),
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

function fromRow(row: DeviceRow): StoredDevice {
  const pending = row.pending_id === null || row.pending_key === null ? undefined : { id: row.pending_id, key: new Uint8Array(row.pending_key) };
  return {
    deviceId: row.device_id,
    active: { id: row.active_id, key: new Uint8Array(row.active_key) },
    ...(pending === undefined ? {} : { pending }),
    createdAt: row.created_at,
    activeSince: row.active_since,
    pendingSince: row.pending_since ?? undefined,
    lastSeenAt: row.last_seen_at ?? undefined,
    rotations: row.rotations,
    rotateRequestedAt: row.rotate_requested_at ?? undefined,
    rowid: row.rowid,
  };
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
