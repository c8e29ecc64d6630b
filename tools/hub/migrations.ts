/**
 * The hub database schema, as an ordered list of migrations. The database's
 * `PRAGMA user_version` is the number of migrations applied; each runs in
 * its own transaction, so a crash mid-migration leaves the previous version.
 * Never edit a released migration; append a new one.
 */
import type Database from 'better-sqlite3';
import type { Keyring } from './kek';

export interface MigrationContext {
  /** The keyring to wrap keys under (migration 3); resolved only when a migration needs it. */
  readonly keyring: () => Keyring;
}

export interface Migration {
  readonly version: number;
  readonly description: string;
  readonly up: (db: Database.Database, context: MigrationContext) => void;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'devices with active and pending key slots',
    up: (db) => {
      db.exec(`
        CREATE TABLE devices (
          device_id     TEXT    PRIMARY KEY CHECK (length(device_id) = 16),
          active_id     INTEGER NOT NULL CHECK (active_id BETWEEN 1 AND 4294967295),
          active_key    BLOB    NOT NULL CHECK (length(active_key) = 64),
          pending_id    INTEGER CHECK (pending_id IS NULL OR pending_id > active_id),
          pending_key   BLOB    CHECK (pending_key IS NULL OR length(pending_key) = 64),
          created_at    INTEGER NOT NULL,
          active_since  INTEGER NOT NULL,
          pending_since INTEGER,
          last_seen_at  INTEGER,
          rotations     INTEGER NOT NULL DEFAULT 0,
          CHECK ((pending_id IS NULL) = (pending_key IS NULL))
        );
      `);
    },
  },
  {
    version: 2,
    description: 'rotation requests from the CLI, and the serving-hub lock',
    up: (db) => {
      db.exec(`
        ALTER TABLE devices ADD COLUMN rotate_requested_at INTEGER;
        CREATE TABLE hub_lock (
          singleton    INTEGER PRIMARY KEY CHECK (singleton = 1),
          pid          INTEGER NOT NULL,
          host         TEXT    NOT NULL,
          instance     TEXT    NOT NULL,
          started_at   INTEGER NOT NULL,
          heartbeat_at INTEGER NOT NULL
        );
      `);
    },
  },
  {
    version: 3,
    description: 'keys wrapped under a key-encryption key (tools/hub/kek.ts); the plaintext rows are rewritten in place',
    up: (db, context) => {
      const keyring = context.keyring();
      const kekId = keyring.newestId;
      db.exec(`
        CREATE TABLE kek_state (
          singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
          active_kek INTEGER NOT NULL CHECK (active_kek BETWEEN 1 AND 4294967295)
        );
        CREATE TABLE devices_wrapped (
          device_id     TEXT    PRIMARY KEY CHECK (length(device_id) = 16),
          active_id     INTEGER NOT NULL CHECK (active_id BETWEEN 1 AND 4294967295),
          active_kek    INTEGER NOT NULL,
          active_key    BLOB    NOT NULL CHECK (length(active_key) = 113),
          pending_id    INTEGER CHECK (pending_id IS NULL OR pending_id > active_id),
          pending_kek   INTEGER,
          pending_key   BLOB    CHECK (pending_key IS NULL OR length(pending_key) = 113),
          created_at    INTEGER NOT NULL,
          active_since  INTEGER NOT NULL,
          pending_since INTEGER,
          last_seen_at  INTEGER,
          rotations     INTEGER NOT NULL DEFAULT 0,
          rotate_requested_at INTEGER,
          CHECK ((pending_id IS NULL) = (pending_key IS NULL) AND (pending_id IS NULL) = (pending_kek IS NULL))
        );
      `);
      db.prepare('INSERT INTO kek_state (singleton, active_kek) VALUES (1, ?)').run(kekId);
      const insert = db.prepare(
        `INSERT INTO devices_wrapped (rowid, device_id, active_id, active_kek, active_key, pending_id, pending_kek, pending_key,
           created_at, active_since, pending_since, last_seen_at, rotations, rotate_requested_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      );
      const rows = db.prepare('SELECT rowid, * FROM devices ORDER BY rowid').all() as PlainRow[];
      for (const row of rows) {
        const active = keyring.wrap(kekId, row.device_id, row.active_id, row.active_key);
        const pending = row.pending_id === null || row.pending_key === null ? null : keyring.wrap(kekId, row.device_id, row.pending_id, row.pending_key);
        insert.run(row.rowid, row.device_id, row.active_id, kekId, active, row.pending_id, pending === null ? null : kekId, pending,
          row.created_at, row.active_since, row.pending_since, row.last_seen_at, row.rotations, row.rotate_requested_at);
        row.active_key.fill(0);
        row.pending_key?.fill(0);
      }
      // secure_delete is on: the dropped table's pages are zeroed as they are freed.
      db.exec('DROP TABLE devices; ALTER TABLE devices_wrapped RENAME TO devices;');
    },
  },
  {
    version: 4,
    description: 'the rekey mode per device (docs/PROTOCOL.md §11): classic for every device provisioned before; a dh pending slot holds the wrapped ephemeral pair',
    up: (db) => {
      db.exec(`
        ALTER TABLE devices ADD COLUMN mode TEXT NOT NULL DEFAULT 'classic' CHECK (mode IN ('classic', 'dh'));
        ALTER TABLE devices ADD COLUMN pending_dh INTEGER NOT NULL DEFAULT 0 CHECK (pending_dh IN (0, 1));
        ALTER TABLE devices ADD COLUMN mode_changed_at INTEGER;
      `);
    },
  },
  // ---- issue 17: audit trail and revocations (tools/hub/audit.ts) ----
  {
    version: 5,
    description: 'append-only audit trail (triggers refuse UPDATE and DELETE) and revoked device ids',
    up: (db) => {
      db.exec(`
        CREATE TABLE audit_log (
          seq       INTEGER PRIMARY KEY AUTOINCREMENT,
          at        INTEGER NOT NULL,
          actor     TEXT    NOT NULL CHECK (length(actor) BETWEEN 1 AND 64),
          action    TEXT    NOT NULL CHECK (length(action) BETWEEN 1 AND 64),
          device_id TEXT    CHECK (device_id IS NULL OR length(device_id) = 16),
          outcome   TEXT    NOT NULL CHECK (length(outcome) BETWEEN 1 AND 64),
          detail    TEXT    CHECK (detail IS NULL OR length(detail) <= 1024)
        );
        CREATE INDEX audit_log_device ON audit_log (device_id, seq);
        CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
        CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
        CREATE TABLE revoked_devices (
          seq         INTEGER PRIMARY KEY AUTOINCREMENT,
          device_id   TEXT    NOT NULL UNIQUE CHECK (length(device_id) = 16),
          revoked_at  INTEGER NOT NULL,
          actor       TEXT    NOT NULL,
          reason      TEXT    CHECK (reason IS NULL OR length(reason) <= 200),
          last_key_id INTEGER NOT NULL
        );
      `);
    },
  },
  // ---- issue 14: recovery after a rollback (docs/PROTOCOL.md §12, tools/hub/recovery.ts) ----
  {
    version: 6,
    description: "recovery: the device's static public key and the hub static id it knows, enrolment state, recovery requests and approvals, accepted recoveries per device",
    up: (db) => {
      db.exec(`
        ALTER TABLE devices ADD COLUMN device_public_key BLOB CHECK (device_public_key IS NULL OR length(device_public_key) = 32);
        ALTER TABLE devices ADD COLUMN hub_static_id INTEGER CHECK (hub_static_id IS NULL OR hub_static_id BETWEEN 1 AND 4294967295);
        ALTER TABLE devices ADD COLUMN enrolment TEXT CHECK (enrolment IS NULL OR enrolment IN ('armed', 'ready'));
        ALTER TABLE devices ADD COLUMN enrolment_armed_at INTEGER;
        ALTER TABLE devices ADD COLUMN record_changed_at INTEGER;
        CREATE TABLE recovery_requests (
          device_id      TEXT    PRIMARY KEY CHECK (length(device_id) = 16),
          first_at       INTEGER NOT NULL,
          last_at        INTEGER NOT NULL,
          attempts       INTEGER NOT NULL CHECK (attempts >= 1),
          new_key_id     INTEGER NOT NULL,
          claimed_active INTEGER NOT NULL,
          claimed_future INTEGER NOT NULL,
          approved_at    INTEGER,
          approved_by    TEXT    CHECK (approved_by IS NULL OR length(approved_by) <= 64)
        );
        CREATE TABLE recoveries (
          seq        INTEGER PRIMARY KEY AUTOINCREMENT,
          device_id  TEXT    NOT NULL CHECK (length(device_id) = 16),
          at         INTEGER NOT NULL,
          new_key_id INTEGER NOT NULL
        );
        CREATE INDEX recoveries_device ON recoveries (device_id, at);
      `);
    },
  },
];

interface PlainRow {
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

export const SCHEMA_VERSION = MIGRATIONS.length;

const NO_KEYRING: MigrationContext = {
  keyring: () => {
    throw new Error('this migration wraps keys and needs a keyring');
  },
};

/** Brings the database to SCHEMA_VERSION; refuses a database from a newer hub. */
export function migrate(db: Database.Database, target = SCHEMA_VERSION, context: MigrationContext = NO_KEYRING): number {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > SCHEMA_VERSION) {
    throw new Error(`database schema version ${current} is newer than this hub (${SCHEMA_VERSION})`);
  }
  for (const migration of MIGRATIONS) {
    if (migration.version <= current || migration.version > target) continue;
    db.transaction(() => {
      migration.up(db, context);
      db.pragma(`user_version = ${migration.version}`);
    })();
  }
  return db.pragma('user_version', { simple: true }) as number;
}
