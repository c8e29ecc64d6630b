/**
 * The hub database schema, as an ordered list of migrations. The database's
 * `PRAGMA user_version` is the number of migrations applied; each runs in
 * its own transaction, so a crash mid-migration leaves the previous version.
 * Never edit a released migration; append a new one.
 */
import type Database from 'better-sqlite3';

export interface Migration {
  readonly version: number;
  readonly description: string;
  readonly up: (db: Database.Database) => void;
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
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Brings the database to SCHEMA_VERSION; refuses a database from a newer hub. */
export function migrate(db: Database.Database, target = SCHEMA_VERSION): number {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > SCHEMA_VERSION) {
    throw new Error(`database schema version ${current} is newer than this hub (${SCHEMA_VERSION})`);
  }
  for (const migration of MIGRATIONS) {
    if (migration.version <= current || migration.version > target) continue;
    db.transaction(() => {
      migration.up(db);
      db.pragma(`user_version = ${migration.version}`);
    })();
  }
  return db.pragma('user_version', { simple: true }) as number;
}
