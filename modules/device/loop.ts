/**
 * The device loop: the one driver of DeviceCore (device.ts) that every
 * platform uses — the Moddable firmware (main.ts), the Node device host
 * (hosts/node/device-host.ts), the verification (tools/verify) and the test
 * pair (tools/testing/pair.ts). It owns the connection, the timers, the
 * keystore writes and the reconnect policy; the core owns the protocol.
 * Sans-IO apart from the interfaces it is given: a transport, timers, a
 * monotonic clock, a random source and the key storage.
 *
 * Rules:
 * 1. Run to completion: every input (connection opened, bytes, closed,
 *    timer, app send) is handed to the core and all resulting actions are
 *    carried out, in order, before the next input is looked at. Inputs that
 *    arrive meanwhile (a write failing synchronously, an event handler that
 *    sends) wait in a queue of at most MAX_QUEUED_INPUTS; queued input of a
 *    connection that has gone since is skipped, and an overflow drops the
 *    connection, never a tick, a flush or a persist completing.
 * 2. A `persist` action goes to the key storage (docs/KEYSTORE.md: durable
 *    when it returns), then `persisted()` runs before anything else; storage
 *    that answers PERSIST_LATER is completed by `persistCompleted()`. If the
 *    storage throws, `persistFailed()` halts the core (DK7); the loop drops
 *    it, remounts the storage and carries on with a new core.
 * 3. `close` closes the transport; every close (asked for or not) is
 *    reported to the core with `disconnected()`, then the next attempt is
 *    scheduled with exponential backoff and equal jitter
 *    (modules/session/backoff.ts). The attempt counter resets only when a
 *    session is established, so a hub that accepts TCP and then rejects us is
 *    not hammered.
 * 4. Power: `powerOff()` is a power cut as the device lives it: memory is
 *    gone (core, queues, timers), the connection is abandoned without a
 *    goodbye; `powerOn()` boots from the storage alone.
 * 5. Bounded: one connection, one core timer, one retry timer, the input
 *    queue; the core bounds its own buffers.
 * 6. Recovery (docs/PROTOCOL.md §12): the loop gives each core the
 *    storage's credential and one RecoveryPacer that outlives cores (not a
 *    power cut), so attempts stay spaced (RECOVERY_RETRY_INITIAL_MS doubling
 *    to RECOVERY_RETRY_MAX_MS, never before the hub's retry after, reset by
 *    a WELCOME) while ordinary reconnects keep their own backoff; a close
 *    the core marks `reconnectNow` (after DK14 or IN_SYNC) reconnects at
 *    once, without counting as a backed-off attempt.
 */
import { describeError, isLockstepError, LockstepError } from '../errors';
import type { RandomSource } from '../crypto/primitives';
import type { Aead, KeyAgreementPrimitives } from '../crypto/primitives';
import { PERSIST_LATER, type KeyStorage } from '../keystore/key-storage';
import type { DeviceKeys } from '../platform/keys';
import { backoffDelayMs } from '../session/backoff';
import type { DeviceAction, DeviceEvent, DevicePersistOp } from './actions';
import { DeviceCore, type DeviceTiming } from './device';
import { RecoveryPacer } from './recovery-pacing';

/** The events a transport reports, from the platform's callbacks. */
export interface DeviceTransportEvents {
  onConnected(): void;
  onData(bytes: Uint8Array): void;
  onClosed(reason: string): void;
}

export interface DeviceConnection {
  write(bytes: Uint8Array): void;
  /** Closes without calling back onClosed. */
  close(): void;
}

/** Opens a connection to the hub; its events arrive later (or synchronously: the loop holds them until the transport has returned). */
export type DeviceTransport = (events: DeviceTransportEvents) => DeviceConnection;

/** What a timer is for: the core's next deadline, or the next connection attempt (hosts may treat them alike). */
export type LoopTimerKind = 'deadline' | 'retry';

export interface LoopTimers {
  set(callback: () => void, delayMs: number, kind: LoopTimerKind): unknown;
  clear(handle: unknown): void;
}

export interface MonotonicClock {
  /** Milliseconds, never decreasing. */
  now(): number;
}

/** What the loop reports besides the core's own events. */
export type DeviceLoopEvent =
  | DeviceEvent
  | { readonly type: 'connecting'; readonly attempt: number }
  | { readonly type: 'connected' }
  | { readonly type: 'disconnected'; readonly reason: string }
  | { readonly type: 'booted'; readonly deviceId: Uint8Array; readonly keys: DeviceKeys }
  | { readonly type: 'bootFailed'; readonly error: LockstepError }
  | { readonly type: 'storageFailed'; readonly op: DevicePersistOp['kind']; readonly error: LockstepError };

export type LoopState = 'off' | 'stopped' | 'waiting' | 'connecting' | 'connected';

export interface DeviceLoopOptions {
  readonly storage: KeyStorage;
  readonly transport: DeviceTransport;
  readonly timers: LoopTimers;
  readonly clock: MonotonicClock;
  /** Randomness for the core (nonces, IVs, stream id) and the backoff jitter; never Math.random. */
  readonly random: RandomSource;
  readonly aead: Aead;
  /** X25519 and HKDF for the dh rekey mode (§11); a loop without them runs a classic-only device. */
  readonly keyAgreement?: KeyAgreementPrimitives;
  readonly timing?: Partial<DeviceTiming>;
  /** Reconnect backoff: attempt n waits in [d/2, d], d = min(max, base·2^n). */
  readonly reconnectBaseMs?: number;
  readonly reconnectMaxMs?: number;
  /** Replaces the backoff (the verification pins delays to keep its liveness bound exact). */
  readonly reconnectDelayMs?: (attempt: number) => number;
  /** An attempt that has not connected after this long is abandoned; default 15 s. */
  readonly connectTimeoutMs?: number;
  /** Recovery attempt spacing (docs/PROTOCOL.md §12.7): first and largest; default RECOVERY_RETRY_INITIAL_MS, RECOVERY_RETRY_MAX_MS. */
  readonly recoveryRetryInitialMs?: number;
  readonly recoveryRetryMaxMs?: number;
  /** After a storage failure or an unprovisioned boot, try again after this long; default 5 s. */
  readonly remountDelayMs?: number;
  /** Checks a mounted keystore before it is used (e.g. the configured device id); throw to refuse it. */
  readonly acceptMount?: (deviceId: Uint8Array, keys: DeviceKeys) => void;
  readonly onEvent?: (event: DeviceLoopEvent) => void;
  /** Called before each core action is carried out (traces, fault injection: it may call powerOff()). */
  readonly beforeAction?: (action: DeviceAction) => void;
  readonly log?: (line: string) => void;
}

export const MAX_QUEUED_INPUTS = 8;
const DEFAULT_RECONNECT_BASE_MS = 500;
const DEFAULT_RECONNECT_MAX_MS = 30_000;
const DEFAULT_CONNECT_TIMEOUT_MS = 15_000;
const DEFAULT_REMOUNT_DELAY_MS = 5_000;

type Input = (core: DeviceCore, now: number) => DeviceAction[];

/**
 * A queued input. `generation` marks input from one connection (its bytes,
 * its opening): it is skipped once that connection is gone, and dropped
 * first when the queue overflows. Other input (a tick, a flush, a persist
 * completing, a close) always runs.
 */
interface Queued {
  readonly run: Input;
  readonly generation?: number;
}

export type LoopSendResult = { readonly ok: true; readonly messageId: number } | { readonly ok: false; readonly error: LockstepError };

export class DeviceLoop {
  readonly #options: DeviceLoopOptions;
  #core: DeviceCore | undefined;
  #connection: DeviceConnection | undefined;
  /** Identifies the current connection, so late events from an old one are ignored. */
  #generation = 0;
  /** Identifies the current power cycle: actions of a core that lost power are not carried out. */
  #incarnation = 0;
  #state: LoopState = 'stopped';
  #powered = true;
  #attempt = 0;
  #coreTimer: unknown;
  #coreTimerAt: number | undefined;
  #retryTimer: unknown;
  #queue: Queued[] = [];
  #running = false;
  /** A flush is queued: one is enough, it seals everything the outbox has not sent. */
  #flushQueued = false;
  #persistOutstanding: DevicePersistOp | undefined;
  #pacer: RecoveryPacer;
  /** Counters for traces and telemetry. */
  readonly counters = { connects: 0, sessions: 0, closes: 0, boots: 0, storageFailures: 0 };

  constructor(options: DeviceLoopOptions) {
    this.#options = options;
    this.#pacer = this.#newPacer();
  }

  #newPacer(): RecoveryPacer {
    return new RecoveryPacer(this.#options.recoveryRetryInitialMs, this.#options.recoveryRetryMaxMs);
  }

  /** The recovery attempt spacing (for observers and tests). */
  get recoveryPacer(): RecoveryPacer {
    return this.#pacer;
  }

  get state(): LoopState {
    return this.#state;
  }
  /** The running core (undefined while off or unmounted): for observers and tests, not for driving. */
  get core(): DeviceCore | undefined {
    return this.#core;
  }
  get powered(): boolean {
    return this.#powered;
  }
  /** True while a session is established (app data flows now, not just queues). */
  get established(): boolean {
    return this.#core?.session === 'established';
  }
  get keys(): DeviceKeys | undefined {
    return this.#core?.keys;
  }
  /** The write handed to a storage that answered PERSIST_LATER, until persistCompleted(). */
  get persistOutstanding(): DevicePersistOp | undefined {
    return this.#persistOutstanding;
  }

  /** Attempts in a row without an established session (the backoff's exponent). */
  get reconnectAttempt(): number {
    return this.#attempt;
  }

  /** Mounts the storage (if not yet) and connects at once; reconnects until stop(). */
  start(): void {
    if (!this.#powered || this.#state !== 'stopped') return;
    this.#state = 'waiting';
    this.#connect();
  }

  /** Closes the connection for good (the core hears `disconnected`); no reconnect. */
  stop(): void {
    if (this.#state === 'stopped' || this.#state === 'off') return;
    this.#clearRetry();
    this.#dropConnection();
    this.#state = 'stopped';
    this.#input((core, now) => core.disconnected(now));
    this.#clearCoreTimer();
  }

  /**
   * Application data to the hub: the id the core assigned (a later
   * `delivered` event names it), or a typed error with nothing queued
   * (LOCAL_PAYLOAD_TOO_LARGE, LOCAL_OUTBOX_FULL, LOCAL_NOT_READY without a
   * core). Called from an event handler, the frames go out after the current
   * input's actions.
   */
  send(payload: Uint8Array): LoopSendResult {
    const core = this.#core;
    if (core === undefined) return { ok: false, error: new LockstepError('LOCAL_NOT_READY', this.#powered ? 'keystore not mounted' : 'device is off') };
    const queued = core.enqueue(payload);
    if (queued.error !== undefined) return { ok: false, error: queued.error };
    // Sealed in turn (rule 1), so frames leave in sequence order even when sent from an event handler.
    if (!this.#flushQueued) {
      this.#flushQueued = true;
      this.#input((c, now) => {
        this.#flushQueued = false;
        return c.flush(now);
      });
    }
    return { ok: true, messageId: queued.messageId };
  }

  /** A storage that answered PERSIST_LATER reports the write durable (or failed). */
  persistCompleted(error?: unknown): void {
    const op = this.#persistOutstanding;
    if (op === undefined) throw new LockstepError('LOCAL_NOT_READY', 'no write outstanding');
    this.#persistOutstanding = undefined;
    this.#input((core, now) => (error === undefined ? core.persisted(now) : this.#storageFailed(core, op, error)));
  }

  /** Rule 4: a power cut. Nothing else of the current input happens. */
  powerOff(): void {
    if (!this.#powered) return;
    this.#powered = false;
    this.#incarnation++;
    this.#clearRetry();
    this.#clearCoreTimer();
    const connection = this.#connection;
    this.#connection = undefined;
    this.#generation++;
    connection?.close();
    this.#core = undefined;
    this.#queue = [];
    this.#flushQueued = false;
    this.#persistOutstanding = undefined;
    this.#state = 'off';
  }

  /** Rule 4: power returns; the device boots from its storage, then connects at the next turn. */
  powerOn(): void {
    if (this.#powered) return;
    this.#powered = true;
    this.#attempt = 0;
    this.#pacer = this.#newPacer(); // memory is gone: the spacing too
    this.#state = 'waiting';
    this.#mount();
    this.#scheduleRetry('boot', 0);
  }

  // ---- Connection lifecycle ----

  #connect(): void {
    this.#retryTimer = undefined;
    if (this.#state !== 'waiting') return;
    if (this.#core === undefined && !this.#mount()) {
      this.#scheduleRetry('keystore not mounted', this.#options.remountDelayMs ?? DEFAULT_REMOUNT_DELAY_MS);
      return;
    }
    const generation = ++this.#generation;
    this.#state = 'connecting';
    this.counters.connects++;
    this.#emit({ type: 'connecting', attempt: this.#attempt });
    // Events the transport reports before it has returned wait until the connection is known
    // (bounded; a close is always kept).
    let early: (() => void)[] | undefined = [];
    const deliver = (event: () => void, bounded = true): void => {
      if (generation !== this.#generation) return;
      if (early === undefined) event();
      else if (!bounded || early.length < MAX_QUEUED_INPUTS) early.push(event);
    };
    const events: DeviceTransportEvents = {
      onConnected: () => deliver(() => this.#onConnected(generation)),
      onData: (bytes) => deliver(() => this.#input((core, now) => core.receive(bytes, now), generation)),
      onClosed: (reason) => deliver(() => this.#onClosed(reason), false),
    };
    let connection: DeviceConnection;
    try {
      connection = this.#options.transport(events);
    } catch (error) {
      if (generation === this.#generation) this.#onClosed(`connect failed: ${describeError(error)}`);
      return;
    }
    if (generation !== this.#generation) {
      connection.close();
      return;
    }
    this.#connection = connection;
    const timeoutMs = this.#options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    this.#retryTimer = this.#options.timers.set(
      () => {
        this.#retryTimer = undefined;
        if (generation === this.#generation && this.#state === 'connecting') {
          this.#dropConnection();
          this.#onClosed(`no connection after ${timeoutMs} ms`);
        }
      },
      timeoutMs,
      'retry',
    );
    const reported = early;
    early = undefined;
    for (const event of reported) if (generation === this.#generation) event();
  }

  #onConnected(generation: number): void {
    this.#clearRetry();
    this.#state = 'connected';
    this.#emit({ type: 'connected' });
    this.#input((core, now) => core.connected(now), generation);
  }

  /** The transport closed or failed, or an attempt timed out: tell the core, then retry later. */
  #onClosed(reason: string): void {
    if (this.#state === 'stopped' || this.#state === 'off') return;
    this.#generation++;
    this.#connection = undefined;
    this.#clearRetry();
    this.counters.closes++;
    this.#emit({ type: 'disconnected', reason });
    this.#input((core, now) => core.disconnected(now));
    this.#scheduleRetry(reason);
  }

  #scheduleRetry(reason: string, delayMs?: number): void {
    if (this.#state === 'stopped' || this.#state === 'off') return;
    this.#state = 'waiting';
    this.#clearRetry();
    // Only a backed-off attempt counts: a boot, a remount or the first start does not.
    let delay = delayMs;
    if (delay === undefined) {
      delay = this.#reconnectDelay(this.#attempt);
      this.#attempt = Math.min(this.#attempt + 1, 30);
    }
    this.#options.log?.(`reconnecting in ${delay} ms (attempt ${this.#attempt}, ${reason})`);
    this.#retryTimer = this.#options.timers.set(() => this.#connect(), delay, 'retry');
  }

  #reconnectDelay(attempt: number): number {
    const custom = this.#options.reconnectDelayMs;
    if (custom !== undefined) return custom(attempt);
    return backoffDelayMs(attempt, this.#options.reconnectBaseMs ?? DEFAULT_RECONNECT_BASE_MS, this.#options.reconnectMaxMs ?? DEFAULT_RECONNECT_MAX_MS, this.#options.random);
  }

  #dropConnection(): void {
    const connection = this.#connection;
    this.#connection = undefined;
    this.#generation++;
    connection?.close();
  }

  /** A boot: the core is built from what the storage durably holds. */
  #mount(): boolean {
    const incarnation = this.#incarnation;
    try {
      const mounted = this.#options.storage.mount();
      if (!mounted.provisioned) throw new LockstepError('UNPROVISIONED', `${mounted.reason}: ${mounted.detail}`);
      this.#options.acceptMount?.(mounted.deviceId, mounted.keys);
      this.#finishScrub();
      // The power may have failed during the scrub: a dead device builds no core.
      if (incarnation !== this.#incarnation) return false;
      const storage = this.#options.storage;
      const credential = mounted.credential ?? storage.credential;
      this.#core = new DeviceCore({
        deviceId: mounted.deviceId,
        keys: mounted.keys,
        ...(credential === undefined ? {} : { credential }),
        recoveryPacer: this.#pacer,
        acceptsEnrolment: storage.storeCredential !== undefined,
        aead: this.#options.aead,
        random: this.#options.random,
        ...(this.#options.keyAgreement === undefined ? {} : { keyAgreement: this.#options.keyAgreement }),
        ...(this.#options.timing === undefined ? {} : { timing: this.#options.timing }),
      });
      this.counters.boots++;
      this.#emit({ type: 'booted', deviceId: mounted.deviceId, keys: mounted.keys });
      return true;
    } catch (error) {
      const failure = isLockstepError(error) ? error : new LockstepError('STORAGE_CORRUPT', describeError(error));
      this.#options.log?.(`keystore: ${failure.message}`);
      this.#emit({ type: 'bootFailed', error: failure });
      return false;
    }
  }

  /**
   * A scrub of retired keys that a power cut interrupted is finished at boot
   * (docs/KEYSTORE.md §4.1). Best effort: the keys mounted are sound either
   * way, and the next promotion scrubs again.
   */
  #finishScrub(): void {
    try {
      this.#options.storage.scrub?.();
    } catch (error) {
      this.#options.log?.(`keystore scrub: ${describeError(error)}; retried at the next rotation`);
    }
  }

  // ---- Run to completion (rule 1) ----

  /** `generation`: the input belongs to that connection (see Queued). */
  #input(input: Input, generation?: number): void {
    const queued: Queued = generation === undefined ? { run: input } : { run: input, generation };
    if (this.#running) {
      if (this.#queue.length >= MAX_QUEUED_INPUTS) this.#overflow();
      // The overflow dropped the connection this input came from; anything else still runs.
      if (generation === undefined || generation === this.#generation) this.#queue.push(queued);
      return;
    }
    this.#running = true;
    try {
      for (let next: Queued | undefined = queued; next !== undefined; next = this.#queue.shift()) {
        if (next.generation === undefined || next.generation === this.#generation) this.#runSafely(next.run);
      }
    } finally {
      this.#running = false;
      this.#queue = [];
      this.#flushQueued = false;
      this.#rescheduleCoreTimer();
    }
  }

  /**
   * The queue is full: the connection's input is what piles up, so the
   * connection goes (its queued input with it), and the core hears the
   * close; a tick, a flush or a persist completing still runs.
   */
  #overflow(): void {
    this.#options.log?.('input queue full; dropping the connection');
    this.#dropConnection();
    this.#queue = this.#queue.filter((entry) => entry.generation === undefined);
    this.#queueCoreClose();
  }

  /**
   * A core or host exception is a bug or a broken invariant, never a reason
   * to stop the device: log it, drop the connection, and start over with
   * backoff (the core's key state is only changed by persisted operations).
   */
  #runSafely(input: Input): void {
    const core = this.#core;
    if (core === undefined) return;
    const incarnation = this.#incarnation;
    try {
      this.#runActions(core, incarnation, input(core, this.#options.clock.now()));
    } catch (error) {
      if (incarnation !== this.#incarnation) return;
      this.#options.log?.(`error: ${describeError(error)}; dropping the connection`);
      if (this.#connection !== undefined || this.#state === 'connecting' || this.#state === 'connected') {
        this.#dropConnection();
        this.#queueCoreClose();
      }
    }
  }

  #runActions(core: DeviceCore, incarnation: number, actions: readonly DeviceAction[]): void {
    for (const action of actions) {
      if (incarnation !== this.#incarnation || this.#core !== core) return;
      this.#options.beforeAction?.(action);
      if (incarnation !== this.#incarnation || this.#core !== core) return;
      switch (action.type) {
        case 'transmit':
          this.#connection?.write(action.bytes);
          break;
        case 'close':
          this.#options.log?.(`closing: ${action.error.message}`);
          this.#dropConnection();
          this.#emit({ type: 'disconnected', reason: action.error.code });
          this.#queueCoreClose(action.reconnectNow === true);
          break;
        case 'persist':
          this.#runActions(core, incarnation, this.#persist(core, action.op));
          break;
        case 'event':
          this.#onCoreEvent(action.event);
          break;
      }
    }
  }

  /** Rule 3 for a close the loop carried out for the core (asked for, an overflow, an exception): report it, count it, back off. */
  #queueCoreClose(reconnectNow = false): void {
    this.#queue.push({
      run: (core, now) => {
        this.counters.closes++;
        if (reconnectNow) this.#scheduleRetry('recovery: reconnecting at once', 0);
        else this.#scheduleRetry('closed by the core');
        return core.disconnected(now);
      },
    });
  }

  /** Rule 2. */
  #persist(core: DeviceCore, op: DevicePersistOp): DeviceAction[] {
    const storage = this.#options.storage;
    let answer: unknown;
    const incarnation = this.#incarnation;
    try {
      answer = this.#write(storage, op);
    } catch (error) {
      if (incarnation !== this.#incarnation) return [];
      return this.#storageFailed(core, op, error);
    }
    if (incarnation !== this.#incarnation) return [];
    if (answer === PERSIST_LATER) {
      this.#persistOutstanding = op;
      return [];
    }
    return core.persisted(this.#options.clock.now());
  }

  #write(storage: KeyStorage, op: DevicePersistOp): unknown {
    switch (op.kind) {
      case 'storeFuture':
        return storage.storeFuture(op.id, op.key, op.shares);
      case 'promote':
        return storage.promote(op.id);
      case 'storeRecovered':
        if (storage.storeRecovered === undefined) throw new LockstepError('LOCAL_NOT_READY', 'this storage cannot store a recovered key');
        return storage.storeRecovered(op.id, op.key);
      case 'storeCredential':
        if (storage.storeCredential === undefined) throw new LockstepError('LOCAL_NOT_READY', 'this storage keeps no recovery credential');
        return storage.storeCredential(op.credential);
    }
  }

  /** DK7: the core halts; the loop drops it and remounts the storage before the next attempt. */
  #storageFailed(core: DeviceCore, op: DevicePersistOp, error: unknown): DeviceAction[] {
    const failure = isLockstepError(error) ? error : new LockstepError('STORAGE_CORRUPT', describeError(error));
    this.counters.storageFailures++;
    this.#options.log?.(`keystore ${op.kind} failed: ${failure.message}; remounting`);
    this.#emit({ type: 'storageFailed', op: op.kind, error: failure });
    const actions = core.persistFailed(failure);
    this.#core = undefined;
    // The connection goes with the halted core, whether it asked for the close (a session) or not (still
    // connecting); a new core is mounted on the next attempt.
    const close = actions.find((action) => action.type === 'close');
    const hadConnection = this.#connection !== undefined;
    this.#dropConnection();
    if (close !== undefined || hadConnection) {
      this.#emit({ type: 'disconnected', reason: close?.error.code ?? failure.code });
      this.counters.closes++;
    }
    this.#scheduleRetry('keystore failure', 0);
    return [];
  }

  #onCoreEvent(event: DeviceEvent): void {
    if (event.type === 'established') {
      this.#attempt = 0;
      this.counters.sessions++;
    }
    this.#emit(event);
  }

  #emit(event: DeviceLoopEvent): void {
    try {
      this.#options.onEvent?.(event);
    } catch (error) {
      // A handler's failure is the application's; the protocol carries on.
      this.#options.log?.(`event handler failed: ${describeError(error)}`);
    }
  }

  // ---- Timers ----

  #rescheduleCoreTimer(): void {
    const deadline = this.#core?.nextDeadline();
    if (deadline === this.#coreTimerAt) return;
    this.#clearCoreTimer();
    if (deadline === undefined) return;
    this.#coreTimerAt = deadline;
    const delay = Math.max(0, deadline - this.#options.clock.now());
    this.#coreTimer = this.#options.timers.set(
      () => {
        this.#coreTimer = undefined;
        this.#coreTimerAt = undefined;
        this.#input((core, now) => core.tick(now));
      },
      delay,
      'deadline',
    );
  }

  #clearCoreTimer(): void {
    if (this.#coreTimer !== undefined) this.#options.timers.clear(this.#coreTimer);
    this.#coreTimer = undefined;
    this.#coreTimerAt = undefined;
  }

  #clearRetry(): void {
    if (this.#retryTimer !== undefined) this.#options.timers.clear(this.#retryTimer);
    this.#retryTimer = undefined;
  }
}
