/**
 * The reference hub: HubCore (modules/hub/hub.ts) behind TCP and TLS
 * listeners, with durable state in SQLite, a rotation schedule, and a
 * library API with typed events. The wiring it shares with a PostgreSQL
 * instance (tools/hub/postgres/hub.ts) is tools/hub/hub-base.ts; this class
 * adds SQLite's store, lock, group commit and control poll. Each part lives
 * in a file of its own.
 *
 * One frame, from socket to storage and back:
 *   tools/hub/listeners.ts   accepts the socket
 *   tools/hub/connections.ts socket 'data' → HubCore.receive (the core parses,
 *                            or keeps the bytes while the device's write is
 *                            outstanding; the socket is paused while
 *                            HubCore.wantsInput is false)
 *   tools/hub/pipeline.ts    the returned actions, in the core's order:
 *                            transmit/close → connections, event → events,
 *                            persist → commits
 *   tools/hub/commits.ts     group commit (group-commit.ts, store.ts), then
 *                            HubCore.persisted → more actions → pipeline →
 *                            connections → socket write; paused links resume
 *   tools/hub/events.ts      core events → library events, logs, counters
 * Around it: tools/hub/rotation.ts (rotate from the API, the schedule in
 * scheduler.ts, CLI requests), tools/hub/control.ts (the database poll:
 * lock heartbeat, devices provisioned elsewhere, last-seen flush),
 * tools/hub/presence.ts (activeSince, lastSeen, who is online).
 *
 * The host keeps no copy of the core's state: `send` returns the message id
 * the core assigned, `rotate` the core's outcome; the core holds input,
 * outbox and queued rotation while a write is outstanding.
 *
 * Crash safety follows from the core's rules H1/H2 plus "commit before
 * persisted": whatever instant the process dies, the database holds the
 * active key and at most one pending key, and every device still seals with
 * a key the restarted hub accepts (docs/PROTOCOL.md §8.2, §9).
 */
import { randomUUID } from 'node:crypto';
import type { HubPersistOp } from '../../modules/hub/actions';
import { describeError, LockstepError } from '../../modules/errors';
import { monotonicNow } from '../../hosts/node/clock';
import type { RekeyMode } from '../../modules/platform/keys';
import { Commits } from './commits';
import { ControlPoll } from './control';
import { HubBase } from './hub-base';
import type { Logger } from './log';
import { silentLogger } from './log';
import { checkHubOptions, type HubOptions } from './options';
import { coreRecord, newDeviceRecord, type DeviceRecord } from './records';
import { HubStore, type StoredDevice } from './store';
import { AuditLog, type AuditEntryInput, type Revocation } from './audit';
import type { OperatorApi } from './http/options';
import type { HubStats, RotateResult } from './types';
import type { RecoveryRecord, RecoveryRequestRow } from './recovery';
import { checkStaticKeys, resolveStaticKeys, type HubStaticKeys } from './static-keys';

export type { DeviceView, HubEvents, HubStats, RotateResult } from './types';

export class LockstepHub extends HubBase<HubStore> {
  readonly #ownsStore: boolean;
  readonly #commits: Commits;
  readonly #control: ControlPoll;
  readonly #exclusive: boolean;
  readonly #instance: string;
  // issue 17: the audit trail, revocations seen in the database, the operator API (tools/hub/http/).
  readonly #audit: AuditLog;
  #api: OperatorApi | undefined;

  /** Opens the database, loads every device and starts listening. */
  static async start(options: HubOptions): Promise<LockstepHub> {
    checkHubOptions(options); // issue 12 (finding 10): …Ms options are non-negative integers
    const hub = LockstepHub.#open(options);
    try {
      await hub.listen(options);
      if (options.http !== undefined) hub.#api = await (await import('./http/server')).startOperatorApi(hub, options.http, options.logger ?? silentLogger);
    } catch (error) {
      await hub.close();
      throw error;
    }
    return hub;
  }

  /** The store (and the serving lock), the static keys and the devices, before the shared wiring is built on them. */
  static #open(options: HubOptions): LockstepHub {
    const log = options.logger ?? silentLogger;
    const ownsStore = typeof options.database === 'string';
    const store = typeof options.database === 'string' ? new HubStore(options.database) : options.database;
    const exclusive = options.exclusive ?? true;
    const instance = randomUUID();
    try {
      if (exclusive) {
        const holder = store.acquireLock(instance, Date.now(), 10_000);
        if (holder !== undefined) throw new LockstepError('LOCAL_DATABASE_LOCKED', `another hub (pid ${holder.pid} on ${holder.host}) serves ${store.path}`);
      }
      // Issue 14: the store applied the revocation file when it opened (rows a restore brought back are gone again).
      for (const deviceId of store.reRevoked) log.warn('revocationReapplied', { deviceId, file: store.revocationFile });
      const staticKeys = options.staticKeys ?? loadStaticKeys(store, options.staticKeyFile, log);
      return new LockstepHub(options, store, { ownsStore, exclusive, instance, staticKeys });
    } catch (error) {
      if (ownsStore) store.close();
      throw error;
    }
  }

  private constructor(options: HubOptions, store: HubStore, opened: { ownsStore: boolean; exclusive: boolean; instance: string; staticKeys: HubStaticKeys | undefined }) {
    const stored = store.loadDevices();
    super(options, store, stored, opened.staticKeys);
    this.#ownsStore = opened.ownsStore;
    this.#exclusive = opened.exclusive;
    this.#instance = opened.instance;
    const connections = () => this.connections;
    this.#commits = new Commits(this.store, this.core, this.pipeline, this.events, connections, this.log, monotonicNow);
    const heartbeat = this.#exclusive ? () => this.store.heartbeat(this.#instance, Date.now()) : undefined;
    this.#control = new ControlPoll(this.store, heartbeat, (device) => this.register(device), this.rotations, this.presence, this.log, (deviceId) => {
      this.core.setMode(deviceId, 'dh');
      this.log.info('modeChanged', { deviceId, mode: 'dh' });
    }, (deviceId) => this.#reloadRecord(deviceId));
    for (const device of stored) {
      this.track(device);
      this.#control.seen(device.rowid);
    }
    this.#audit = this.#startAudit();
    this.log.info('hubLoaded', { database: this.store.path, devices: stored.length, pending: stored.filter((d) => d.pending).length });
    this.startTimers(
      options,
      () => {
        this.#control.poll();
        this.#pollRevocations();
      },
      () => this.#control.flushLastSeen(),
    );
  }

  protected get auditLog(): AuditLog {
    return this.#audit;
  }

  protected persist(op: HubPersistOp): void {
    this.#commits.enqueue(op);
  }

  // ---- Library API ----

  /**
   * Provisions a device: a fresh id and initial key (or the given record,
   * e.g. from tools/provision), committed to the database, then served.
   * Returns the record the device must be given (keep it secret).
   */
  provision(record: DeviceRecord = newDeviceRecord()): DeviceRecord {
    const stored = this.store.insertDevice(record, Date.now());
    this.register(stored);
    return record;
  }

  /**
   * Rotates a device's key: 'started' (a fresh pending key is being
   * committed, then offered to the device), or 'queued' when a rotation of
   * the device is already in flight (an unconfirmed pending key is never
   * replaced): the core starts the new one once that one is confirmed.
   * Throws LOCAL_KEY_IDS_EXHAUSTED (re-provision) or UNKNOWN_DEVICE.
   */
  rotate(deviceId: string): RotateResult {
    const outcome = this.rotations.rotate(deviceId);
    if (typeof outcome !== 'string') throw outcome;
    return outcome;
  }

  /**
   * §11.6: moves a device to the dh rekey mode (durable first, then the
   * core); it applies from the next rotation. Moving back to classic is
   * refused (LOCAL_BAD_ARGUMENT), as is an unknown device (UNKNOWN_DEVICE).
   */
  setMode(deviceId: string, mode: RekeyMode): void {
    if (mode !== 'dh') throw new LockstepError('LOCAL_BAD_ARGUMENT', 'the rekey mode only moves from classic to dh');
    const outcome = this.store.upgradeToDh(deviceId, Date.now());
    if (outcome === 'missing') throw new LockstepError('UNKNOWN_DEVICE', deviceId);
    this.store.clearModeChange(deviceId.toLowerCase());
    this.core.setMode(deviceId.toLowerCase(), 'dh');
  }

  stats(): HubStats {
    return this.sharedStats(this.#commits);
  }

  /** Stops listening, commits what is waiting, closes every connection and the database. */
  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const closing = this.stopListening();
    await this.#api?.close();
    this.#commits.close();
    this.connections.stop('hub stopping');
    await closing;
    this.#control.flushLastSeen();
    this.#audit.flush();
    if (this.#exclusive) this.store.releaseLock(this.#instance);
    if (this.#ownsStore) this.store.close();
    this.log.info('hubStopped', {});
  }

  // ---- issue 17: revocation, audit, the operator API ----

  /**
   * Revokes a device (docs/HUB.md §12): its row and both keys are deleted from
   * the database (and the WAL checkpointed, so no older copy stays), the
   * revocation and an audit entry recorded, its connections closed and its
   * keys zeroed in memory; later connections naming it are refused
   * (UNKNOWN_DEVICE) and its id cannot be provisioned again. Returns the
   * revocation, or undefined when there is no such device.
   */
  async revoke(deviceId: string, actor: string, reason?: string): Promise<Revocation | undefined> {
    const revocation = this.store.revokeDevice(deviceId, actor, reason, Date.now());
    if (revocation === undefined) return undefined;
    this.removeRevoked(revocation);
    if (this.store.path !== ':memory:') await this.store.checkpointNow();
    return revocation;
  }

  /** Records an administrative action in the audit trail, durably (throws if it cannot be written). */
  audit(entries: AuditEntryInput | readonly AuditEntryInput[]): void {
    this.#audit.now(Array.isArray(entries) ? entries : [entries as AuditEntryInput]);
  }

  /** The operator API's address, when it is on (HubOptions.http). */
  get apiAddress(): { host: string; port: number; tls: boolean } | undefined {
    return this.#api?.address;
  }

  #startAudit(): AuditLog {
    const log = new AuditLog(
      (entries, durable) => this.store.appendAudit(entries, Date.now(), durable),
      (error) => this.log.error('auditFailed', { message: describeError(error) }),
    );
    const latest = this.store.revocationsAfter(0);
    this.revocationSeq = latest.length === 0 ? 0 : (latest[latest.length - 1] as Revocation).seq;
    // rotation.start / rotation.confirm are written by the store inside the commit itself (audit.ts recordKeyEvents).
    this.on('storageError', ({ deviceId }) => this.auditKeyEvents && log.later({ actor: 'hub', action: 'commit', deviceId, outcome: 'failed' }));
    return log;
  }

  /** Revocations another process (the CLI) wrote: the device leaves the core within a poll. */
  #pollRevocations(): void {
    for (const revocation of this.store.revocationsAfter(this.revocationSeq)) this.removeRevoked(revocation);
  }

  // ---- issue 14: recovery (docs/HUB.md §14) ----

  /** Requests awaiting (or holding) approval. */
  recoveryRequests(): RecoveryRequestRow[] {
    return this.store.recoveryRequests();
  }

  recentRecoveries(limit = 50): RecoveryRecord[] {
    return this.store.recentRecoveries(limit);
  }

  /** An operator approves the device's recorded recovery request (audited as `actor`). */
  approveRecovery(deviceId: string, actor: string): 'approved' | 'already' | 'none' | 'missing' {
    return this.store.approveRecovery(deviceId, actor, Date.now());
  }

  /** Arms enrolment (HE1) for a device without a static key; the core gets the record at once. */
  armEnrolment(deviceId: string, actor: string): 'armed' | 'enrolled' | 'missing' {
    const outcome = this.store.armEnrolment(deviceId, Date.now());
    this.audit({ actor, action: 'enrol.arm', deviceId: deviceId.toLowerCase(), outcome });
    if (outcome === 'armed') this.#reloadRecord(deviceId.toLowerCase());
    return outcome;
  }

  /** A record another process changed (enrolment armed): the core gets it unless a write is outstanding (then at the next poll). */
  #reloadRecord(deviceId: string): boolean {
    const stored = this.store.getDevice(deviceId);
    if (stored === undefined || !this.core.hasDevice(deviceId)) return true;
    try {
      this.core.reloadDevice(coreRecord(stored));
    } catch (error) {
      this.log.debug('reloadDeferred', { deviceId, message: describeError(error) });
      return false;
    }
    this.store.clearRecordChange(deviceId);
    this.log.info('recordReloaded', { deviceId, enrolment: stored.enrolment ?? null });
    return true;
  }
}

/**
 * The database's static key file: created when missing only while no device record names a
 * hub static id (else those devices could never recover: refuse to start rather than guess).
 */
function loadStaticKeys(store: HubStore, file: string | undefined, log: Logger): HubStaticKeys | undefined {
  const referenced = store.staticKeyReferences();
  if (store.path === ':memory:' && file === undefined) return undefined;
  return checkStaticKeys(resolveStaticKeys(store.path, file === undefined ? {} : { staticKeyFile: file }, referenced.size === 0), referenced, log);
}
