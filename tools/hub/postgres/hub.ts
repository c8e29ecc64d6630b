/**
 * One hub instance of a tier sharing a PostgreSQL database (docs/HUB.md §13):
 * the wiring the SQLite hub has (tools/hub/hub-base.ts: listeners,
 * connections, action pipeline, events, presence, schedule, recovery), with
 * these differences:
 * - a device's connection reaches the core only once this instance holds
 *   the device's lease, and the core adopts the row as the lease reloaded
 *   it (tools/hub/postgres/lease-gate.ts); an enrolled device's HELLO that
 *   fails under the database's keys reaches the core for recovery, and the
 *   lease is taken once the request authenticates (§13.11);
 * - every write is fenced (tools/hub/postgres/commits.ts, store.ts): when
 *   another instance took the lease the write does not apply, and this
 *   instance closes the device's connection and stops acting for it;
 * - the control loop (LISTEN/NOTIFY as a wake-up, and a poll as the record)
 *   notices leases taken elsewhere, devices provisioned elsewhere and
 *   rotation requests (durable in the device's row) for the devices it
 *   serves, records changed elsewhere (enrolment armed), revocations
 *   (durable in revoked_devices: every instance drops the device, closes its
 *   connections and appends it to its host's revocation file) and destroyed
 *   KEK versions (dropped from memory, docs/HUB.md §13.6).
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { bytesEqual } from '../../../modules/bytes';
import type { HubPersistOp } from '../../../modules/hub/actions';
import { describeError, LockstepError } from '../../../modules/errors';
import type { RekeyMode } from '../../../modules/platform/keys';
import { HubBase, type RecoveryRequestAction, type SharedHubOptions } from '../hub-base';
import type { Link } from '../link';
import { silentLogger, type Logger } from '../log';
import { checkMilliseconds } from '../duration';
import { checkHubOptions } from '../options';
import { monotonicNow } from '../../../hosts/node/clock';
import { coreRecord, newDeviceRecord, type DeviceRecord } from '../records';
import type { RecoveryDecision, RecoveryPolicy, RecoveryRecord, RecoveryRequestInput, RecoveryRequestRow } from '../recovery';
import { checkStaticKeys, resolveStaticKeys, type HubStaticKeys } from '../static-keys';
import type { StoredDevice } from '../store';
import type { HubStats, RotateResult } from '../types';
import { AuditLog, type AuditEntryInput, type Revocation } from '../audit';
import type { OperatorApi } from '../http/options';
import type { TierFigures } from '../http/operator-hub';
import { NOTIFY_REVOKE } from './audit';
import { PgCommits } from './commits';
import { LeaseGate, wipeStored } from './lease-gate';
import { NOTIFY_LEASE, NOTIFY_ROTATE, PgHubStore, pgStaticKeyPath, type Fence, type PgStoreOptions } from './store';

export interface PgHubOptions extends SharedHubOptions {
  /** postgres://… URL, or an open store. */
  readonly database: string | PgHubStore;
  readonly store?: PgStoreOptions;
  /**
   * Refuse to start unless the server commits synchronously to a standby
   * (synchronous_standby_names set): the documented HA set-up, where a
   * failover loses no committed rotation (docs/HUB.md §13.5). Default false.
   */
  readonly requireSynchronousReplication?: boolean;
  /** Leases being taken at once (beyond, new connections are closed; the devices retry). Default 256. */
  readonly maxLeasesInFlight?: number;
  /**
   * false: revocations made elsewhere (another instance, the CLI) are not
   * applied — the broken variant tests/hub-postgres-server.test.ts refutes
   * (a revoked device keeps its connection on this instance); never in production.
   */
  readonly followRevocations?: boolean;
  /**
   * How often the control poll compares every lease this instance holds
   * with the database (leases lost while a NOTIFY was missed); also at once
   * whenever the LISTEN session (re)connects. Only liveness: the fence keeps
   * a lost lease from committing anything. Default 30 s.
   */
  readonly leaseSweepMs?: number;
}

export interface PgHubStats extends HubStats {
  leasesTaken: number;
  leasesLost: number;
  leaseRefused: number;
  leaseFailures: number;
  fencedOut: number;
  failedTransactions: number;
  leased: number;
}

interface Held {
  readonly fence: Fence;
  readonly link: Link;
}

export class PgLockstepHub extends HubBase<PgHubStore> {
  readonly instance: string;
  readonly #ownsStore: boolean;
  readonly #commits: PgCommits;
  readonly #gate: LeaseGate;
  readonly #audit: AuditLog;
  /** The devices this instance holds the lease of, with the fence its writes carry. */
  readonly #held = new Map<string, Held>();
  readonly #fences = new Map<string, Fence>();
  readonly #startedAt = Date.now();
  readonly #followRevocations: boolean;
  #listener: pg.Client | undefined;
  #listenBackoffMs = 100;
  #listening = false;
  #lastRowid = 0;
  #polling = false;
  readonly #leaseSweepMs: number;
  /** Monotonic time of the last lease sweep; the first poll sweeps. */
  #lastSweepAt = Number.NEGATIVE_INFINITY;
  /** Set when the LISTEN session (re)connects: notifications may have been lost. */
  #sweepDue = true;
  #leasesLost = 0;
  #api: OperatorApi | undefined;

  static async start(options: PgHubOptions): Promise<PgLockstepHub> {
    checkHubOptions({ ...options, database: ':memory:' });
    const instance = options.store?.instance ?? `${randomUUID()}`;
    const store = typeof options.database === 'string' ? await PgHubStore.open(options.database, { ...options.store, instance }) : options.database;
    const log = options.logger ?? silentLogger;
    let devices: StoredDevice[];
    let startSeq = 0;
    let staticKeys: HubStaticKeys | undefined;
    try {
      if (options.requireSynchronousReplication === true) {
        const durability = await store.durability();
        if (durability.synchronousStandbyNames.trim() === '' || !['on', 'remote_apply', 'remote_write'].includes(durability.synchronousCommit)) {
          throw new LockstepError(
            'LOCAL_BAD_ARGUMENT',
            `requireSynchronousReplication: ${store.path} commits without a synchronous standby (synchronous_standby_names is '${durability.synchronousStandbyNames}', ` +
              `synchronous_commit ${durability.synchronousCommit}); a failover could then lose committed rotations (docs/HUB.md §13.5)`,
          );
        }
      }
      // Issue 14: the store applied the revocation file when it opened (rows a restore brought back are gone again, for every instance).
      for (const deviceId of store.reRevoked) log.warn('revocationReapplied', { deviceId, file: store.revocationFile });
      if (store.revocationFile === undefined) log.warn('revocationFileOff', { reason: 'the keyring has no file to keep the revocation file beside: a restore of the database can bring a revoked device back (docs/HUB.md §14.4)' });
      staticKeys = options.staticKeys ?? (await loadPgStaticKeys(store, options, log));
      devices = await store.loadDevices();
      const revocations = await store.revocationsAfter(0);
      startSeq = revocations.length === 0 ? 0 : (revocations[revocations.length - 1] as Revocation).seq;
    } catch (error) {
      if (typeof options.database === 'string') await store.close();
      throw error;
    }
    const hub = new PgLockstepHub(options, store, devices, staticKeys);
    hub.revocationSeq = startSeq; // (rows loaded after it are alive; a revocation after it is seen by the poll)
    try {
      await hub.listen(options);
      hub.#startListening();
      await hub.#poll();
      if (options.http !== undefined) hub.#api = await (await import('../http/server')).startOperatorApi(hub, options.http, log);
    } catch (error) {
      await hub.close();
      throw error;
    }
    return hub;
  }

  private constructor(options: PgHubOptions, store: PgHubStore, stored: StoredDevice[], staticKeys: HubStaticKeys | undefined) {
    super(options, store, stored, staticKeys);
    for (const device of stored) wipeStored(device);
    this.instance = store.instance;
    this.#ownsStore = typeof options.database === 'string';
    this.#followRevocations = options.followRevocations ?? true;
    this.#leaseSweepMs = checkMilliseconds('leaseSweepMs', options.leaseSweepMs ?? 30_000);
    const connections = () => this.connections;
    this.#gate = new LeaseGate(
      store,
      this.aead,
      this.keyAgreement,
      connections,
      {
        settled: (deviceId) => this.#commits.settled(deviceId),
        leased: (device, fence, link) => this.#adopt(device, fence, link),
        recover: (deviceId, link) => this.#admitForRecovery(deviceId, link),
      },
      this.peerLog,
      { maxHeldBytes: this.limits.maxQueuedInputBytes, maxInFlight: options.maxLeasesInFlight ?? 256 },
    );
    this.connections.gate = this.#gate;
    this.#commits = new PgCommits(store, this.core, this.pipeline, this.events, this.#fences, (deviceId, reason) => this.#lose(deviceId, reason), () => this.connections.resumeReady(), this.log, monotonicNow);
    for (const device of stored) this.track(device);
    this.#lastRowid = stored.reduce((max, device) => Math.max(max, device.rowid), 0); // (the full load at start)
    this.#audit = new AuditLog(
      // (AuditLog's writer is synchronous; on PostgreSQL a failed-commit entry is written in the background.)
      (entries) => void this.store.appendAudit(entries, Date.now()).catch((error: unknown) => this.log.error('auditFailed', { message: describeError(error) })),
      (error) => this.log.error('auditFailed', { message: describeError(error) }),
    );
    this.on('storageError', ({ deviceId }) => this.auditKeyEvents && this.#audit.later({ actor: 'hub', action: 'commit', deviceId, outcome: 'failed' }));
    this.log.info('hubLoaded', { database: store.path, instance: this.instance, devices: stored.length, recovery: staticKeys === undefined ? 'off (no static key file)' : this.recovery.policy.mode });
    this.startTimers(options, () => void this.#poll(), () => void this.#flushLastSeen());
  }

  protected get auditLog(): AuditLog {
    return this.#audit;
  }

  protected persist(op: HubPersistOp): void {
    this.#commits.enqueue(op);
  }

  protected override transmitted(connection: number, bytes: Uint8Array): void {
    this.#gate.transmitted(connection, bytes);
  }

  // ---- Library API (as LockstepHub, asynchronous where the database is) ----

  /** Provisions a device (committed to the shared database, then known to this instance; the others pick it up by their poll). */
  async provision(record: DeviceRecord = newDeviceRecord()): Promise<DeviceRecord> {
    const stored = await this.store.insertDevice(record, Date.now());
    if (!this.presence.has(stored.deviceId)) this.register(stored); // (the poll may have seen the row first)
    stored.active.key.fill(0);
    return record;
  }

  /**
   * Rotates a device's key. On the instance holding the device's lease: the
   * core's outcome. Elsewhere: a durable request in the device's row
   * (`queued`), carried out by whichever instance serves the device, now or
   * at its next connection.
   */
  async rotate(deviceId: string): Promise<RotateResult> {
    const id = deviceId.toLowerCase();
    if (this.#held.has(id) && this.core.deviceState(id).connected) {
      const outcome = this.rotations.rotate(id);
      if (typeof outcome !== 'string') throw outcome;
      return outcome;
    }
    if (!(await this.store.requestRotation(id, Date.now()))) throw new LockstepError('UNKNOWN_DEVICE', id);
    return 'queued';
  }

  /**
   * §11.6: moves a device to the dh rekey mode (durable in the row first);
   * it applies from the next rotation, on whichever instance serves it
   * (each lease reloads the mode; the serving instance's poll applies it).
   */
  async setMode(deviceId: string, mode: RekeyMode): Promise<void> {
    if (mode !== 'dh') throw new LockstepError('LOCAL_BAD_ARGUMENT', 'the rekey mode only moves from classic to dh');
    const outcome = await this.store.upgradeToDh(deviceId, Date.now());
    if (outcome === 'missing') throw new LockstepError('UNKNOWN_DEVICE', deviceId);
    this.core.setMode(deviceId.toLowerCase(), 'dh');
  }

  /**
   * Revokes a device (docs/HUB.md §12.5, §13.10, §14.4): the revocation file
   * first (it survives a restore), then in one transaction its row and both
   * wrapped keys are deleted, the revocation and an audit entry recorded;
   * this instance drops it at once (connections closed, keys zeroed in
   * memory), every other instance within a NOTIFY or a poll, and no instance
   * leases it again (the lease gate finds no row). Its id can never be
   * provisioned again. Undefined: no such device.
   */
  async revoke(deviceId: string, actor: string, reason?: string): Promise<Revocation | undefined> {
    const revocation = await this.store.revokeDevice(deviceId, actor, reason, Date.now());
    if (revocation !== undefined) this.removeRevoked(revocation);
    return revocation;
  }

  /** Records administrative actions in the audit trail; durable when this resolves (rejects if they could not be written). */
  async audit(entries: AuditEntryInput | readonly AuditEntryInput[]): Promise<void> {
    await this.store.appendAudit(Array.isArray(entries) ? entries : [entries as AuditEntryInput], Date.now());
  }

  /** The operator API's address, when it is on (HubOptions.http). */
  get apiAddress(): { host: string; port: number; tls: boolean } | undefined {
    return this.#api?.address;
  }

  /** Requests awaiting (or holding) approval (shared by every instance: the database's). */
  recoveryRequests(): Promise<RecoveryRequestRow[]> {
    return this.store.recoveryRequests();
  }

  recentRecoveries(limit = 50): Promise<RecoveryRecord[]> {
    return this.store.recentRecoveries(limit);
  }

  /** An operator approves the device's recorded recovery request (audited as `actor`); any instance may then accept it. */
  approveRecovery(deviceId: string, actor: string): Promise<'approved' | 'already' | 'none' | 'missing'> {
    return this.store.approveRecovery(deviceId, actor, Date.now());
  }

  /** Arms enrolment (HE1) for a device without a static key; the instance serving it reloads the record at its next poll. */
  async armEnrolment(deviceId: string, actor: string): Promise<'armed' | 'enrolled' | 'missing'> {
    const outcome = await this.store.armEnrolment(deviceId, Date.now());
    await this.audit({ actor, action: 'enrol.arm', deviceId: deviceId.toLowerCase(), outcome });
    if (outcome === 'armed' && this.#held.has(deviceId.toLowerCase())) await this.#reloadRecord(deviceId.toLowerCase());
    return outcome;
  }

  /** Devices whose lease this instance holds. */
  get leasedDevices(): string[] {
    return [...this.#held.keys()];
  }

  /** Lease and database figures (the metrics' lockstep_lease*, lockstep_writes_fenced_out_total, lockstep_database_*). */
  get tierFigures(): TierFigures {
    const stats = this.stats();
    return {
      leasesTaken: stats.leasesTaken, leasesLost: stats.leasesLost, leaseRefused: stats.leaseRefused, leaseFailures: stats.leaseFailures,
      fencedOut: stats.fencedOut, failedTransactions: stats.failedTransactions, leased: stats.leased, waitingForLease: this.#gate.waiting,
      listening: this.#listening, listenBackoffMs: this.#listening ? 0 : this.#listenBackoffMs, pool: this.store.poolStats,
    };
  }

  stats(): PgHubStats {
    return {
      ...this.sharedStats(this.#commits),
      leasesTaken: this.#gate.stats.leasesTaken,
      leaseRefused: this.#gate.stats.refused,
      leaseFailures: this.#gate.stats.leaseFailures,
      leasesLost: this.#leasesLost,
      fencedOut: this.#commits.fencedOut,
      failedTransactions: this.#commits.failedTransactions,
      leased: this.#held.size,
    };
  }

  get commitLatenciesMs(): readonly number[] {
    return this.#commits.latenciesMs;
  }

  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const closing = this.stopListening();
    await this.#api?.close();
    this.connections?.stop('hub stopping');
    await this.#commits?.close();
    await closing;
    await this.#flushLastSeen();
    this.#audit.flush();
    const listener = this.#listener;
    this.#listener = undefined;
    await listener?.end().catch(() => {});
    await this.store.forgetInstance().catch(() => {});
    if (this.#ownsStore) await this.store.close();
    this.log.info('hubStopped', { instance: this.instance });
  }

  // ---- Leases ----

  /** The gate took the lease: the core adopts the row as it is now. */
  #adopt(device: StoredDevice, fence: Fence, link: Link): boolean {
    try {
      if (!this.presence.has(device.deviceId)) this.register(device);
      else this.core.reloadDevice(coreRecord(device));
    } catch (error) {
      this.log.error('adoptFailed', { deviceId: device.deviceId, message: describeError(error) });
      return false;
    } finally {
      wipeStored(device);
    }
    this.scheduler.keyActivated(device.deviceId, device.activeSince);
    this.#held.set(device.deviceId, { fence, link });
    this.#fences.set(device.deviceId, fence);
    if (device.rotateRequestedAt !== undefined) setImmediate(() => this.#requested(device.deviceId));
    return true;
  }

  /** The lease is gone (taken elsewhere, or a write failed): stop acting for the device and close its connection. */
  #lose(deviceId: string, reason: string): void {
    const held = this.#held.get(deviceId);
    if (held === undefined) return;
    this.#held.delete(deviceId);
    this.#fences.delete(deviceId);
    this.#leasesLost++;
    this.log.info('leaseLost', { deviceId, reason });
    this.connections.drop(held.link, `lease lost: ${reason}`);
  }

  /**
   * A durable rotation request (its NOTIFY, the poll, a lease's reloaded row). Not while the device
   * has a pending key: the request stays in the row until the device's next pending key is
   * committed, so the poll serves it once this one is promoted. (Queuing it here instead rotated
   * twice when the poll read the request just before the commit that cleared it.)
   */
  #requested(deviceId: string): void {
    if (!this.#held.has(deviceId)) return;
    const state = this.core.deviceState(deviceId);
    if (state.connected && state.pendingKeyId === undefined) this.rotations.requested(deviceId);
  }

  // ---- Recovery across instances (docs/HUB.md §13.11, §14) ----

  /**
   * A HELLO of an enrolled device that fails under the database's keys: the core gets the record as
   * the database holds it now, so NO_KEY, IN_SYNC and the ids it picks are decided on current state,
   * and takes the link. A device this instance serves keeps its lease and session when the core
   * holds the row's slots (the HELLO is anyone's until tag3: it must not cost the device anything);
   * a core holding other slots than the row means the database went back (a restore): the lease is
   * given up and the row reloaded (the core never runs ahead of the database).
   */
  async #admitForRecovery(deviceId: string, link: Link): Promise<boolean> {
    if (this.staticKeys === undefined || !this.core.hasDevice(deviceId)) return false;
    await this.#commits.settled(deviceId);
    const fresh = await this.store.getDevice(deviceId);
    if (fresh === undefined) return false;
    try {
      if (link.closed || !this.core.hasDevice(deviceId)) return false;
      if (this.#held.has(deviceId)) {
        if (this.#sameSlots(deviceId, fresh)) return true;
        this.#lose(deviceId, 'the database holds other keys than this instance (a restore)');
      }
      this.core.reloadDevice(coreRecord(fresh));
      return true;
    } catch (error) {
      this.log.debug('recoveryAdmitDeferred', { deviceId, message: describeError(error) });
      return false;
    } finally {
      wipeStored(fresh);
    }
  }

  /** Whether the core holds the slots of `row` (ids and the active key). */
  #sameSlots(deviceId: string, row: StoredDevice): boolean {
    const held = this.core.deviceKeys(deviceId);
    return held.active.id === row.active.id && bytesEqual(held.active.key, row.active.key) && (held.pending?.id ?? 0) === (row.pending?.id ?? 0);
  }

  /**
   * tag3 verified: the request is the device's. This instance takes the device's lease (epoch + 1,
   * the row reloaded) and goes on only if the row still holds the slots the core ran the handshake
   * on; the decision is then made under that lease (PgHubStore.decideRecovery checks the epoch under
   * the row lock), and the recovered key is written under its fence. Two instances recovering one
   * device at once: the later lease wins, the earlier instance's decision finds the epoch moved
   * (nothing charged) and its write would be fenced out.
   */
  protected override decideRecoveryRequest(request: RecoveryRequestAction): void {
    void this.#leaseForRecovery(request).then(
      (leased) => {
        if (leased) super.decideRecoveryRequest(request);
        else this.#dropRecovery(request, 'the row changed since the HELLO');
      },
      (error: unknown) => {
        this.log.warn('leaseFailed', { deviceId: request.deviceId, message: describeError(error) });
        this.#dropRecovery(request, 'lease failed');
      },
    );
  }

  #dropRecovery(request: RecoveryRequestAction, reason: string): void {
    const link = this.connections.get(request.connection);
    if (link !== undefined) this.connections.drop(link, `recovery: ${reason}`);
  }

  async #leaseForRecovery(request: RecoveryRequestAction): Promise<boolean> {
    const deviceId = request.deviceId.toLowerCase();
    await this.#commits.settled(deviceId);
    const link = this.connections.get(request.connection);
    if (link === undefined || link.closed) return false;
    const leased = await this.store.lease(deviceId);
    if (leased === undefined) return false;
    try {
      if (link.closed || !this.core.hasDevice(deviceId) || !this.#sameSlots(deviceId, leased.device)) return false;
    } finally {
      wipeStored(leased.device);
    }
    this.#held.set(deviceId, { fence: leased.fence, link });
    this.#fences.set(deviceId, leased.fence);
    return true;
  }

  protected override decideInStore(request: RecoveryRequestInput, policy: RecoveryPolicy, now: number): Promise<RecoveryDecision> {
    return this.store.decideRecovery(request, policy, now, 'hub', this.#fences.get(request.deviceId.toLowerCase()));
  }

  /** A record another process changed (enrolment armed), for a device this instance serves: reloaded once no write is outstanding. */
  async #reloadRecord(deviceId: string): Promise<void> {
    await this.#commits.settled(deviceId);
    if (!this.#held.has(deviceId)) return;
    const stored = await this.store.getDevice(deviceId);
    if (stored === undefined) return;
    try {
      this.core.reloadDevice(coreRecord(stored));
      await this.store.clearRecordChange(deviceId);
      this.log.info('recordReloaded', { deviceId, enrolment: stored.enrolment ?? null });
    } catch (error) {
      this.log.debug('reloadDeferred', { deviceId, message: describeError(error) });
    } finally {
      wipeStored(stored);
    }
  }

  // ---- Control: poll (the record) and notifications (wake-ups) ----

  async #poll(): Promise<void> {
    if (this.#polling || this.stopped) return;
    this.#polling = true;
    try {
      this.#gate.sweep();
      await this.store.heartbeat(Date.now(), this.#startedAt);
      for (const device of await this.store.devicesAfter(this.#lastRowid)) {
        if (!this.presence.has(device.deviceId) && !this.core.hasDevice(device.deviceId)) this.register(device);
        this.#lastRowid = Math.max(this.#lastRowid, device.rowid);
        wipeStored(device);
      }
      await this.#pollRevocations();
      const now = monotonicNow();
      if (this.#sweepDue || now - this.#lastSweepAt >= this.#leaseSweepMs) {
        this.#sweepDue = false;
        this.#lastSweepAt = now;
        await this.#checkLeases([...this.#held.keys()]);
      }
      for (const kekId of await this.store.forgetDestroyedKeks()) this.log.info('kekForgotten', { kekId });
      // Only the rows that ask something of this instance (an index of outstanding requests), not every row it holds.
      for (const row of await this.store.attention()) {
        await this.#attend(row.deviceId, row);
        if (row.rotateRequested && this.#held.get(row.deviceId)?.fence.epoch === row.epoch) this.#requested(row.deviceId);
      }
    } catch (error) {
      this.peerLog.warn('controlPollFailed', { message: describeError(error) });
    } finally {
      this.#polling = false;
    }
  }

  /** Revocations made anywhere (another instance, the CLI): the device leaves this instance's core, and they go into this host's revocation file. */
  async #pollRevocations(): Promise<void> {
    if (!this.#followRevocations) return;
    const revocations = await this.store.revocationsAfter(this.revocationSeq);
    this.store.foldIntoRevocationFile(revocations);
    for (const revocation of revocations) this.removeRevoked(revocation);
  }

  protected override removeRevoked(revocation: Revocation): void {
    const held = this.#held.get(revocation.deviceId);
    this.#held.delete(revocation.deviceId);
    this.#fences.delete(revocation.deviceId);
    const known = this.core.hasDevice(revocation.deviceId);
    super.removeRevoked(revocation);
    if (known && held !== undefined) this.connections.drop(held.link, 'device revoked');
  }

  async #checkLeases(deviceIds: string[]): Promise<void> {
    if (deviceIds.length === 0) return;
    const views = await this.store.leaseView(deviceIds);
    for (const deviceId of deviceIds) await this.#attend(deviceId, views.get(deviceId));
  }

  /** One held device against its row: a lost lease, a mode or a record changed by another process. */
  async #attend(deviceId: string, view: { epoch: number; mode: RekeyMode; recordChanged: boolean } | undefined): Promise<void> {
    const held = this.#held.get(deviceId);
    if (held === undefined) return;
    if (view?.epoch !== held.fence.epoch) {
      this.#lose(deviceId, 'taken by a newer connection');
      return;
    }
    if (view.mode === 'dh' && this.core.deviceState(deviceId).mode !== 'dh') {
      this.core.setMode(deviceId, 'dh'); // changed by another process (`set-mode`); from the next rotation
      this.log.info('modeChanged', { deviceId, mode: 'dh' });
    }
    if (view.recordChanged) await this.#reloadRecord(deviceId); // `enrol` from the CLI or another instance
  }

  #startListening(): void {
    if (this.stopped) return;
    const client = new pg.Client(this.store.clientConfig);
    this.#listener = client;
    const retry = (): void => {
      if (this.#listener !== client || this.stopped) return;
      this.#listening = false;
      this.#listener = undefined;
      client.end().catch(() => {});
      const delay = this.#listenBackoffMs;
      this.#listenBackoffMs = Math.min(this.#listenBackoffMs * 2, 5000);
      setTimeout(() => this.#startListening(), delay).unref();
    };
    client.on('error', (error) => {
      this.peerLog.warn('listenFailed', { message: describeError(error) });
      retry();
    });
    client.on('end', retry);
    client.on('notification', (message) => this.#notified(message.channel, message.payload ?? ''));
    client
      .connect()
      .then(() => client.query(`LISTEN ${NOTIFY_LEASE}; LISTEN ${NOTIFY_ROTATE}; LISTEN ${NOTIFY_REVOKE}`))
      .then(() => {
        this.#listenBackoffMs = 100;
        this.#listening = true;
        this.#sweepDue = true;
        void this.#poll(); // notifications sent while we were not listening are lost: the poll catches up
      })
      .catch((error: unknown) => {
        this.peerLog.warn('listenFailed', { message: describeError(error) });
        retry();
      });
  }

  #notified(channel: string, payload: string): void {
    if (channel === NOTIFY_REVOKE) {
      void this.#pollRevocations().catch((error: unknown) => this.peerLog.warn('controlPollFailed', { message: describeError(error) }));
      return;
    }
    if (channel === NOTIFY_ROTATE) {
      this.#requested(payload);
      return;
    }
    if (channel === NOTIFY_LEASE) {
      const [deviceId, epochText, instance] = payload.split(' ');
      const held = deviceId === undefined ? undefined : this.#held.get(deviceId);
      if (held === undefined || instance === undefined) return;
      // Only a wake-up: the fence decides. A newer epoch than ours means the lease is gone.
      if (Number(epochText) > held.fence.epoch) this.#lose(deviceId as string, 'taken by a newer connection');
    }
  }

  async #flushLastSeen(): Promise<void> {
    const dirty = this.presence.takeDirty();
    if (dirty === undefined) return;
    try {
      await this.store.touch(dirty);
    } catch (error) {
      this.peerLog.warn('lastSeenFailed', { message: describeError(error) });
    }
  }
}

/**
 * The tier's static keys (pgStaticKeyPath: --static-key-file, LOCKSTEP_STATIC_KEY_FILE, or
 * `<KEK file>.static`). Created when missing only while no device record names a hub static id
 * (as on SQLite); with no file to name (a keyring given inline) recovery is off.
 */
async function loadPgStaticKeys(store: PgHubStore, options: PgHubOptions, log: Logger): Promise<HubStaticKeys | undefined> {
  const path = pgStaticKeyPath(options.store ?? {}, options.staticKeyFile);
  const referenced = await store.staticKeyReferences();
  if (path === undefined) {
    log.warn('recoveryOff', { reason: 'no static key file: give --static-key-file (or LOCKSTEP_STATIC_KEY_FILE), or a --kek-file beside which it is kept' });
    return checkStaticKeys(undefined, referenced, log);
  }
  return checkStaticKeys(resolveStaticKeys(store.path, { staticKeyFile: path }, referenced.size === 0), referenced, log);
}
