/**
 * The reference hub: HubCore (modules/hub/hub.ts) behind TCP and TLS
 * listeners, with durable state in SQLite, a rotation schedule, and a
 * library API with typed events. This class only wires the parts; each
 * lives in a file of its own.
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
import { EventEmitter } from 'node:events';
import type { Server } from 'node:net';
import { describeError, LockstepError } from '../../modules/errors';
import { HubCore } from '../../modules/hub/hub';
import { monotonicNow } from '../../hosts/node/clock';
import { nodeAead, nodeRandom } from '../../hosts/node/crypto';
import { nodeKeyAgreement } from '../../hosts/node/key-agreement';
import type { RekeyMode } from '../../modules/platform/keys';
import { Commits } from './commits';
import { Connections } from './connections';
import { ControlPoll } from './control';
import { HubEventRouter, safeEmitter, type Emit } from './events';
import { sourceOf } from './eviction';
import type { Transport } from './link';
import { openListeners } from './listeners';
import { silentLogger, type Logger } from './log';
import { RateLimitedLogger } from './log-limit';
import { checkHubOptions, DEFAULT_LIMITS, type ConnectionLimits, type HubOptions } from './options';
import { ActionPipeline } from './pipeline';
import { DevicePresence } from './presence';
import { coreRecord, newDeviceRecord, type DeviceRecord } from './records';
import { Rotations } from './rotation';
import { RotationScheduler, type RotationPolicy } from './scheduler';
import { HubStore, type StoredDevice } from './store';
import { AuditLog, type AuditEntryInput, type Revocation } from './audit';
import type { OperatorApi } from './http/options';
import type { DeviceView, HubEvents, HubStats, RotateResult } from './types';
import { recoveryPolicy, type RecoveryPolicy, type RecoveryRecord, type RecoveryRequestRow } from './recovery';
import { isRecoveryEvent, RecoveryHost } from './recovery-host';
import { coreRecoveryKeys, resolveStaticKeys, type HubStaticKeys } from './static-keys';

export type { DeviceView, HubEvents, HubStats, RotateResult } from './types';


export class LockstepHub extends EventEmitter<HubEvents> {
  readonly store: HubStore;
  readonly #ownsStore: boolean;
  readonly #core: HubCore;
  readonly #limits: ConnectionLimits;
  readonly #log: Logger;
  /** The same logger with the lines a peer drives rate-limited (tools/hub/log-limit.ts). */
  readonly #peerLog: RateLimitedLogger;
  readonly #emitSafe: Emit;
  readonly #scheduler: RotationScheduler;
  readonly #presence = new DevicePresence();
  readonly #pipeline: ActionPipeline;
  readonly #connections: Connections;
  readonly #events: HubEventRouter;
  readonly #commits: Commits;
  readonly #rotations: Rotations;
  readonly #control: ControlPoll;
  readonly #servers: Server[] = [];
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #exclusive: boolean;
  readonly #instance = randomUUID();
  #addresses: { transport: Transport; host: string; port: number }[] = [];
  #stopped = false;
  // issue 17: the audit trail, revocations seen in the database, the operator API (tools/hub/http/).
  readonly #audit: AuditLog;
  #revocationSeq = 0;
  #api: OperatorApi | undefined;
  // issue 14: recovery (tools/hub/recovery-host.ts)
  readonly #recovery: RecoveryHost;
  readonly #staticKeys: HubStaticKeys | undefined;

  /** Opens the database, loads every device and starts listening. */
  static async start(options: HubOptions): Promise<LockstepHub> {
    checkHubOptions(options); // issue 12 (finding 10): …Ms options are non-negative integers
    const hub = new LockstepHub(options);
    try {
      await hub.#listen(options);
      if (options.http !== undefined) hub.#api = await (await import('./http/server')).startOperatorApi(hub, options.http, options.logger ?? silentLogger);
    } catch (error) {
      await hub.close();
      throw error;
    }
    return hub;
  }

  private constructor(options: HubOptions) {
    super();
    this.#log = options.logger ?? silentLogger;
    this.#peerLog = new RateLimitedLogger(this.#log, monotonicNow);
    this.#emitSafe = safeEmitter((name, ...args) => (this.emit as (n: string, ...a: unknown[]) => boolean)(name, ...args), this.#log);
    this.#limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.#ownsStore = typeof options.database === 'string';
    this.store = typeof options.database === 'string' ? new HubStore(options.database) : options.database;
    this.#exclusive = options.exclusive ?? true;
    if (this.#exclusive) {
      const holder = this.store.acquireLock(this.#instance, Date.now(), 10_000);
      if (holder !== undefined) {
        if (this.#ownsStore) this.store.close();
        throw new LockstepError('LOCAL_DATABASE_LOCKED', `another hub (pid ${holder.pid} on ${holder.host}) serves ${this.store.path}`);
      }
    }
    // Issue 14: the store applied the revocation file when it opened (rows a restore brought back are gone again).
    for (const deviceId of this.store.reRevoked) this.#log.warn('revocationReapplied', { deviceId, file: this.store.revocationFile });
    this.#staticKeys = options.staticKeys ?? this.#loadStaticKeys(options.staticKeyFile);
    const stored = this.store.loadDevices();
    const core = new HubCore({
      aead: options.aead ?? nodeAead,
      random: options.random ?? nodeRandom,
      keyAgreement: options.keyAgreement ?? nodeKeyAgreement,
      devices: stored.map(coreRecord),
      receiveBufferBytes: this.#limits.maxQueuedInputBytes,
      ...(options.timing ? { timing: options.timing } : {}),
      ...(this.#staticKeys !== undefined ? { recovery: coreRecoveryKeys(this.#staticKeys) } : {}),
    });
    this.#core = core;
    this.#scheduler = new RotationScheduler(options.rotation);
    // The parts refer to each other through the pipeline's sinks; `connections` is resolved lazily.
    const connections = (): Connections => this.#connections;
    this.#recovery = new RecoveryHost(
      recoveryPolicy(options.recovery),
      this.store,
      this.#log,
      this.#peerLog,
      () => this.#audit,
      this.#emitSafe,
      (connection) => this.#connections.get(connection)?.admission.source,
    );
    this.#events = new HubEventRouter(this.#emitSafe, this.#peerLog, connections, this.#presence, this.#scheduler);
    this.#pipeline = new ActionPipeline(
      core,
      {
        transmit: (connection, bytes) => this.#connections.write(connection, bytes),
        close: (connection, error) => this.#connections.closedByCore(connection, error),
        persist: (op) => this.#commits.enqueue(op),
        event: (event) => (isRecoveryEvent(event) ? this.#recovery.event(event) : this.#events.core(event)),
        recoveryRequest: (request) => {
          const decision = this.#recovery.decide(request);
          this.#pipeline.apply(this.#core.decideRecovery(request.connection, decision, monotonicNow()));
        },
      },
      monotonicNow,
    );
    this.#connections = new Connections(core, this.#pipeline, this.#limits, this.#peerLog, monotonicNow, (source) => this.#recovery.allowed(source));
    this.#commits = new Commits(this.store, core, this.#pipeline, this.#events, connections, this.#log, monotonicNow);
    this.#rotations = new Rotations(core, this.#pipeline, this.#scheduler, this.#log, monotonicNow);
    const heartbeat = this.#exclusive ? () => this.store.heartbeat(this.#instance, Date.now()) : undefined;
    this.#control = new ControlPoll(this.store, heartbeat, (device) => this.#register(device), this.#rotations, this.#presence, this.#log, (deviceId) => {
      this.#core.setMode(deviceId, 'dh');
      this.#log.info('modeChanged', { deviceId, mode: 'dh' });
    }, (deviceId) => this.#reloadRecord(deviceId));
    for (const device of stored) {
      this.#track(device);
      this.#control.seen(device.rowid);
    }
    this.store.auditKeyEvents = options.audit ?? true;
    this.#audit = this.#startAudit();
    this.#log.info('hubLoaded', { database: this.store.path, devices: stored.length, pending: stored.filter((d) => d.pending).length });
    this.#every(options.tickMs ?? 200, () => {
      this.#pipeline.apply(core.tick(monotonicNow()));
      this.#rotations.startDue(Date.now());
    });
    this.#every(options.controlPollMs ?? 1000, () => {
      this.#control.poll();
      this.#pollRevocations();
    });
    this.#every(options.lastSeenFlushMs ?? 5000, () => this.#control.flushLastSeen());
    this.#every(1000, () => this.#peerLog.flush());
    this.#every(options.statsLogMs ?? 60_000, () => this.#log.info('stats', { ...this.stats() }));
  }

  // ---- Library API ----

  /** Where the hub listens (ports resolved when 0 was asked). */
  get addresses(): readonly { transport: Transport; host: string; port: number }[] {
    return this.#addresses;
  }

  /**
   * Provisions a device: a fresh id and initial key (or the given record,
   * e.g. from tools/provision), committed to the database, then served.
   * Returns the record the device must be given (keep it secret).
   */
  provision(record: DeviceRecord = newDeviceRecord()): DeviceRecord {
    const stored = this.store.insertDevice(record, Date.now());
    this.#register(stored);
    return record;
  }

  /**
   * Queues application data for a device and returns the message id the
   * core assigned (a later `delivered` event reports it). Throws the core's
   * typed error with nothing queued: LOCAL_OUTBOX_FULL (OUTBOX_MESSAGES
   * unacknowledged), LOCAL_PAYLOAD_TOO_LARGE, UNKNOWN_DEVICE.
   */
  send(deviceId: string, payload: Uint8Array): number {
    return this.#pipeline.send(deviceId, payload);
  }

  /**
   * Rotates a device's key: 'started' (a fresh pending key is being
   * committed, then offered to the device), or 'queued' when a rotation of
   * the device is already in flight (an unconfirmed pending key is never
   * replaced): the core starts the new one once that one is confirmed.
   * Throws LOCAL_KEY_IDS_EXHAUSTED (re-provision) or UNKNOWN_DEVICE.
   */
  rotate(deviceId: string): RotateResult {
    const outcome = this.#rotations.rotate(deviceId);
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
    this.#core.setMode(deviceId.toLowerCase(), 'dh');
  }

  /** Changes the rotation schedule at run time (e.g. `{ intervalMs: 0 }` pauses scheduled rotations). */
  setRotationPolicy(policy: Partial<RotationPolicy>): void {
    this.#scheduler.setPolicy(policy);
  }

  deviceState(deviceId: string): DeviceView {
    return { ...this.#core.deviceState(deviceId), ...this.#presence.view(deviceId) };
  }

  /** Key ids and keys as the hub holds them (for tests and audits; handle with care). */
  deviceKeys(deviceId: string): ReturnType<HubCore['deviceKeys']> {
    return this.#core.deviceKeys(deviceId);
  }

  get deviceIds(): string[] {
    return this.#core.deviceIds;
  }

  stats(): HubStats {
    return {
      ...this.#connections.counters,
      ...this.#events.counters,
      devicesOnline: this.#presence.online,
      connections: this.#connections.size,
      unauthenticated: this.#connections.unauthenticated,
      commitTransactions: this.#commits.transactions,
      commitOps: this.#commits.committedOps,
    };
  }

  /** Stops listening, commits what is waiting, closes every connection and the database. */
  async close(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const timer of this.#timers) clearInterval(timer);
    await this.#api?.close();
    const closing = this.#servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
    this.#commits.close();
    this.#connections.stop('hub stopping');
    await Promise.all(closing);
    this.#control.flushLastSeen();
    this.#audit.flush();
    if (this.#exclusive) this.store.releaseLock(this.#instance);
    if (this.#ownsStore) this.store.close();
    this.#log.info('hubStopped', {});
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
    this.#forgetRevoked(revocation);
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

  /** Whether key events go to the audit trail (HubOptions.audit; switchable for the benchmark's comparison). */
  get auditKeyEvents(): boolean {
    return this.store.auditKeyEvents;
  }

  set auditKeyEvents(on: boolean) {
    this.store.auditKeyEvents = on;
  }

  /** Whether the core serves this device (false once revoked). */
  hasDevice(deviceId: string): boolean {
    return this.#core.hasDevice(deviceId);
  }

  #startAudit(): AuditLog {
    const log = new AuditLog(
      (entries, durable) => this.store.appendAudit(entries, Date.now(), durable),
      (error) => this.#log.error('auditFailed', { message: describeError(error) }),
    );
    const latest = this.store.revocationsAfter(0);
    this.#revocationSeq = latest.length === 0 ? 0 : (latest[latest.length - 1] as Revocation).seq;
    // rotation.start / rotation.confirm are written by the store inside the commit itself (audit.ts recordKeyEvents).
    this.on('storageError', ({ deviceId }) => this.auditKeyEvents && log.later({ actor: 'hub', action: 'commit', deviceId, outcome: 'failed' }));
    return log;
  }

  /** Revocations another process (the CLI) wrote: the device leaves the core within a poll. */
  #pollRevocations(): void {
    for (const revocation of this.store.revocationsAfter(this.#revocationSeq)) {
      this.#revocationSeq = revocation.seq;
      if (this.#core.hasDevice(revocation.deviceId)) this.#forgetRevoked(revocation);
    }
  }

  #forgetRevoked(revocation: Revocation): void {
    this.#revocationSeq = Math.max(this.#revocationSeq, revocation.seq);
    if (!this.#core.hasDevice(revocation.deviceId)) return;
    this.#pipeline.apply(this.#core.removeDevice(revocation.deviceId, new LockstepError('UNKNOWN_DEVICE', 'device revoked')));
    this.#presence.forget(revocation.deviceId);
    this.#scheduler.forget(revocation.deviceId);
    this.#log.warn('deviceRevoked', { deviceId: revocation.deviceId, actor: revocation.actor });
    this.#emitSafe('deviceRevoked', { deviceId: revocation.deviceId, actor: revocation.actor });
  }

  // ---- issue 14: recovery (docs/HUB.md §14) ----

  /** The recovery policy in force (`serve --recovery`, the config file's "recovery"). */
  get recoveryPolicy(): RecoveryPolicy {
    return this.#recovery.policy;
  }

  /** Changes the policy at run time (e.g. `{ mode: 'approve' }` while a restore is being checked). */
  setRecoveryPolicy(policy: Partial<RecoveryPolicy>): void {
    this.#recovery.policy = recoveryPolicy({ ...this.#recovery.policy, ...policy });
  }

  /** The hub static ids this hub holds and the current one (no key material). */
  get staticKeyIds(): { current: number; ids: number[] } | undefined {
    return this.#staticKeys === undefined ? undefined : { current: this.#staticKeys.current, ids: this.#staticKeys.keys.map((k) => k.id) };
  }

  /** The current hub static public key and its id: what provisioning gives a device (tools/provision). */
  get hubStatic(): { id: number; publicKey: Uint8Array } | undefined {
    const current = this.#staticKeys?.keys.find((k) => k.id === this.#staticKeys?.current);
    return current === undefined ? undefined : { id: current.id, publicKey: current.publicKey.slice() };
  }

  /** Counters for the metrics (tools/hub/metrics.ts). */
  get recoveryCounters(): RecoveryHost['counters'] {
    return this.#recovery.counters;
  }

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

  /**
   * The database's static key file: created when missing only while no device record names a
   * hub static id (else those devices could never recover: refuse to start rather than guess).
   */
  #loadStaticKeys(file: string | undefined): HubStaticKeys | undefined {
    const referenced = this.store.staticKeyReferences();
    if (this.store.path === ':memory:' && file === undefined) return undefined;
    const keys = resolveStaticKeys(this.store.path, file === undefined ? {} : { staticKeyFile: file }, referenced.size === 0);
    if (keys === undefined) {
      // Devices name hub static ids, and the file is gone: serve them without recovery (as 1.0) rather than invent new keys they cannot know.
      const devices = [...referenced.values()].reduce((n, count) => n + count, 0);
      this.#log.error('staticKeysMissing', { ids: [...referenced.keys()].join(','), devices, recovery: 'off until the static key file is restored' });
      return undefined;
    }
    const missing = [...referenced.keys()].filter((id) => !keys.keys.some((k) => k.id === id));
    if (missing.length > 0) this.#log.error('staticKeysMissing', { ids: missing.join(','), devices: missing.reduce((n, id) => n + (referenced.get(id) ?? 0), 0) });
    return keys;
  }

  /** A record another process changed (enrolment armed): the core gets it unless a write is outstanding (then at the next poll). */
  #reloadRecord(deviceId: string): boolean {
    const stored = this.store.getDevice(deviceId);
    if (stored === undefined || !this.#core.hasDevice(deviceId)) return true;
    try {
      this.#core.reloadDevice(coreRecord(stored));
    } catch (error) {
      this.#log.debug('reloadDeferred', { deviceId, message: describeError(error) });
      return false;
    }
    this.store.clearRecordChange(deviceId);
    this.#log.info('recordReloaded', { deviceId, enrolment: stored.enrolment ?? null });
    return true;
  }

  // ---- Wiring ----

  async #listen(options: HubOptions): Promise<void> {
    const listeners = await openListeners(options, this.#limits, {
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

  /** A device provisioned after start (by this process or another): the core serves it from now on. */
  #register(stored: StoredDevice): void {
    this.#core.addDevice(coreRecord(stored));
    this.#track(stored);
    this.#events.deviceAdded(stored.deviceId, stored.active.id);
  }

  #track(stored: StoredDevice): void {
    this.#presence.track(stored);
    this.#scheduler.keyActivated(stored.deviceId, stored.activeSince);
    // Not control.seen(rowid) here: rows another process inserted before this one would be skipped (the poll advances past them itself).
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
