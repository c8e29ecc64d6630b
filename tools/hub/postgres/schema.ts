/**
 * The hub schema on PostgreSQL: the same tables and checks as the SQLite
 * schema of tools/hub/migrations.ts at its current version (devices with
 * KEK-wrapped active and pending slots, rotation requests, kek_state), plus
 * (and the dh rekey mode's columns, migration 3) plus what many instances need: the per-device fence (epoch, lease owner, row
 * version) and the instances table. Applied in order under an advisory lock,
 * so instances starting together migrate once; each migration is one
 * transaction. Never edit a released migration; append one.
 */
import type { PoolClient } from 'pg';

export interface PgMigration {
  readonly version: number;
  readonly description: string;
  readonly sql: string;
}

/**
 * A row that asks something of the instance serving it: a durable rotation
 * request (§13.3), a mode change made elsewhere (`set-mode`), or a record
 * changed elsewhere (`enrol`). Each column is cleared once served, so the
 * partial index over it stays as small as the outstanding requests. The
 * control poll's WHERE repeats it word for word (so the planner can use the index).
 */
export const ATTENTION_PREDICATE = 'rotate_requested_at IS NOT NULL OR mode_changed_at IS NOT NULL OR record_changed_at IS NOT NULL';

export const PG_MIGRATIONS: readonly PgMigration[] = [
  {
    version: 1,
    description: 'devices with KEK-wrapped active and pending key slots, rotation requests, the active KEK (SQLite migrations 1-3)',
    sql: `
      CREATE TABLE devices (
        rowid         BIGSERIAL UNIQUE,
        device_id     TEXT    PRIMARY KEY CHECK (length(device_id) = 16),
        active_id     BIGINT  NOT NULL CHECK (active_id BETWEEN 1 AND 4294967295),
        active_kek    BIGINT  NOT NULL,
        active_key    BYTEA   NOT NULL CHECK (length(active_key) = 113),
        pending_id    BIGINT  CHECK (pending_id IS NULL OR pending_id > active_id),
        pending_kek   BIGINT,
        pending_key   BYTEA   CHECK (pending_key IS NULL OR length(pending_key) = 113),
        created_at    BIGINT  NOT NULL,
        active_since  BIGINT  NOT NULL,
        pending_since BIGINT,
        last_seen_at  BIGINT,
        rotations     BIGINT  NOT NULL DEFAULT 0,
        rotate_requested_at BIGINT,
        CHECK ((pending_id IS NULL) = (pending_key IS NULL) AND (pending_id IS NULL) = (pending_kek IS NULL))
      );
      CREATE TABLE kek_state (
        singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
        active_kek BIGINT  NOT NULL CHECK (active_kek BETWEEN 1 AND 4294967295)
      );
    `,
  },
  {
    version: 2,
    description: 'fencing: per-device lease epoch, its owner, and a row version bumped by every key-slot write; hub instances',
    sql: `
      ALTER TABLE devices
        ADD COLUMN epoch       BIGINT NOT NULL DEFAULT 0,
        ADD COLUMN lease_owner TEXT,
        ADD COLUMN row_version BIGINT NOT NULL DEFAULT 0;
      CREATE INDEX devices_rotate_requested ON devices (rotate_requested_at) WHERE rotate_requested_at IS NOT NULL;
      CREATE TABLE hub_instances (
        instance     TEXT   PRIMARY KEY,
        host         TEXT   NOT NULL,
        pid          BIGINT NOT NULL,
        started_at   BIGINT NOT NULL,
        heartbeat_at BIGINT NOT NULL
      );
    `,
  },
  {
    version: 3,
    description: 'the rekey mode per device (docs/PROTOCOL.md §11; SQLite migration 4): classic for every device provisioned before; a dh pending slot holds the wrapped ephemeral pair',
    sql: `
      ALTER TABLE devices
        ADD COLUMN mode            TEXT     NOT NULL DEFAULT 'classic' CHECK (mode IN ('classic', 'dh')),
        ADD COLUMN pending_dh      SMALLINT NOT NULL DEFAULT 0 CHECK (pending_dh IN (0, 1)),
        ADD COLUMN mode_changed_at BIGINT;
    `,
  },
  {
    version: 4,
    description: 'append-only audit trail (a trigger refuses UPDATE and DELETE) and revoked device ids (SQLite migration 5)',
    sql: `
      CREATE TABLE audit_log (
        seq       BIGSERIAL PRIMARY KEY,
        at        BIGINT NOT NULL,
        actor     TEXT   NOT NULL CHECK (length(actor) BETWEEN 1 AND 64),
        action    TEXT   NOT NULL CHECK (length(action) BETWEEN 1 AND 64),
        device_id TEXT   CHECK (device_id IS NULL OR length(device_id) = 16),
        outcome   TEXT   NOT NULL CHECK (length(outcome) BETWEEN 1 AND 64),
        detail    TEXT   CHECK (detail IS NULL OR length(detail) <= 1024)
      );
      CREATE INDEX audit_log_device ON audit_log (device_id, seq);
      CREATE FUNCTION lockstep_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'audit_log is append-only'; END
      $$;
      CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION lockstep_audit_append_only();
      CREATE TABLE revoked_devices (
        seq         BIGSERIAL PRIMARY KEY,
        device_id   TEXT   NOT NULL UNIQUE CHECK (length(device_id) = 16),
        revoked_at  BIGINT NOT NULL,
        actor       TEXT   NOT NULL,
        reason      TEXT   CHECK (reason IS NULL OR length(reason) <= 200),
        last_key_id BIGINT NOT NULL
      );
    `,
  },
  {
    version: 5,
    description: "recovery (issue 14; SQLite migration 6): the device's static public key, the hub static id it knows, enrolment, recovery requests and approvals, accepted recoveries per device (the count all instances share)",
    sql: `
      ALTER TABLE devices
        ADD COLUMN device_public_key  BYTEA  CHECK (device_public_key IS NULL OR length(device_public_key) = 32),
        ADD COLUMN hub_static_id      BIGINT CHECK (hub_static_id IS NULL OR hub_static_id BETWEEN 1 AND 4294967295),
        ADD COLUMN enrolment          TEXT   CHECK (enrolment IS NULL OR enrolment IN ('armed', 'ready')),
        ADD COLUMN enrolment_armed_at BIGINT,
        ADD COLUMN record_changed_at  BIGINT;
      CREATE TABLE recovery_requests (
        device_id      TEXT   PRIMARY KEY CHECK (length(device_id) = 16),
        first_at       BIGINT NOT NULL,
        last_at        BIGINT NOT NULL,
        attempts       BIGINT NOT NULL CHECK (attempts >= 1),
        new_key_id     BIGINT NOT NULL,
        claimed_active BIGINT NOT NULL,
        claimed_future BIGINT NOT NULL,
        approved_at    BIGINT,
        approved_by    TEXT   CHECK (approved_by IS NULL OR length(approved_by) <= 64)
      );
      CREATE TABLE recoveries (
        seq        BIGSERIAL PRIMARY KEY,
        device_id  TEXT   NOT NULL CHECK (length(device_id) = 16),
        at         BIGINT NOT NULL,
        new_key_id BIGINT NOT NULL
      );
      CREATE INDEX recoveries_device ON recoveries (device_id, at);
    `,
  },
  {
    version: 6,
    description: 'the crypto-shredding schedule (docs/HUB.md §13.6): when each KEK version stopped wrapping any row, and when it was destroyed',
    sql: `
      CREATE TABLE kek_versions (
        kek_id       BIGINT PRIMARY KEY CHECK (kek_id BETWEEN 1 AND 4294967295),
        retired_at   BIGINT NOT NULL,
        destroyed_at BIGINT
      );
    `,
  },
  {
    version: 7,
    description:
      "the serving instance's control poll reads only the rows that ask something of it (a rotation request, a mode change, a changed record) through a partial index, instead of every row it holds each second",
    sql: `
      CREATE INDEX devices_attention ON devices (lease_owner)
        WHERE ${ATTENTION_PREDICATE};
    `,
  },
];

export const PG_SCHEMA_VERSION = PG_MIGRATIONS.length;

/** Any constant: the advisory lock that serializes migrations of one database. */
const MIGRATION_LOCK = 0x4c6f_636b;

/** Brings the database to PG_SCHEMA_VERSION; refuses a database from a newer hub. Returns the version. */
export async function migratePostgres(client: PoolClient, keyringNewestId: () => number): Promise<number> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await client.query('CREATE TABLE IF NOT EXISTS lockstep_schema (singleton INTEGER PRIMARY KEY CHECK (singleton = 1), version INTEGER NOT NULL)');
    await client.query('INSERT INTO lockstep_schema (singleton, version) VALUES (1, 0) ON CONFLICT DO NOTHING');
    const current = Number((await client.query<{ version: number }>('SELECT version FROM lockstep_schema WHERE singleton = 1')).rows[0]?.version ?? 0);
    if (current > PG_SCHEMA_VERSION) throw new Error(`database schema version ${current} is newer than this hub (${PG_SCHEMA_VERSION})`);
    for (const migration of PG_MIGRATIONS) {
      if (migration.version <= current) continue;
      await client.query(migration.sql);
      if (migration.version === 1) await client.query('INSERT INTO kek_state (singleton, active_kek) VALUES (1, $1)', [keyringNewestId()]);
      await client.query('UPDATE lockstep_schema SET version = $1 WHERE singleton = 1', [migration.version]);
    }
    await client.query('COMMIT');
    return PG_SCHEMA_VERSION;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}
