/**
 * One hub instance of a tier sharing a PostgreSQL database (docs/HUB.md §13):
 * the same core and the same parts as the SQLite hub (tools/hub/server.ts:
 * listeners, connections, action pipeline, events, presence, schedule), with
 * three differences:
 * - a device's connection reaches the core only once this instance holds
 *   the device's lease, and the core adopts the row as the lease reloaded
 *   it (tools/hub/postgres/lease-gate.ts);
 * - every write is fenced (tools/hub/postgres/commits.ts, store.ts): when
 *   another instance took the lease the write does not apply, and this
 *   instance closes the device's connection and stops acting for it;
 * - the control loop (LISTEN/NOTIFY as a wake-up, and a poll as the record)
 *   notices leases taken elsewhere, devices provisioned elsewhere and
 *   rotation requests (durable in the device's row) for the devices it
 *   serves, revocations (durable in revoked_devices: every instance drops
 *   the device and closes its connections) and destroyed KEK versions
 *   (dropped from memory, docs/HUB.md §13.6).
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Server } from 'node:net';
import pg from 'pg';
import { describeError, LockstepError } from '../../../modules/errors';
import { HubCore } from '../../../modules/hub/hub';
import { monotonicNow } from '../../../hosts/node/clock';
import { nodeAead, nodeRandom } from '../../../hosts/node/crypto';
import { nodeKeyAgreement } from '../../../hosts/node/key-agreement';
import type { RekeyMode } from '../../../modules/platform/keys';
import { Connections } from '../connections';
import { HubEventRouter, safeEmitter, type Emit } from '../events';
import { sourceOf } from '../eviction';
import type { Link, Transport } from '../link';
import { openListeners } from '../listeners';
import { silentLogger, type Logger } from '../log';
import { RateLimitedLogger } from '../log-limit';
import { checkHubOptions, DEFAULT_LIMITS, type ConnectionLimits, type HubOptions } from '../options';
import { ActionPipeline } from '../pipeline';
import { DevicePresence } from '../presence';
import { coreRecord, newDeviceRecord, type DeviceRecord } from '../records';
import { Rotations } from '../rotation';
import { RotationScheduler, type RotationPolicy } from '../scheduler';
import type { StoredDevice } from '../store';
import type { DeviceView, HubEvents, HubStats, RotateResult } from '../types';
import { AuditLog, type AuditEntryInput, type Revocation } from '../audit';
import { NOTIFY_REVOKE } from './audit';
import { PgCommits } from './commits';
import { LeaseGate, wipeStored } from './lease-gate';
import { NOTIFY_LEASE, NOTIFY_ROTATE, PgHubStore, type Fence, type PgStoreOptions } from './store';

export interface PgHubOptions extends Omit<HubOptions, 'database' | 'exclusive'> {
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

export class PgLockstepHub extends EventEmitter<HubEvents> {
  readonly store: PgHubStore;
  readonly instance: string;
  readonly #ownsStore: boolean;
  readonly #core: HubCore;
  readonly #log: Logger;
  readonly #peerLog: RateLimitedLogger;
  readonly #emitSafe: Emit;
  readonly #scheduler: RotationScheduler;
  readonly #presence = new DevicePresence();
  readonly #pipeline: ActionPipeline;
  readonly #connections: Connections;
  readonly #events: HubEventRouter;
  readonly #commits: PgCommits;
  readonly #rotations: Rotations;
  readonly #gate: LeaseGate;
  /** The devices this instance holds the lease of, with the fence its writes carry. */
  readonly #held = new Map<string, Held>();
  readonly #fences = new Map<string, Fence>();
  readonly #servers: Server[] = [];
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #startedAt = Date.now();
  #listener: pg.Client | undefined;
  #listenBackoffMs = 100;
  #lastRowid = 0;
  #polling = false;
  #leasesLost = 0;
  #addresses: { transport: Transport; host: string; port: number }[] = [];
  #stopped = false;
  #revocationSeq = 0;
  #audit!: AuditLog;
  #followRevocations = true;

  static async start(options: PgHubOptions): Promise<PgLockstepHub> {
    checkHubOptions({ ...options, database: ':memory:' });
    const instance = options.store?.instance ?? `${randomUUID()}`;
    const store = typeof options.database === 'string' ? await PgHubStore.open(options.database, { ...options.store, instance }) : options.database;
    let devices: StoredDevice[];
    let startSeq = 0;
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
      devices = await store.loadDevices();
      const revocations = await store.revocationsAfter(0);
      startSeq = revocations.length === 0 ? 0 : (revocations[revocations.length - 1] as Revocation).seq;
    } catch (error) {
      if (typeof options.database === 'string') await store.close();
      throw error;
    }
    const hub = new PgLockstepHub(options, store, devices);
    hub.#followRevocations = options.followRevocations ?? true;
    hub.#revocationSeq = startSeq; // (rows loaded after it are alive; a revocation after it is seen by the poll)
    try {
      await hub.#listen(options);
      hub.#startListening();
      await hub.#poll();
    } catch (error) {
      await hub.close();
      throw error;
    }
    return hub;
  }

  private constructor(options: PgHubOptions, store: PgHubStore, stored: StoredDevice[]) {
    super();
    this.store = store;
    this.instance = store.instance;
    this.#ownsStore = typeof options.database === 'string';
    this.#log = options.logger ?? silentLogger;
    this.#peerLog = new RateLimitedLogger(this.#log, monotonicNow);
    this.#emitSafe = safeEmitter((name, ...args) => (this.emit as (n: string, ...a: unknown[]) => boolean)(name, ...args), this.#log);
    const limits: ConnectionLimits = { ...DEFAULT_LIMITS, ...options.limits };
    const aead = options.aead ?? nodeAead;
    const keyAgreement = options.keyAgreement ?? nodeKeyAgreement;
    const core = new HubCore({
      aead,
      keyAgreement,
      random: options.random ?? nodeRandom,
      devices: stored.map(coreRecord),
      receiveBufferBytes: limits.maxQueuedInputBytes,
      ...(options.timing ? { timing: options.timing } : {}),
    });
    for (const device of stored) wipeStored(device);
    this.#core = core;
    this.#scheduler = new RotationScheduler(options.rotation);
    const connections = (): Connections => this.#connections;
    this.#events = new HubEventRouter(this.#emitSafe, this.#peerLog, connections, this.#presence, this.#scheduler);
    this.#pipeline = new ActionPipeline(
      core,
      {
        transmit: (connection, bytes) => {
          this.#gate.transmitted(connection, bytes);
          this.#connections.write(connection, bytes);
        },
        close: (connection, error) => this.#connections.closedByCore(connection, error),
        persist: (op) => this.#commits.enqueue(op),
        event: (event) => this.#events.core(event),
        // Issue 14: the tier gives its core no static keys yet (HubConfig.recovery absent = recovery off), so no request can
        // arise; should one, the connection is closed without a result (nothing is stored: the device retries later).
        recoveryRequest: (request) => {
          this.#log.error('recoveryNotServed', { deviceId: request.deviceId, reason: 'recovery is not served by the PostgreSQL tier yet' });
          const link = this.#connections.get(request.connection);
          if (link !== undefined) this.#connections.drop(link, 'recovery not served');
        },
      },
      monotonicNow,
    );
    this.#connections = new Connections(core, this.#pipeline, limits, this.#peerLog, monotonicNow);
    this.#gate = new LeaseGate(
      store,
      aead,
      keyAgreement,
      connections,
      {
        settled: (deviceId) => this.#commits.settled(deviceId),
        leased: (device, fence, link) => this.#adopt(device, fence, link),
      },
      this.#peerLog,
      { maxHeldBytes: limits.maxQueuedInputBytes, maxInFlight: options.maxLeasesInFlight ?? 256 },
    );
    this.#connections.gate = this.#gate;
    this.#commits = new PgCommits(
      store,
      core,
      this.#pipeline,
      this.#events,
      this.#fences,
      (deviceId, reason) => this.#lose(deviceId, reason),
      () => this.#connections.resumeReady(),
      this.#log,
      monotonicNow,
    );
    this.#rotations = new Rotations(core, this.#pipeline, this.#scheduler, this.#log, monotonicNow);
    for (const device of stored) this.#track(device);
    this.#lastRowid = stored.reduce((max, device) => Math.max(max, device.rowid), 0); // (the full load at start)
    store.auditKeyEvents = options.audit ?? true;
    this.#audit = new AuditLog(
      // (AuditLog's writer is synchronous; on PostgreSQL a failed-commit entry is written in the background.)
      (entries) => void this.store.appendAudit(entries, Date.now()).catch((error: unknown) => this.#log.error('auditFailed', { message: describeError(error) })),
      (error) => this.#log.error('auditFailed', { message: describeError(error) }),
    );
    this.on('storageError', ({ deviceId }) => this.auditKeyEvents && this.#audit.later({ actor: 'hub', action: 'commit', deviceId, outcome: 'failed' }));
    this.#log.info('hubLoaded', { database: store.path, instance: this.instance, devices: stored.length });
    this.#every(options.tickMs ?? 200, () => {
      this.#pipeline.apply(core.tick(monotonicNow()));
      this.#rotations.startDue(Date.now());
    });
    this.#every(options.controlPollMs ?? 1000, () => void this.#poll());
    this.#every(options.lastSeenFlushMs ?? 5000, () => void this.#flushLastSeen());
    this.#every(1000, () => this.#peerLog.flush());
    this.#every(options.statsLogMs ?? 60_000, () => this.#log.info('stats', { ...this.stats() }));
  }

  // ---- Library API (as LockstepHub, asynchronous where the database is) ----

  get addresses(): readonly { transport: Transport; host: string; port: number }[] {
    return this.#addresses;
  }

  /** Provisions a device (committed to the shared database, then known to this instance; the others pick it up by their poll). */
  async provision(record: DeviceRecord = newDeviceRecord()): Promise<DeviceRecord> {
    const stored = await this.store.insertDevice(record, Date.now());
    if (!this.#presence.has(stored.deviceId)) this.#register(stored); // (the poll may have seen the row first)
    stored.active.key.fill(0);
    return record;
  }

  send(deviceId: string, payload: Uint8Array): number {
    return this.#pipeline.send(deviceId, payload);
  }

  /**
   * Rotates a device's key. On the instance holding the device's lease: the
   * core's outcome. Elsewhere: a durable request in the device's row
   * (`queued`), carried out by whichever instance serves the device, now or
   * at its next connection.
   */
  async rotate(deviceId: string): Promise<RotateResult> {
    const id = deviceId.toLowerCase();
    if (this.#held.has(id) && this.#core.deviceState(id).connected) {
      const outcome = this.#rotations.rotate(id);
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
    this.#core.setMode(deviceId.toLowerCase(), 'dh');
  }

  /**
   * Revokes a device (docs/HUB.md §12.5, §13.10): in one transaction its row
   * and both wrapped keys are deleted, the revocation and an audit entry
   * recorded; this instance drops it at once (connections closed, keys
   * zeroed in memory), every other instance within a NOTIFY or a poll, and
   * no instance leases it again (the lease gate finds no row). Its id can
   * never be provisioned again. Undefined: no such device.
   */
  async revoke(deviceId: string, actor: string, reason?: string): Promise<Revocation | undefined> {
    const revocation = await this.store.revokeDevice(deviceId, actor, reason, Date.now());
    if (revocation !== undefined) this.#forgetRevoked(revocation);
    return revocation;
  }

  /** Records administrative actions in the audit trail; durable when this resolves (rejects if they could not be written). */
  async audit(entries: AuditEntryInput | readonly AuditEntryInput[]): Promise<void> {
    await this.store.appendAudit(Array.isArray(entries) ? entries : [entries as AuditEntryInput], Date.now());
  }

  /** Whether key events go to the audit trail (HubOptions.audit). */
  get auditKeyEvents(): boolean {
    return this.store.auditKeyEvents;
  }

  set auditKeyEvents(on: boolean) {
    this.store.auditKeyEvents = on;
  }

  /** Whether this instance's core knows the device (false once revoked). */
  hasDevice(deviceId: string): boolean {
    return this.#core.hasDevice(deviceId);
  }

  setRotationPolicy(policy: Partial<RotationPolicy>): void {
    this.#scheduler.setPolicy(policy);
  }

  deviceState(deviceId: string): DeviceView {
    return { ...this.#core.deviceState(deviceId), ...this.#presence.view(deviceId) };
  }

  deviceKeys(deviceId: string): ReturnType<HubCore['deviceKeys']> {
    return this.#core.deviceKeys(deviceId);
  }

  get deviceIds(): string[] {
    return this.#core.deviceIds;
  }

  /** Devices whose lease this instance holds. */
  get leasedDevices(): string[] {
    return [...this.#held.keys()];
  }

  stats(): PgHubStats {
    return {
      ...this.#connections.counters,
      ...this.#events.counters,
      devicesOnline: this.#presence.online,
      connections: this.#connections.size,
      unauthenticated: this.#connections.unauthenticated,
      commitTransactions: this.#commits.transactions,
      commitOps: this.#commits.committedOps,
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
    if (this.#stopped) return;
    this.#stopped = true;
    for (const timer of this.#timers) clearInterval(timer);
    const closing = this.#servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
    this.#connections?.stop('hub stopping');
    await this.#commits?.close();
    await Promise.all(closing);
    await this.#flushLastSeen();
    this.#audit.flush();
    const listener = this.#listener;
    this.#listener = undefined;
    await listener?.end().catch(() => {});
    await this.store.forgetInstance().catch(() => {});
    if (this.#ownsStore) await this.store.close();
    this.#log.info('hubStopped', { instance: this.instance });
  }

  // ---- Leases ----

  /** The gate took the lease: the core adopts the row as it is now. */
  #adopt(device: StoredDevice, fence: Fence, link: Link): boolean {
    try {
      if (!this.#presence.has(device.deviceId)) this.#register(device);
      else this.#core.reloadDevice(coreRecord(device));
    } catch (error) {
      this.#log.error('adoptFailed', { deviceId: device.deviceId, message: describeError(error) });
      return false;
    } finally {
      wipeStored(device);
    }
    this.#scheduler.keyActivated(device.deviceId, device.activeSince);
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
    this.#log.info('leaseLost', { deviceId, reason });
    this.#connections.drop(held.link, `lease lost: ${reason}`);
  }

  #requested(deviceId: string): void {
    if (this.#held.has(deviceId) && this.#core.deviceState(deviceId).connected) this.#rotations.requested(deviceId);
  }

  // ---- Control: poll (the record) and notifications (wake-ups) ----

  async #poll(): Promise<void> {
    if (this.#polling || this.#stopped) return;
    this.#polling = true;
    try {
      this.#gate.sweep();
      await this.store.heartbeat(Date.now(), this.#startedAt);
      for (const device of await this.store.devicesAfter(this.#lastRowid)) {
        if (!this.#presence.has(device.deviceId) && !this.#core.hasDevice(device.deviceId)) this.#register(device);
        this.#lastRowid = Math.max(this.#lastRowid, device.rowid);
        wipeStored(device);
      }
      await this.#pollRevocations();
      await this.#checkLeases([...this.#held.keys()]);
      for (const kekId of await this.store.forgetDestroyedKeks()) this.#log.info('kekForgotten', { kekId });
      const held = [...this.#held.keys()];
      if (held.length > 0) for (const deviceId of await this.store.rotationRequests(held)) this.#requested(deviceId);
    } catch (error) {
      this.#peerLog.warn('controlPollFailed', { message: describeError(error) });
    } finally {
      this.#polling = false;
    }
  }

  /** Revocations made anywhere (another instance, the CLI): the device leaves this instance's core. */
  async #pollRevocations(): Promise<void> {
    if (!this.#followRevocations) return;
    for (const revocation of await this.store.revocationsAfter(this.#revocationSeq)) this.#forgetRevoked(revocation);
  }

  #forgetRevoked(revocation: Revocation): void {
    this.#revocationSeq = Math.max(this.#revocationSeq, revocation.seq);
    const deviceId = revocation.deviceId;
    const held = this.#held.get(deviceId);
    if (held !== undefined) {
      this.#held.delete(deviceId);
      this.#fences.delete(deviceId);
    }
    if (!this.#core.hasDevice(deviceId)) return;
    this.#pipeline.apply(this.#core.removeDevice(deviceId, new LockstepError('UNKNOWN_DEVICE', 'device revoked')));
    if (held !== undefined) this.#connections.drop(held.link, 'device revoked');
    this.#presence.forget(deviceId);
    this.#scheduler.forget(deviceId);
    this.#log.warn('deviceRevoked', { deviceId, actor: revocation.actor });
    this.#emitSafe('deviceRevoked', { deviceId, actor: revocation.actor });
  }

  async #checkLeases(deviceIds: string[]): Promise<void> {
    if (deviceIds.length === 0) return;
    const views = await this.store.leaseView(deviceIds);
    for (const deviceId of deviceIds) {
      const held = this.#held.get(deviceId);
      const view = views.get(deviceId);
      if (held === undefined) continue;
      if (view?.epoch !== held.fence.epoch) this.#lose(deviceId, 'taken by a newer connection');
      else if (view.mode === 'dh' && this.#core.deviceState(deviceId).mode !== 'dh') {
        this.#core.setMode(deviceId, 'dh'); // changed by another process (`set-mode`); from the next rotation
        this.#log.info('modeChanged', { deviceId, mode: 'dh' });
      }
    }
  }

  #startListening(): void {
    if (this.#stopped) return;
    const client = new pg.Client(this.store.clientConfig);
    this.#listener = client;
    const retry = (): void => {
      if (this.#listener !== client || this.#stopped) return;
      this.#listener = undefined;
      client.end().catch(() => {});
      const delay = this.#listenBackoffMs;
      this.#listenBackoffMs = Math.min(this.#listenBackoffMs * 2, 5000);
      setTimeout(() => this.#startListening(), delay).unref();
    };
    client.on('error', (error) => {
      this.#peerLog.warn('listenFailed', { message: describeError(error) });
      retry();
    });
    client.on('end', retry);
    client.on('notification', (message) => this.#notified(message.channel, message.payload ?? ''));
    client
      .connect()
      .then(() => client.query(`LISTEN ${NOTIFY_LEASE}; LISTEN ${NOTIFY_ROTATE}; LISTEN ${NOTIFY_REVOKE}`))
      .then(() => {
        this.#listenBackoffMs = 100;
        void this.#poll(); // notifications sent while we were not listening are lost: the poll catches up
      })
      .catch((error: unknown) => {
        this.#peerLog.warn('listenFailed', { message: describeError(error) });
        retry();
      });
  }

  #notified(channel: string, payload: string): void {
    if (channel === NOTIFY_REVOKE) {
      void this.#pollRevocations().catch((error: unknown) => this.#peerLog.warn('controlPollFailed', { message: describeError(error) }));
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

  // ---- Wiring ----

  async #listen(options: PgHubOptions): Promise<void> {
    const limits = { ...DEFAULT_LIMITS, ...options.limits };
    const listeners = await openListeners(options as HubOptions, limits, {
      opened: (raw, transport) => this.#connections.opened(raw, transport),
      secured: (socket) => this.#connections.secured(socket),
      tlsHandshakeFailed: (code, remote) => {
        this.#connections.counters.tlsHandshakeFailures++;
        this.#peerLog.debug('tlsHandshakeFailed', { code, source: sourceOf(remote) });
      },
      log: this.#log,
    });
    for (const listener of listeners) {
      this.#servers.push(listener.server);
      this.#addresses.push(listener.address);
      this.#emitSafe('listening', listener.address);
    }
  }

  #register(stored: StoredDevice): void {
    this.#core.addDevice(coreRecord(stored));
    this.#track(stored);
    this.#events.deviceAdded(stored.deviceId, stored.active.id);
  }

  #track(stored: StoredDevice): void {
    this.#presence.track(stored);
    this.#scheduler.keyActivated(stored.deviceId, stored.activeSince);
    // Not #lastRowid here: a device registered at its lease (or provisioned here) may have a higher rowid than
    // rows another instance inserted that this one's poll has not seen yet; the poll alone advances it.
  }

  async #flushLastSeen(): Promise<void> {
    const dirty = this.#presence.takeDirty();
    if (dirty === undefined) return;
    try {
      await this.store.touch(dirty);
    } catch (error) {
      this.#peerLog.warn('lastSeenFailed', { message: describeError(error) });
    }
  }

  #every(ms: number, run: () => void): void {
    const timer = setInterval(() => {
      if (this.#stopped) return;
      try {
        run();
      } catch (error) {
        this.#log.error('timerFailed', { message: describeError(error) });
      }
    }, ms);
    timer.unref();
    this.#timers.push(timer);
  }
}
