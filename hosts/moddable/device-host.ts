/**
 * The firmware's event loop around the sans-IO DeviceCore
 * (modules/device/device.ts): it owns the connection, the timers, the
 * keystore writes and the reconnect policy; the core owns the protocol.
 *
 * Rules (docs/PROTOCOL.md §8, the core's call order):
 * 1. Run to completion: every input (connection opened, bytes, closed,
 *    timer, app send) is handed to the core and all resulting actions are
 *    carried out, in order, before the next input is looked at. Inputs that
 *    arrive meanwhile (a write failing synchronously) wait in a small queue.
 * 2. `persist` is carried out on the keystore synchronously (each keystore
 *    operation is durable when it returns, docs/KEYSTORE.md), then
 *    `persisted()` is called and its actions run before anything else. If
 *    the keystore throws, `persistFailed()` halts the core; the host drops
 *    it, remounts the keystore through `createCore` and carries on.
 * 3. `close` closes the transport; every close (asked for or not) is
 *    reported to the core with `disconnected()`, then the next attempt is
 *    scheduled with exponential backoff and full jitter (modules/session/backoff.ts).
 *    The attempt counter resets only when a session is established, so a hub
 *    that accepts TCP and then rejects us is not hammered.
 * 4. Bounded: one connection, one core timer, one retry timer, an input
 *    queue of at most MAX_QUEUED_INPUTS.
 */
import type { DeviceAction, DeviceEvent } from '../../modules/device/actions';
import type { RandomSource } from '../../modules/crypto/primitives';
import { LockstepError, isLockstepError } from '../../modules/errors';
import { backoffDelayMs } from '../../modules/session/backoff';
import type { TransportEvents } from './socket-transport';

/** What the host needs of DeviceCore (so tests can also drive a scripted fake). */
export interface DeviceCoreLike {
  connected(now: number): DeviceAction[];
  receive(bytes: Uint8Array, now: number): DeviceAction[];
  disconnected(now: number): DeviceAction[];
  tick(now: number): DeviceAction[];
  persisted(now: number): DeviceAction[];
  persistFailed(error: LockstepError): DeviceAction[];
  send(payload: Uint8Array, now: number): DeviceAction[];
  nextDeadline(): number | undefined;
}

/** The keystore operations a persist action maps to (modules/keystore/keystore.ts). */
export interface KeyPersistence {
  storeFuture(id: number, key: Uint8Array): void;
  promote(): unknown;
}

export interface Connection {
  write(bytes: Uint8Array): void;
  /** Closes without calling back onClosed. */
  close(): void;
}

export interface HostTimers {
  set(callback: () => void, delayMs: number): unknown;
  clear(handle: unknown): void;
}

export type HostState = 'stopped' | 'connecting' | 'connected' | 'waiting';

export interface DeviceHostOptions {
  /** Mounts the keystore and builds a core from it; throws if it cannot (unprovisioned, I/O). */
  readonly createCore: () => { core: DeviceCoreLike; keystore: KeyPersistence };
  /** Opens a connection to the hub; the events arrive later, from the SDK. */
  readonly connect: (events: TransportEvents) => Connection;
  readonly now: () => number;
  readonly timers: HostTimers;
  /** Jitter for the backoff (not secret, but never Math.random: the simulator's is deterministic). */
  readonly random: RandomSource;
  readonly reconnectBaseMs: number;
  readonly reconnectMaxMs: number;
  readonly connectTimeoutMs: number;
  readonly log: (line: string) => void;
  readonly onEvent?: (event: DeviceEvent) => void;
}

export const MAX_QUEUED_INPUTS = 8;

type Input = (now: number) => DeviceAction[];

export class DeviceHost {
  readonly #options: DeviceHostOptions;
  #core: DeviceCoreLike | undefined;
  #keystore: KeyPersistence | undefined;
  #connection: Connection | undefined;
  /** Identifies the current connection, so late events from an old one are ignored. */
  #generation = 0;
  #state: HostState = 'stopped';
  #attempt = 0;
  #coreTimer: unknown;
  #coreTimerAt: number | undefined;
  #retryTimer: unknown;
  #queue: Input[] = [];
  #running = false;
  /** True while a session is established (app data flows now, not just queues). */
  established = false;
  /** Counters for traces and telemetry. */
  connects = 0;
  sessions = 0;
  closes = 0;

  constructor(options: DeviceHostOptions) {
    this.#options = options;
  }

  get state(): HostState {
    return this.#state;
  }

  start(): void {
    if (this.#state !== 'stopped') return;
    this.#state = 'waiting';
    this.#connect();
  }

  stop(): void {
    this.#clearRetry();
    this.#clearCoreTimer();
    this.#dropConnection();
    this.#core?.disconnected(this.#options.now());
    this.#state = 'stopped';
  }

  /**
   * Queues app data for the hub. Returns false if it was refused at once
   * (bounded outbox full, payload too long, no core); a send made from inside
   * an event handler runs after the current input and logs a refusal instead.
   */
  send(payload: Uint8Array): boolean {
    const core = this.#core;
    if (core === undefined) return false;
    let accepted = true;
    this.#input((now) => {
      try {
        return core.send(payload, now);
      } catch (error) {
        if (!isLockstepError(error, 'LOCAL_OUTBOX_FULL') && !isLockstepError(error, 'LOCAL_BAD_ARGUMENT')) throw error;
        accepted = false;
        this.#options.log(`send refused: ${error.message}`);
        return [];
      }
    });
    return accepted;
  }

  // ---- Connection lifecycle ----

  #connect(): void {
    this.#retryTimer = undefined;
    if (this.#state === 'stopped') return;
    if (this.#core === undefined && !this.#mountCore()) {
      this.#scheduleRetry('keystore not mounted');
      return;
    }
    const generation = ++this.#generation;
    this.#state = 'connecting';
    this.connects++;
    const events: TransportEvents = {
      onConnected: () => {
        if (generation === this.#generation) this.#onConnected();
      },
      onData: (bytes) => {
        const core = this.#core;
        if (generation === this.#generation && core !== undefined) this.#input((now) => core.receive(bytes, now));
      },
      onClosed: (reason) => {
        if (generation === this.#generation) this.#onClosed(reason);
      },
    };
    try {
      this.#connection = this.#options.connect(events);
    } catch (error) {
      this.#connection = undefined;
      this.#onClosed(`connect failed: ${describe(error)}`);
      return;
    }
    this.#retryTimer = this.#options.timers.set(() => {
      this.#retryTimer = undefined;
      if (generation === this.#generation && this.#state === 'connecting') {
        this.#dropConnection();
        this.#onClosed(`no connection after ${this.#options.connectTimeoutMs} ms`);
      }
    }, this.#options.connectTimeoutMs);
  }

  #onConnected(): void {
    this.#clearRetry();
    this.#state = 'connected';
    const core = this.#core;
    if (core === undefined) return;
    this.#options.log('connected');
    this.#input((now) => core.connected(now));
  }

  /** The transport closed or failed, or an attempt timed out: tell the core, then retry later. */
  #onClosed(reason: string): void {
    if (this.#state === 'stopped') return;
    this.#generation++;
    this.#connection = undefined;
    this.#clearRetry();
    this.closes++;
    this.established = false;
    this.#options.log(`connection closed: ${reason}`);
    const core = this.#core;
    if (core !== undefined) this.#input((now) => core.disconnected(now));
    this.#scheduleRetry(reason);
  }

  #scheduleRetry(reason: string): void {
    if (this.#state === 'stopped') return;
    this.#state = 'waiting';
    this.#clearRetry();
    const delay = backoffDelayMs(this.#attempt, this.#options.reconnectBaseMs, this.#options.reconnectMaxMs, this.#options.random);
    this.#attempt = Math.min(this.#attempt + 1, 30);
    this.#options.log(`reconnecting in ${delay} ms (attempt ${this.#attempt}, ${reason})`);
    this.#retryTimer = this.#options.timers.set(() => this.#connect(), delay);
  }

  #dropConnection(): void {
    const connection = this.#connection;
    this.#connection = undefined;
    this.#generation++;
    this.established = false;
    connection?.close();
  }

  #mountCore(): boolean {
    try {
      const { core, keystore } = this.#options.createCore();
      this.#core = core;
      this.#keystore = keystore;
      return true;
    } catch (error) {
      this.#options.log(`keystore: ${describe(error)}`);
      return false;
    }
  }

  // ---- Run to completion (rule 1) ----

  #input(input: Input): void {
    if (this.#running) {
      if (this.#queue.length >= MAX_QUEUED_INPUTS) {
        this.#options.log('host input queue full; dropping the connection');
        this.#dropConnection();
        return;
      }
      this.#queue.push(input);
      return;
    }
    this.#running = true;
    try {
      for (let next: Input | undefined = input; next !== undefined; next = this.#queue.shift()) this.#runSafely(next);
    } finally {
      this.#running = false;
      this.#queue = [];
      this.#rescheduleCoreTimer();
    }
  }

  /**
   * A core or host exception is a bug or a broken invariant, never a reason
   * to stop the device: log it, drop the connection, and start over with
   * backoff (the core's key state is only changed by persisted operations).
   */
  #runSafely(input: Input): void {
    try {
      this.#runActions(input(this.#options.now()));
    } catch (error) {
      this.#options.log(`error: ${describe(error)}; dropping the connection`);
      if (this.#connection !== undefined || this.#state === 'connecting' || this.#state === 'connected') {
        this.#dropConnection();
        this.#queue.push(() => this.#closedByCore());
      }
    }
  }

  #runActions(actions: DeviceAction[]): void {
    for (const action of actions) {
      switch (action.type) {
        case 'transmit':
          this.#connection?.write(action.bytes);
          break;
        case 'close':
          this.#options.log(`closing: ${action.error.message}`);
          this.#dropConnection();
          this.#queue.push(() => this.#closedByCore());
          break;
        case 'persist':
          this.#runActions(this.#persist(action.op));
          break;
        case 'event':
          this.#onCoreEvent(action.event);
          break;
      }
    }
  }

  /** Rule 3 for a close the core asked for: report it back, then back off. */
  #closedByCore(): DeviceAction[] {
    const core = this.#core;
    this.closes++;
    this.#scheduleRetry('closed by core');
    return core === undefined ? [] : core.disconnected(this.#options.now());
  }

  /** Rule 2. */
  #persist(op: Extract<DeviceAction, { type: 'persist' }>['op']): DeviceAction[] {
    const core = this.#core;
    const keystore = this.#keystore;
    if (core === undefined || keystore === undefined) return [];
    try {
      if (op.kind === 'storeFuture') keystore.storeFuture(op.id, op.key);
      else keystore.promote();
    } catch (error) {
      const failure = isLockstepError(error) ? error : new LockstepError('STORAGE_CORRUPT', describe(error));
      this.#options.log(`keystore ${op.kind} failed: ${failure.message}; remounting`);
      const actions = core.persistFailed(failure);
      this.#core = undefined;
      this.#keystore = undefined;
      return actions;
    }
    return core.persisted(this.#options.now());
  }

  #onCoreEvent(event: DeviceEvent): void {
    if (event.type === 'established') {
      this.#attempt = 0;
      this.sessions++;
      this.established = true;
    }
    this.#options.onEvent?.(event);
  }

  // ---- Timers ----

  #rescheduleCoreTimer(): void {
    const deadline = this.#core?.nextDeadline();
    if (deadline === this.#coreTimerAt) return;
    this.#clearCoreTimer();
    if (deadline === undefined) return;
    this.#coreTimerAt = deadline;
    const delay = Math.max(0, deadline - this.#options.now());
    this.#coreTimer = this.#options.timers.set(() => {
      this.#coreTimer = undefined;
      this.#coreTimerAt = undefined;
      const core = this.#core;
      if (core !== undefined) this.#input((now) => core.tick(now));
    }, delay);
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

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
