/**
 * The wiring both hubs share (tools/hub/server.ts on SQLite,
 * tools/hub/postgres/hub.ts for an instance of a PostgreSQL tier): the core,
 * the listeners, connections, the action pipeline, events, presence, the
 * schedule, recovery (tools/hub/recovery-host.ts), the timers, registering a
 * device and removing a revoked one. A backend adds its storage: where a
 * persist op goes (`persist`), how a recovery request is decided
 * (`decideRecoveryRequest`), and, on PostgreSQL, the lease gate in front of
 * the core (`transmitted`).
 */
import { EventEmitter } from 'node:events';
import type { Server } from 'node:net';
import type { ConnectionId, HubAction, HubPersistOp } from '../../modules/hub/actions';
import { describeError, LockstepError } from '../../modules/errors';
import { HubCore } from '../../modules/hub/hub';
import { monotonicNow } from '../../hosts/node/clock';
import { nodeAead, nodeRandom } from '../../hosts/node/crypto';
import { nodeKeyAgreement } from '../../hosts/node/key-agreement';
import type { Aead, KeyAgreementPrimitives } from '../../modules/crypto/primitives';
import type { Revocation } from './audit';
import { Connections } from './connections';
import { HubEventRouter, safeEmitter, type Emit } from './events';
import { sourceOf } from './eviction';
import type { Transport } from './link';
import { openListeners } from './listeners';
import { silentLogger, type Logger } from './log';
import { RateLimitedLogger } from './log-limit';
import { DEFAULT_LIMITS, type ConnectionLimits, type HubOptions } from './options';
import { ActionPipeline } from './pipeline';
import { DevicePresence } from './presence';
import { coreRecord } from './records';
import { recoveryPolicy, type RecoveryDecision, type RecoveryPolicy, type RecoveryRequestInput } from './recovery';
import { isRecoveryEvent, RecoveryHost, type RecoveryAnswer, type RecoveryDecider } from './recovery-host';
import { Rotations } from './rotation';
import { RotationScheduler, type RotationPolicy } from './scheduler';
import { coreRecoveryKeys, type HubStaticKeys } from './static-keys';
import type { StoredDevice } from './device-row';
import type { DeviceView, HubEvents, HubStats } from './types';

/** The core's `recoveryRequest` action. */
export type RecoveryRequestAction = Extract<HubAction, { type: 'recoveryRequest' }>;

/** The options both backends take (the database and the SQLite lock are each backend's own). */
export type SharedHubOptions = Omit<HubOptions, 'database' | 'exclusive'>;

/** What every backend's store offers the shared wiring. */
export interface BaseStore extends RecoveryDecider {
  readonly path: string;
  auditKeyEvents: boolean;
}

export abstract class HubBase<Store extends BaseStore> extends EventEmitter<HubEvents> {
  readonly store: Store;
  protected readonly log: Logger;
  /** The same logger with the lines a peer drives rate-limited (tools/hub/log-limit.ts). */
  protected readonly peerLog: RateLimitedLogger;
  protected readonly emitSafe: Emit;
  protected readonly limits: ConnectionLimits;
  protected readonly aead: Aead;
  protected readonly keyAgreement: KeyAgreementPrimitives;
  protected readonly core: HubCore;
  protected readonly scheduler: RotationScheduler;
  protected readonly presence = new DevicePresence();
  protected readonly pipeline: ActionPipeline;
  protected readonly connections: Connections;
  protected readonly events: HubEventRouter;
  protected readonly rotations: Rotations;
  protected readonly recovery: RecoveryHost;
  protected readonly staticKeys: HubStaticKeys | undefined;
  protected stopped = false;
  protected revocationSeq = 0;
  readonly #servers: Server[] = [];
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #addresses: { transport: Transport; host: string; port: number }[] = [];

  protected constructor(options: SharedHubOptions, store: Store, stored: readonly StoredDevice[], staticKeys: HubStaticKeys | undefined) {
    super();
    this.store = store;
    this.log = options.logger ?? silentLogger;
    this.peerLog = new RateLimitedLogger(this.log, monotonicNow);
    this.emitSafe = safeEmitter((name, ...args) => (this.emit as (n: string, ...a: unknown[]) => boolean)(name, ...args), this.log);
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.aead = options.aead ?? nodeAead;
    this.keyAgreement = options.keyAgreement ?? nodeKeyAgreement;
    this.staticKeys = staticKeys;
    const core = new HubCore({
      aead: this.aead,
      random: options.random ?? nodeRandom,
      keyAgreement: this.keyAgreement,
      devices: stored.map(coreRecord),
      receiveBufferBytes: this.limits.maxQueuedInputBytes,
      ...(options.timing ? { timing: options.timing } : {}),
      ...(staticKeys !== undefined ? { recovery: coreRecoveryKeys(staticKeys) } : {}),
    });
    this.core = core;
    this.scheduler = new RotationScheduler(options.rotation);
    // The parts refer to each other through the pipeline's sinks; `connections` is resolved lazily.
    const connections = (): Connections => this.connections;
    this.recovery = new RecoveryHost(
      recoveryPolicy(options.recovery),
      { decideRecovery: (request, policy, now) => this.decideInStore(request, policy, now) },
      this.log,
      this.peerLog,
      () => this.auditLog,
      this.emitSafe,
      (connection) => this.connections.get(connection)?.admission.source,
    );
    this.events = new HubEventRouter(this.emitSafe, this.peerLog, connections, this.presence, this.scheduler);
    this.pipeline = new ActionPipeline(
      core,
      {
        transmit: (connection, bytes) => {
          this.transmitted(connection, bytes);
          this.connections.write(connection, bytes);
        },
        close: (connection, error) => this.connections.closedByCore(connection, error),
        persist: (op) => this.persist(op),
        event: (event) => (isRecoveryEvent(event) ? this.recovery.event(event) : this.events.core(event)),
        recoveryRequest: (request) => this.decideRecoveryRequest(request),
      },
      monotonicNow,
    );
    this.connections = new Connections(core, this.pipeline, this.limits, this.peerLog, monotonicNow, (source) => this.recovery.allowed(source));
    this.rotations = new Rotations(core, this.pipeline, this.scheduler, this.log, monotonicNow);
    store.auditKeyEvents = options.audit ?? true;
  }

  /** The audit trail of the backend (recovery's IN_SYNC and refused static-key entries). */
  protected abstract get auditLog(): import('./audit').AuditLog;

  /** Where the core's persist ops go (the backend's group commit). */
  protected abstract persist(op: HubPersistOp): void;

  /** Where a recovery request is decided (PostgreSQL: under the lease this instance took for it). */
  protected decideInStore(request: RecoveryRequestInput, policy: RecoveryPolicy, now: number): RecoveryDecision | Promise<RecoveryDecision> {
    return this.store.decideRecovery(request, policy, now);
  }

  /** A `transmit` of the core, before it is written (the PostgreSQL lease gate notes each CHALLENGE). */
  protected transmitted(_connection: ConnectionId, _bytes: Uint8Array): void {}

  /** The `recoveryRequest` action (tag3 verified): the policy and limits decide, the core gets the answer. */
  protected decideRecoveryRequest(request: RecoveryRequestAction): void {
    const answer = this.recovery.decide(request);
    if (answer instanceof Promise) void answer.then((a) => this.answerRecovery(request.connection, a));
    else this.answerRecovery(request.connection, answer);
  }

  protected answerRecovery(connection: ConnectionId, answer: RecoveryAnswer): void {
    if (this.stopped) return;
    try {
      this.pipeline.apply(this.core.decideRecovery(connection, answer, monotonicNow()));
    } catch (error) {
      // An answer that arrived after the connection moved on (asynchronous backends): the device asks again.
      this.log.warn('recoveryAnswerDropped', { connection, message: describeError(error) });
    }
  }

  /** Starts the timers both backends run; `control` is the backend's database poll. */
  protected startTimers(options: SharedHubOptions, control: () => void, flushLastSeen: () => void): void {
    this.every(options.tickMs ?? 200, () => {
      this.pipeline.apply(this.core.tick(monotonicNow()));
      this.rotations.startDue(Date.now(), this.presence.onlineDevices());
    });
    this.every(options.controlPollMs ?? 1000, control);
    this.every(options.lastSeenFlushMs ?? 5000, flushLastSeen);
    this.every(1000, () => this.peerLog.flush());
    this.every(options.statsLogMs ?? 60_000, () => this.log.info('stats', { ...this.stats() }));
  }

  abstract stats(): HubStats;

  /** The figures both backends count, with the backend's commit counts. */
  protected sharedStats(commits: { readonly transactions: number; readonly committedOps: number }): HubStats {
    return {
      ...this.connections.counters,
      ...this.events.counters,
      devicesOnline: this.presence.online,
      connections: this.connections.size,
      unauthenticated: this.connections.unauthenticated,
      commitTransactions: commits.transactions,
      commitOps: commits.committedOps,
    };
  }

  // ---- Library API shared by both backends ----

  /** Where the hub listens (ports resolved when 0 was asked). */
  get addresses(): readonly { transport: Transport; host: string; port: number }[] {
    return this.#addresses;
  }

  /**
   * Queues application data for a device and returns the message id the
   * core assigned (a later `delivered` event reports it). Throws the core's
   * typed error with nothing queued: LOCAL_OUTBOX_FULL (OUTBOX_MESSAGES
   * unacknowledged), LOCAL_PAYLOAD_TOO_LARGE, UNKNOWN_DEVICE.
   */
  send(deviceId: string, payload: Uint8Array): number {
    return this.pipeline.send(deviceId, payload);
  }

  /** Changes the rotation schedule at run time (e.g. `{ intervalMs: 0 }` pauses scheduled rotations). */
  setRotationPolicy(policy: Partial<RotationPolicy>): void {
    this.scheduler.setPolicy(policy);
  }

  deviceState(deviceId: string): DeviceView {
    return { ...this.core.deviceState(deviceId), ...this.presence.view(deviceId) };
  }

  /** Key ids and keys as the hub holds them (for tests and audits; handle with care). */
  deviceKeys(deviceId: string): ReturnType<HubCore['deviceKeys']> {
    return this.core.deviceKeys(deviceId);
  }

  get deviceIds(): string[] {
    return this.core.deviceIds;
  }

  /** Whether the core serves this device (false once revoked). */
  hasDevice(deviceId: string): boolean {
    return this.core.hasDevice(deviceId);
  }

  /** Whether key events go to the audit trail (HubOptions.audit; switchable for the benchmark's comparison). */
  get auditKeyEvents(): boolean {
    return this.store.auditKeyEvents;
  }

  set auditKeyEvents(on: boolean) {
    this.store.auditKeyEvents = on;
  }

  /** The recovery policy in force (`serve --recovery`, the config file's "recovery"). */
  get recoveryPolicy(): RecoveryPolicy {
    return this.recovery.policy;
  }

  /** Changes the policy at run time (e.g. `{ mode: 'approve' }` while a restore is being checked). */
  setRecoveryPolicy(policy: Partial<RecoveryPolicy>): void {
    this.recovery.policy = recoveryPolicy({ ...this.recovery.policy, ...policy });
  }

  /** The hub static ids this hub holds and the current one (no key material). */
  get staticKeyIds(): { current: number; ids: number[] } | undefined {
    return this.staticKeys === undefined ? undefined : { current: this.staticKeys.current, ids: this.staticKeys.keys.map((k) => k.id) };
  }

  /** The current hub static public key and its id: what provisioning gives a device (tools/provision). */
  get hubStatic(): { id: number; publicKey: Uint8Array } | undefined {
    const current = this.staticKeys?.keys.find((k) => k.id === this.staticKeys?.current);
    return current === undefined ? undefined : { id: current.id, publicKey: current.publicKey.slice() };
  }

  /** Counters for the metrics (tools/hub/metrics.ts). */
  get recoveryCounters(): RecoveryHost['counters'] {
    return this.recovery.counters;
  }

  // ---- Wiring ----

  protected async listen(options: SharedHubOptions): Promise<void> {
    const listeners = await openListeners(options as HubOptions, this.limits, {
      opened: (raw, transport) => this.connections.opened(raw, transport),
      secured: (socket) => this.connections.secured(socket),
      tlsHandshakeFailed: (code, remote) => {
        this.connections.counters.tlsHandshakeFailures++;
        this.peerLog.debug('tlsHandshakeFailed', { code, source: sourceOf(remote) });
      },
      log: this.log,
    });
    for (const listener of listeners) {
      this.#servers.push(listener.server);
      this.#addresses.push(listener.address);
      this.emitSafe('listening', listener.address);
    }
  }

  /** Stops the timers and the listeners; resolves once every listener closed (after `connections.stop`). */
  protected stopListening(): Promise<void> {
    for (const timer of this.#timers) clearInterval(timer);
    return Promise.all(this.#servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())))).then(() => undefined);
  }

  /** A device provisioned after start (by this process or another): the core serves it from now on. */
  protected register(stored: StoredDevice): void {
    this.core.addDevice(coreRecord(stored));
    this.track(stored);
    this.events.deviceAdded(stored.deviceId, stored.active.id);
  }

  protected track(stored: StoredDevice): void {
    this.presence.track(stored);
    this.scheduler.keyActivated(stored.deviceId, stored.activeSince);
    // Not the backend's "rows seen" mark here: rows another process inserted before this one would be skipped (its poll advances past them itself).
  }

  /** A revocation (here or elsewhere): the device leaves the core — connections closed, keys zeroed in memory, refused from now on. */
  protected removeRevoked(revocation: Revocation): void {
    this.revocationSeq = Math.max(this.revocationSeq, revocation.seq);
    if (!this.core.hasDevice(revocation.deviceId)) return;
    this.pipeline.apply(this.core.removeDevice(revocation.deviceId, new LockstepError('UNKNOWN_DEVICE', 'device revoked')));
    this.presence.forget(revocation.deviceId);
    this.scheduler.forget(revocation.deviceId);
    this.log.warn('deviceRevoked', { deviceId: revocation.deviceId, actor: revocation.actor });
    this.emitSafe('deviceRevoked', { deviceId: revocation.deviceId, actor: revocation.actor });
  }

  protected every(ms: number, run: () => void): void {
    const timer = setInterval(() => {
      if (this.stopped) return;
      try {
        run();
      } catch (error) {
        this.log.error('timerFailed', { message: describeError(error) });
      }
    }, ms);
    timer.unref();
    this.#timers.push(timer);
  }
}
