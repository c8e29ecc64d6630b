/**
 * The hub's storage, one interface over both backends (docs/HUB.md §13):
 * SQLite (tools/hub/store.ts: one hub process, the embedded default) and
 * PostgreSQL (tools/hub/postgres/store.ts: a tier of instances, fenced).
 * What the operator tools and the library need from a database, all
 * asynchronous (SQLite answers at once). `openStorage` and `startHub` pick
 * the backend from the database string: postgres://… or a file path.
 *
 * Key-slot writes (`commit`) follow the same rules on both: conditional on
 * the slots (storePending only with no pending key and the preceding active
 * id; promote only the pending id), and on PostgreSQL also on the fence the
 * instance holds (SQLite has one hub, which holds every lease: its
 * exclusive lock, tools/hub/store.ts).
 */
import type { HubPersistOp } from '../../modules/hub/actions';
import type { AuditEntry, AuditEntryInput, AuditQuery, Revocation } from './audit';
import type { KeyringChoice } from './kek';
import type { HubOptions } from './options';
import type { DeviceRecord } from './records';
import { LockstepHub } from './server';
import { HubStore, type DeviceSummary, type StoredDevice } from './store';
import { PgLockstepHub, type PgHubOptions } from './postgres/hub';
import { isPostgresUrl, PgHubStore, type Fence, type PgStoreOptions } from './postgres/store';

export type Backend = 'sqlite' | 'postgres';

export interface HubStorage {
  readonly backend: Backend;
  /** The file, or the URL without its password. */
  readonly path: string;
  listDevices(): Promise<DeviceSummary[]>;
  getDevice(deviceId: string): Promise<StoredDevice | undefined>;
  insertDevices(records: readonly DeviceRecord[], now: number): Promise<void>;
  /** Key-slot writes in one transaction; per op whether it applied. `fences`: PostgreSQL only (the lease holder's). */
  commit(ops: readonly HubPersistOp[], now: number, fences?: ReadonlyMap<string, Fence>): Promise<boolean[]>;
  /** The durable rotation request (cleared by the device's next pending key). */
  requestRotation(deviceId: string, now: number): Promise<boolean>;
  rotationRequests(): Promise<string[]>;
  touch(lastSeen: ReadonlyMap<string, number>): Promise<void>;
  /** The KEK versions wrapping some row (a version not listed may be destroyed). */
  kekVersionsInUse(): Promise<number[]>;
  /** Administrative actions, durable when this resolves (docs/HUB.md §12.6). */
  appendAudit(entries: readonly AuditEntryInput[], now: number): Promise<void>;
  readAudit(query: AuditQuery): Promise<AuditEntry[]>;
  /** Deletes the device with its keys and records the revocation (§12.5); undefined if there is no such device. */
  revokeDevice(deviceId: string, actor: string, reason: string | undefined, now: number): Promise<Revocation | undefined>;
  revocation(deviceId: string): Promise<Revocation | undefined>;
  revocationsAfter(seq: number): Promise<Revocation[]>;
  /**
   * After a revocation: the erasure each backend can do on its own. SQLite
   * checkpoints and truncates the WAL (§4.2; false if a reader blocked it);
   * PostgreSQL cannot reach dead tuples, WAL or archives, so the wrapped
   * keys are gone only once their KEK version is destroyed (§13.6): true.
   */
  eraseRevoked(): Promise<boolean>;
  close(): Promise<void>;
}

class SqliteStorage implements HubStorage {
  readonly backend = 'sqlite' as const;
  constructor(readonly store: HubStore) {}
  get path(): string {
    return this.store.path;
  }
  async listDevices(): Promise<DeviceSummary[]> {
    return this.store.listDevices();
  }
  async getDevice(deviceId: string): Promise<StoredDevice | undefined> {
    return this.store.getDevice(deviceId);
  }
  async insertDevices(records: readonly DeviceRecord[], now: number): Promise<void> {
    this.store.insertDevices(records, now);
  }
  async commit(ops: readonly HubPersistOp[], now: number): Promise<boolean[]> {
    return this.store.commit(ops, now);
  }
  async requestRotation(deviceId: string, now: number): Promise<boolean> {
    return this.store.requestRotation(deviceId, now);
  }
  async rotationRequests(): Promise<string[]> {
    return this.store.rotationRequests();
  }
  async touch(lastSeen: ReadonlyMap<string, number>): Promise<void> {
    this.store.touch(lastSeen);
  }
  async kekVersionsInUse(): Promise<number[]> {
    const ids = new Set<number>();
    for (const device of this.store.listDevices()) {
      const forms = this.store.wrappedForms(device.deviceId);
      if (forms === undefined) continue;
      ids.add(forms.active.kek);
      if (forms.pending !== undefined) ids.add(forms.pending.kek);
    }
    return [...ids].sort((a, b) => a - b);
  }
  async appendAudit(entries: readonly AuditEntryInput[], now: number): Promise<void> {
    this.store.appendAudit(entries, now);
  }
  async readAudit(query: AuditQuery): Promise<AuditEntry[]> {
    return this.store.readAudit(query);
  }
  async revokeDevice(deviceId: string, actor: string, reason: string | undefined, now: number): Promise<Revocation | undefined> {
    return this.store.revokeDevice(deviceId, actor, reason, now);
  }
  async revocation(deviceId: string): Promise<Revocation | undefined> {
    return this.store.revocation(deviceId);
  }
  async revocationsAfter(seq: number): Promise<Revocation[]> {
    return this.store.revocationsAfter(seq);
  }
  async eraseRevoked(): Promise<boolean> {
    return this.store.path === ':memory:' ? true : this.store.checkpointNow();
  }
  async close(): Promise<void> {
    this.store.close();
  }
}

class PostgresStorage implements HubStorage {
  readonly backend = 'postgres' as const;
  constructor(readonly store: PgHubStore) {}
  get path(): string {
    return this.store.path;
  }
  listDevices(): Promise<DeviceSummary[]> {
    return this.store.listDevices();
  }
  getDevice(deviceId: string): Promise<StoredDevice | undefined> {
    return this.store.getDevice(deviceId);
  }
  insertDevices(records: readonly DeviceRecord[], now: number): Promise<void> {
    return this.store.insertDevices(records, now);
  }
  commit(ops: readonly HubPersistOp[], now: number, fences: ReadonlyMap<string, Fence> = new Map()): Promise<boolean[]> {
    return this.store.commit(ops, now, fences);
  }
  requestRotation(deviceId: string, now: number): Promise<boolean> {
    return this.store.requestRotation(deviceId, now);
  }
  rotationRequests(): Promise<string[]> {
    return this.store.rotationRequests();
  }
  touch(lastSeen: ReadonlyMap<string, number>): Promise<void> {
    return this.store.touch(lastSeen);
  }
  kekVersionsInUse(): Promise<number[]> {
    return this.store.kekVersionsInUse();
  }
  appendAudit(entries: readonly AuditEntryInput[], now: number): Promise<void> {
    return this.store.appendAudit(entries, now);
  }
  readAudit(query: AuditQuery): Promise<AuditEntry[]> {
    return this.store.readAudit(query);
  }
  revokeDevice(deviceId: string, actor: string, reason: string | undefined, now: number): Promise<Revocation | undefined> {
    return this.store.revokeDevice(deviceId, actor, reason, now);
  }
  revocation(deviceId: string): Promise<Revocation | undefined> {
    return this.store.revocation(deviceId);
  }
  revocationsAfter(seq: number): Promise<Revocation[]> {
    return this.store.revocationsAfter(seq);
  }
  async eraseRevoked(): Promise<boolean> {
    return true;
  }
  close(): Promise<void> {
    return this.store.close();
  }
}

/** Opens the database named by `database`: postgres://… (PostgreSQL) or a SQLite file. */
export async function openStorage(database: string, options: KeyringChoice & PgStoreOptions = {}): Promise<HubStorage> {
  if (isPostgresUrl(database)) return new PostgresStorage(await PgHubStore.open(database, options));
  const { revocationFile, ...rest } = options;
  return new SqliteStorage(new HubStore(database, { ...rest, ...(typeof revocationFile === 'string' ? { revocationFile } : {}) }));
}

/** Either kind of hub; `provision` and `rotate` may return promises (PostgreSQL): await them. */
export type AnyHub = LockstepHub | PgLockstepHub;

/**
 * Starts a hub on the database the options name: a SQLite file (one hub,
 * LockstepHub) or postgres://… (one instance of a tier, PgLockstepHub).
 */
export async function startHub(options: (Omit<HubOptions, 'database'> & { database: string | HubStore }) | PgHubOptions): Promise<AnyHub> {
  const { database } = options;
  if (typeof database === 'string' && isPostgresUrl(database)) {
    const { exclusive: _exclusive, ...rest } = options as HubOptions;
    void _exclusive;
    return PgLockstepHub.start({ ...(rest as Omit<PgHubOptions, 'database'>), database });
  }
  if (database instanceof PgHubStore) return PgLockstepHub.start(options as PgHubOptions);
  return LockstepHub.start(options as HubOptions);
}
