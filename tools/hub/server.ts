/**
 * The reference hub: HubCore (modules/hub/hub.ts) behind TCP and TLS
 * listeners, with durable state in SQLite, a rotation schedule, and a
 * library API with typed events.
 *
 * How the host drives the core (the order the core's doc comment asks for):
 * - every accepted socket is `opened`, its bytes go to `receive`, its close
 *   to `closed`; `tick` runs every `tickMs`;
 * - actions are applied strictly in the order the core emitted them, never
 *   re-entrantly: actions produced while applying (an event listener that
 *   calls `send`, a commit completing) are appended after the current ones,
 *   because the core numbers sealed frames when it emits them;
 * - a `persist` action goes to the group commit; `persisted` is called only
 *   after the SQLite transaction has committed (WAL, synchronous=FULL), and
 *   `persistFailed` + `reloadDevice` if it did not apply. Meanwhile the core
 *   holds that device's input; more input for it is held here (bounded) and
 *   `send`/`rotate` for it are deferred until the commit completes.
 *
 * Crash safety follows from the core's rules H1/H2 plus "commit before
 * persisted": whatever instant the process dies, the database holds the
 * active key and at most one pending key, and every device still seals with
 * a key the restarted hub accepts (docs/PROTOCOL.md §8.2, §9).
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Server, Socket } from 'node:net';
import type { Aead, RandomSource } from '../../modules/crypto/primitives';
import { isLockstepError, LockstepError } from '../../modules/errors';
import type { HubAction, HubEvent, HubPersistOp } from '../../modules/hub/actions';
import { HubCore } from '../../modules/hub/hub';
import { OUTBOX_MESSAGES } from '../../modules/protocol/constants';
import { nodeAead, nodeRandom } from '../../hosts/node/crypto';
import { GroupCommit, type CommitOutcome } from './group-commit';
import { Link, type Transport } from './link';
import { silentLogger, type Logger } from './log';
import { openListeners } from './listeners';
import { checkHubOptions, DEFAULT_LIMITS, type ConnectionLimits, type HubOptions } from './options';
import { newDeviceRecord, type DeviceRecord } from './records';
import { RotationScheduler, type RotationPolicy } from './scheduler';
import { HubStore, type StoredDevice } from './store';
import type { DeviceView, HubEvents, HubStats, RotateResult } from './types';

export type { DeviceView, HubEvents, HubStats, RotateResult } from './types';

interface DeviceSide {
  persisting: boolean;
  /** Application data accepted by `send` while a commit was outstanding. */
  deferredSends: Uint8Array[];
  rotateWanted: boolean;
  /** Ids the core's AppChannel will assign (it counts from 1 per hub run). */
  nextMessageId: number;
  connection: number | undefined;
  activeSince: number;
  lastSeenAt: number | undefined;
}

const monotonicNow = (): number => Math.floor(performance.now());

export class LockstepHub extends EventEmitter<HubEvents> {
  readonly store: HubStore;
  readonly #ownsStore: boolean;
  readonly #core: HubCore;
  readonly #limits: ConnectionLimits;
  readonly #log: Logger;
  readonly #scheduler: RotationScheduler;
  readonly #commit: GroupCommit;
  readonly #devices = new Map<string, DeviceSide>();
  readonly #links = new Map<number, Link>();
  /** Unauthenticated connections, oldest first (Set keeps insertion order). */
  readonly #unauthenticated = new Set<number>();
  readonly #blocked = new Set<Link>();
  readonly #servers: Server[] = [];
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #dirtyLastSeen = new Map<string, number>();
  readonly #exclusive: boolean;
  readonly #instance = randomUUID();
  #addresses: { transport: Transport; host: string; port: number }[] = [];
  #nextConnectionId = 0;
  #lastRowid = 0;
  #actions: HubAction[] = [];
  #actionAt = 0;
  #applying = false;
  #stopped = false;
  readonly #counters = {
    devicesOnline: 0,
    refused: 0,
    evicted: 0,
    droppedSlowReaders: 0,
    droppedInputOverflow: 0,
    rejectedFrames: 0,
    tlsHandshakeFailures: 0,
    rotationsStarted: 0,
    rotationsConfirmed: 0,
    maxQueuedInputBytes: 0,
  };

  /** Opens the database, loads every device and starts listening. */
  static async start(options: HubOptions): Promise<LockstepHub> {
    checkHubOptions(options); // issue 12 (finding 10): …Ms options are non-negative integers
    const hub = new LockstepHub(options);
    try {
      await hub.#listen(options);
    } catch (error) {
      await hub.close();
      throw error;
    }
    return hub;
  }

  private constructor(options: HubOptions) {
    super();
    this.#log = options.logger ?? silentLogger;
    this.#limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.#ownsStore = typeof options.database === 'string';
    this.store = typeof options.database === 'string' ? new HubStore(options.database) : options.database;
    this.#exclusive = options.exclusive ?? true;
    if (this.#exclusive) {
      const holder = this.store.acquireLock(this.#instance, Date.now(), 10_000);
      if (holder !== undefined) {
        if (this.#ownsStore) this.store.close();
        throw new LockstepError('LOCAL_BUSY', `another hub (pid ${holder.pid} on ${holder.host}) serves ${this.store.path}`);
      }
    }
    const aead: Aead = options.aead ?? nodeAead;
    const random: RandomSource = options.random ?? nodeRandom;
    const stored = this.store.loadDevices();
    this.#core = new HubCore({
      aead,
      random,
      devices: stored.map((d) => ({ deviceId: d.deviceId, active: d.active, ...(d.pending ? { pending: d.pending } : {}) })),
      ...(options.timing ? { timing: options.timing } : {}),
    });
    this.#scheduler = new RotationScheduler(options.rotation);
    for (const device of stored) this.#track(device);
    this.#commit = new GroupCommit(
      (ops) => this.store.commit(ops, Date.now()),
      (outcomes) => this.#committed(outcomes),
    );
    this.#log.info('hubLoaded', { database: this.store.path, devices: stored.length, pending: stored.filter((d) => d.pending).length });
    const tickMs = options.tickMs ?? 200;
    this.#every(tickMs, () => this.#tick());
    this.#every(options.controlPollMs ?? 1000, () => this.#pollControl());
    this.#every(options.lastSeenFlushMs ?? 5000, () => this.#flushLastSeen());
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
   * Queues application data for a device (bounded outbox of OUTBOX_MESSAGES;
   * throws LOCAL_OUTBOX_FULL when full, UNKNOWN_DEVICE for an unknown id).
   * Returns the message id that a later `delivered` event reports.
   */
  send(deviceId: string, payload: Uint8Array): number {
    const side = this.#side(deviceId);
    const core = this.#core.deviceState(deviceId.toLowerCase());
    // The core's flag too: a listener may call send() while the persist action is still queued for this host.
    if (side.persisting || core.persisting) {
      const queued = core.outboxLength + side.deferredSends.length;
      if (queued >= OUTBOX_MESSAGES) throw new LockstepError('LOCAL_OUTBOX_FULL', `${OUTBOX_MESSAGES} messages unacknowledged`);
      side.deferredSends.push(payload.slice());
      return side.nextMessageId++;
    }
    this.#apply(this.#core.send(deviceId.toLowerCase(), payload, monotonicNow()));
    return side.nextMessageId++;
  }

  /**
   * Rotates a device's key: 'started' (a fresh pending key is being
   * committed, then offered to the device), or 'queued' when a rotation of
   * the device is already in flight (an unconfirmed pending key is never
   * replaced): the new one starts as soon as that one is confirmed.
   */
  rotate(deviceId: string): RotateResult {
    const id = deviceId.toLowerCase();
    const side = this.#side(id);
    if (side.persisting || this.#core.deviceState(id).pendingKeyId !== undefined) {
      side.rotateWanted = true;
      return 'queued';
    }
    this.#startRotation(id);
    return 'started';
  }

  /** Changes the rotation schedule at run time (e.g. `{ intervalMs: 0 }` pauses scheduled rotations). */
  setRotationPolicy(policy: Partial<RotationPolicy>): void {
    this.#scheduler.setPolicy(policy);
  }

  deviceState(deviceId: string): DeviceView {
    const side = this.#side(deviceId);
    const core = this.#core.deviceState(deviceId.toLowerCase());
    return { ...core, persisting: core.persisting || side.persisting, activeSince: side.activeSince, lastSeenAt: side.lastSeenAt };
  }

  /** Key ids and keys as the hub holds them (for tests and audits; handle with care). */
  deviceKeys(deviceId: string): ReturnType<HubCore['deviceKeys']> {
    return this.#core.deviceKeys(deviceId.toLowerCase());
  }

  get deviceIds(): string[] {
    return this.#core.deviceIds;
  }

  stats(): HubStats {
    return {
      ...this.#counters,
      connections: this.#links.size,
      unauthenticated: this.#unauthenticated.size,
      commitTransactions: this.#commit.transactions,
      commitOps: this.#commit.committedOps,
    };
  }

  /** Stops listening, commits what is waiting, closes every connection and the database. */
  async close(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const timer of this.#timers) clearInterval(timer);
    const closing = this.#servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve())));
    this.#commit.flush();
    this.#commit.close();
    for (const link of [...this.#links.values()]) this.#drop(link, 'hub stopping');
    await Promise.all(closing);
    this.#flushLastSeen();
    if (this.#exclusive) this.store.releaseLock(this.#instance);
    if (this.#ownsStore) this.store.close();
    this.#log.info('hubStopped', {});
  }

  // ---- Listening and connections ----

  async #listen(options: HubOptions): Promise<void> {
    const listeners = await openListeners(options, this.#limits, {
      accept: (socket, transport) => this.#accept(socket, transport),
      refused: () => this.#counters.refused++,
      tlsHandshakeFailed: () => this.#counters.tlsHandshakeFailures++,
      log: this.#log,
    });
    for (const listener of listeners) {
      this.#servers.push(listener.server);
      this.#addresses.push(listener.address);
      this.#emit('listening', listener.address);
    }
  }

  #accept(socket: Socket, transport: Transport): void {
    if (this.#stopped || this.#links.size >= this.#limits.maxConnections) {
      this.#counters.refused++;
      socket.destroy();
      return;
    }
    const link = new Link(++this.#nextConnectionId, socket, transport);
    this.#links.set(link.id, link);
    this.#unauthenticated.add(link.id);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(link, chunk));
    socket.on('error', () => {});
    socket.on('close', () => this.#onSocketClosed(link));
    this.#log.debug('connectionOpened', { connection: link.id, transport, remote: link.remoteAddress });
    // Pre-authentication connections are capped: the oldest gives way, so a
    // flood of idle connections cannot lock out real devices.
    if (this.#unauthenticated.size > this.#limits.maxUnauthenticated) {
      const oldest = this.#links.get(this.#unauthenticated.values().next().value as number);
      if (oldest !== undefined) {
        this.#counters.evicted++;
        this.#drop(oldest, 'evicted: too many unauthenticated connections');
      }
    }
    this.#apply(this.#core.opened(link.id, monotonicNow()));
  }

  #onData(link: Link, chunk: Uint8Array): void {
    if (link.closed) return;
    if (link.hasQueuedInput) {
      this.#hold(link, chunk);
      return;
    }
    this.#feed(link, chunk);
  }

  /** Gives a chunk to the core; false if the core is busy with this connection's device (chunk held). */
  #feed(link: Link, chunk: Uint8Array): boolean {
    let actions: HubAction[];
    try {
      actions = this.#core.receive(link.id, chunk, monotonicNow());
    } catch (error) {
      if (isLockstepError(error, 'LOCAL_BUSY')) {
        this.#hold(link, chunk);
        return false;
      }
      // LOCAL_NOT_READY: the core already forgot this connection. Anything else would be a
      // core bug; it costs this connection only, and is logged.
      if (!isLockstepError(error, 'LOCAL_NOT_READY')) this.#log.error('receiveFailed', { connection: link.id, message: (error as Error).message });
      this.#drop(link, 'closed by core');
      return true;
    }
    this.#apply(actions);
    return true;
  }

  #hold(link: Link, chunk: Uint8Array): void {
    if (!link.hold(chunk, this.#limits.maxQueuedInputBytes)) {
      this.#counters.droppedInputOverflow++;
      this.#drop(link, 'input buffer limit');
      return;
    }
    this.#counters.maxQueuedInputBytes = Math.max(this.#counters.maxQueuedInputBytes, link.queuedBytes);
    this.#blocked.add(link);
  }

  /** After commits complete: give held input back to the core, in order. */
  #resumeBlocked(): void {
    for (const link of [...this.#blocked]) {
      let chunk: Uint8Array | undefined;
      let busy = false;
      while (!link.closed && (chunk = link.takeHeld()) !== undefined) {
        let actions: HubAction[];
        try {
          actions = this.#core.receive(link.id, chunk, monotonicNow());
        } catch (error) {
          if (isLockstepError(error, 'LOCAL_BUSY')) {
            link.putBack(chunk);
            busy = true;
            break;
          }
          if (!isLockstepError(error, 'LOCAL_NOT_READY')) this.#log.error('receiveFailed', { connection: link.id, message: (error as Error).message });
          this.#drop(link, 'closed by core');
          break;
        }
        this.#apply(actions);
      }
      if (!busy || link.closed) {
        this.#blocked.delete(link);
        link.resumeIfDrained();
      }
    }
  }

  /** Ends a connection from this side (limits, eviction, shutdown). */
  #drop(link: Link, reason: string): void {
    if (link.closed) return;
    this.#log.debug('connectionDropped', { connection: link.id, reason, remote: link.remoteAddress });
    link.destroy();
    this.#forgetLink(link);
  }

  #onSocketClosed(link: Link): void {
    if (!link.closed) link.closed = true;
    this.#forgetLink(link);
  }

  #forgetLink(link: Link): void {
    if (!this.#links.delete(link.id)) return;
    this.#unauthenticated.delete(link.id);
    this.#blocked.delete(link);
    this.#apply(this.#core.closed(link.id, monotonicNow()));
  }

  // ---- Applying the core's actions ----

  #apply(actions: readonly HubAction[]): void {
    for (const action of actions) this.#actions.push(action);
    if (this.#applying) return;
    this.#applying = true;
    try {
      while (this.#actionAt < this.#actions.length) {
        const action = this.#actions[this.#actionAt++] as HubAction;
        this.#perform(action);
      }
    } finally {
      this.#actions = [];
      this.#actionAt = 0;
      this.#applying = false;
    }
  }

  #perform(action: HubAction): void {
    switch (action.type) {
      case 'transmit': {
        const link = this.#links.get(action.connection);
        if (link === undefined || link.closed) return;
        if (!link.write(action.bytes, this.#limits.maxWriteBufferBytes)) {
          this.#counters.droppedSlowReaders++;
          this.#drop(link, 'write buffer limit');
        }
        return;
      }
      case 'close': {
        const link = this.#links.get(action.connection);
        if (link === undefined) return;
        this.#log.debug('connectionClosed', { connection: link.id, code: action.error.code, device: link.deviceId });
        // The core already forgot the connection; only the socket remains.
        link.destroy();
        this.#links.delete(link.id);
        this.#unauthenticated.delete(link.id);
        this.#blocked.delete(link);
        return;
      }
      case 'persist': {
        const side = this.#devices.get(action.op.deviceId);
        if (side !== undefined) side.persisting = true;
        this.#commit.enqueue(action.op);
        return;
      }
      case 'event':
        this.#onCoreEvent(action.event);
        return;
    }
  }

  #onCoreEvent(event: HubEvent): void {
    switch (event.type) {
      case 'deviceConnected': {
        const link = this.#links.get(event.connection);
        const side = this.#devices.get(event.deviceId);
        if (link !== undefined) {
          link.deviceId = event.deviceId;
          this.#unauthenticated.delete(link.id);
        }
        if (side !== undefined) {
          if (side.connection === undefined) this.#counters.devicesOnline++;
          side.connection = event.connection;
          this.#seen(event.deviceId, side);
        }
        this.#log.info('deviceConnected', { deviceId: event.deviceId, keyId: event.keyId, transport: link?.transport, remote: link?.remoteAddress });
        this.#emit('deviceConnected', {
          deviceId: event.deviceId,
          keyId: event.keyId,
          transport: link?.transport ?? 'tcp',
          remoteAddress: link?.remoteAddress ?? '?',
        });
        return;
      }
      case 'deviceDisconnected': {
        const side = this.#devices.get(event.deviceId);
        if (side !== undefined && side.connection === event.connection) {
          side.connection = undefined;
          this.#counters.devicesOnline--;
          this.#seen(event.deviceId, side);
        }
        this.#log.debug('deviceDisconnected', { deviceId: event.deviceId });
        this.#emit('deviceDisconnected', { deviceId: event.deviceId });
        return;
      }
      case 'data':
        this.#scheduler.messageCounted(event.deviceId);
        this.#emit('data', { deviceId: event.deviceId, payload: event.payload });
        return;
      case 'delivered':
        this.#emit('delivered', { deviceId: event.deviceId, messageId: event.messageId });
        return;
      case 'keyOffered':
        this.#log.debug('keyOffered', { deviceId: event.deviceId, keyId: event.id });
        this.#emit('keyOffered', { deviceId: event.deviceId, keyId: event.id });
        return;
      case 'keyConfirmed': {
        const side = this.#devices.get(event.deviceId);
        const now = Date.now();
        if (side !== undefined) side.activeSince = now;
        this.#scheduler.keyActivated(event.deviceId, now);
        this.#counters.rotationsConfirmed++;
        this.#log.info('keyConfirmed', { deviceId: event.deviceId, keyId: event.id });
        this.#emit('keyConfirmed', { deviceId: event.deviceId, keyId: event.id });
        return;
      }
      case 'rejected': {
        this.#counters.rejectedFrames++;
        const link = this.#links.get(event.connection);
        this.#log.debug('rejected', { connection: event.connection, deviceId: event.deviceId, code: event.error.code });
        this.#emit('rejected', { deviceId: event.deviceId, code: event.error.code, remoteAddress: link?.remoteAddress ?? '?' });
        return;
      }
      case 'peerError':
        this.#log.warn('peerError', { deviceId: event.deviceId, code: event.code, detail: event.detail });
        this.#emit('peerError', { deviceId: event.deviceId, code: event.code, detail: event.detail });
        return;
    }
  }

  // ---- Commits ----

  #committed(outcomes: CommitOutcome[]): void {
    if (this.#stopped) return;
    const now = monotonicNow();
    for (const { op, result } of outcomes) {
      const side = this.#devices.get(op.deviceId);
      if (side === undefined) continue;
      side.persisting = false;
      if (result === true) {
        if (op.kind === 'storePending') this.#rotationDurable(op);
        this.#apply(this.#core.persisted(op.deviceId, now));
      } else {
        this.#persistFailed(op, result === false ? new Error('the database row changed under this hub') : result);
      }
      this.#afterCommit(op.deviceId, side, now);
    }
    this.#resumeBlocked();
  }

  #rotationDurable(op: Extract<HubPersistOp, { kind: 'storePending' }>): void {
    this.#counters.rotationsStarted++;
    this.#log.info('rotationStarted', { deviceId: op.deviceId, keyId: op.id });
    this.#emit('rotationStarted', { deviceId: op.deviceId, keyId: op.id });
  }

  #persistFailed(op: HubPersistOp, error: Error): void {
    this.#log.error('commitFailed', { deviceId: op.deviceId, op: op.kind, keyId: op.id, message: error.message });
    this.#apply(this.#core.persistFailed(op.deviceId, new LockstepError('STORAGE_CORRUPT', error.message)));
    try {
      const stored = this.store.getDevice(op.deviceId);
      if (stored !== undefined) this.#core.reloadDevice({ deviceId: stored.deviceId, active: stored.active, ...(stored.pending ? { pending: stored.pending } : {}) });
    } catch (reloadError) {
      this.#log.error('reloadFailed', { deviceId: op.deviceId, message: (reloadError as Error).message });
    }
    this.#emit('storageError', { deviceId: op.deviceId, error });
  }

  /** Replays what was deferred while the device's commit was outstanding. */
  #afterCommit(deviceId: string, side: DeviceSide, now: number): void {
    while (!side.persisting && side.deferredSends.length > 0) {
      const payload = side.deferredSends.shift() as Uint8Array;
      this.#apply(this.#core.send(deviceId, payload, now));
    }
    if (!side.persisting && side.rotateWanted && this.#core.deviceState(deviceId).pendingKeyId === undefined) {
      side.rotateWanted = false;
      this.#startRotation(deviceId);
    }
  }

  #startRotation(deviceId: string): void {
    try {
      this.#apply(this.#core.rotate(deviceId, monotonicNow()));
    } catch (error) {
      this.#log.error('rotateFailed', { deviceId, message: (error as Error).message });
    }
  }

  // ---- Timers ----

  #tick(): void {
    this.#apply(this.#core.tick(monotonicNow()));
    const due = this.#scheduler.due(Date.now(), (deviceId) => {
      const side = this.#devices.get(deviceId);
      return side !== undefined && !side.persisting && side.connection !== undefined && this.#core.deviceState(deviceId).pendingKeyId === undefined;
    });
    for (const deviceId of due) this.#startRotation(deviceId);
  }

  /** Picks up devices provisioned and rotations requested by other processes (the CLI). */
  #pollControl(): void {
    try {
      if (this.#exclusive) this.store.heartbeat(this.#instance, Date.now());
      for (const device of this.store.devicesAfter(this.#lastRowid)) {
        if (!this.#devices.has(device.deviceId)) this.#register(device);
        this.#lastRowid = Math.max(this.#lastRowid, device.rowid);
      }
      for (const deviceId of this.store.rotationRequests()) {
        const side = this.#devices.get(deviceId);
        if (side === undefined || side.persisting || this.#core.deviceState(deviceId).pendingKeyId !== undefined) continue;
        this.#log.info('rotationRequested', { deviceId });
        this.#startRotation(deviceId);
      }
    } catch (error) {
      this.#log.error('controlPollFailed', { message: (error as Error).message });
    }
  }

  #flushLastSeen(): void {
    if (this.#dirtyLastSeen.size === 0) return;
    try {
      this.store.touch(this.#dirtyLastSeen);
    } catch (error) {
      this.#log.warn('lastSeenFailed', { message: (error as Error).message });
    }
    this.#dirtyLastSeen.clear();
  }

  #every(ms: number, run: () => void): void {
    const timer = setInterval(() => {
      if (this.#stopped) return;
      try {
        run();
      } catch (error) {
        this.#log.error('timerFailed', { message: (error as Error).message });
      }
    }, ms);
    timer.unref();
    this.#timers.push(timer);
  }

  // ---- Devices ----

  #register(stored: StoredDevice): void {
    this.#core.addDevice({ deviceId: stored.deviceId, active: stored.active, ...(stored.pending ? { pending: stored.pending } : {}) });
    this.#track(stored);
    this.#log.info('deviceAdded', { deviceId: stored.deviceId, keyId: stored.active.id });
    this.#emit('deviceAdded', { deviceId: stored.deviceId });
  }

  #track(stored: StoredDevice): void {
    this.#devices.set(stored.deviceId, {
      persisting: false,
      deferredSends: [],
      rotateWanted: false,
      nextMessageId: 1,
      connection: undefined,
      activeSince: stored.activeSince,
      lastSeenAt: stored.lastSeenAt,
    });
    this.#scheduler.keyActivated(stored.deviceId, stored.activeSince);
    this.#lastRowid = Math.max(this.#lastRowid, stored.rowid);
  }

  #side(deviceId: string): DeviceSide {
    const side = this.#devices.get(deviceId.toLowerCase());
    if (side === undefined) throw new LockstepError('UNKNOWN_DEVICE', deviceId);
    return side;
  }

  #seen(deviceId: string, side: DeviceSide): void {
    side.lastSeenAt = Date.now();
    this.#dirtyLastSeen.set(deviceId, side.lastSeenAt);
  }

  /** Listener exceptions are the application's; they must not break the action order. */
  #emit<K extends keyof HubEvents>(name: K, ...args: HubEvents[K]): void {
    try {
      (this.emit as (name: K, ...args: HubEvents[K]) => boolean)(name, ...args);
    } catch (error) {
      this.#log.error('listenerFailed', { event: String(name), message: (error as Error).message });
    }
  }
}
