/**
 * Runs a DeviceCore (modules/device/device.ts) on Node with a real socket
 * (TCP or TLS), a durable key storage (the flash keystore), reconnection
 * with exponential backoff and jitter, and the core's timers.
 *
 * Host rules (the core's doc comment):
 * - actions are applied in the order the core emitted them and never
 *   re-entrantly (sealed frames carry sequence numbers fixed at emission);
 *   an event listener that calls `send` is queued after the current actions;
 * - a `persist` action is carried out synchronously on the key storage and
 *   `persisted` is called before any other input (rule D1/D2: durable
 *   first). If the storage loses power mid-write (an injected PowerCut),
 *   the device is dead: nothing else of that action list happens, and it
 *   reboots from its flash image. Any other storage error halts the core
 *   (`persistFailed`) and also reboots: the state on flash is before or after.
 * - `now` is a monotonic millisecond clock.
 */
import { EventEmitter } from 'node:events';
import { connect as connectTcp, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { toHex } from '../../modules/bytes';
import type { Aead, RandomSource } from '../../modules/crypto/primitives';
import { DeviceCore, type DeviceAction, type DeviceEvent, type DevicePersistOp, type DeviceTiming } from '../../modules/device/device';
import { isLockstepError, LockstepError } from '../../modules/errors';
import type { DeviceKeys, KeySlot } from '../../modules/platform/keys';
import { backoffDelayMs } from '../../modules/session/backoff';
import { nodeAead, nodeRandom } from './crypto';

/** What the device host needs from its key storage (the flash keystore, or a test double). */
export interface DeviceKeyStorage {
  /** A boot: reads the durable state (restoring power first if it was cut). */
  mount(): { deviceId: Uint8Array; keys: DeviceKeys };
  /** Durable when it returns. */
  storeFuture(slot: KeySlot): void;
  /** Durable when it returns: the future key becomes active, the old one is erased. */
  promote(id: number): void;
}

export interface DeviceEndpoint {
  readonly host: string;
  readonly port: number;
  /** TLS with this trust anchor (PEM); plain TCP when absent. */
  readonly tls?: { readonly ca: string | Buffer; readonly servername?: string };
}

export interface DeviceChaos {
  /** Per connection: after how many bytes (both directions together) it is cut; undefined = never. */
  connectionCutAfter?(): number | undefined;
  /** Before each keystore write: may arm a power cut in the flash (the write then throws PowerCut). */
  beforePersist?(op: DevicePersistOp): void;
  /** After each keystore write that did not lose power (e.g. to disarm an unused cut). */
  afterPersist?(op: DevicePersistOp): void;
}

export interface DeviceHostOptions {
  readonly storage: DeviceKeyStorage;
  /** Where the hub is; a function is asked again on every connection attempt. */
  readonly endpoint: DeviceEndpoint | (() => DeviceEndpoint);
  readonly aead?: Aead;
  readonly random?: RandomSource;
  readonly timing?: Partial<DeviceTiming>;
  /** Reconnect backoff: attempt n waits in [b·2^n/2, b·2^n], capped (docs/PROTOCOL.md §8.4). */
  readonly reconnectInitialMs?: number;
  readonly reconnectMaxMs?: number;
  /** Time a reboot takes (power back on → first connection attempt). */
  readonly bootDelayMs?: number;
  readonly chaos?: DeviceChaos;
}

export interface DeviceHostEvents {
  established: [{ keyId: number }];
  disconnected: [{ reason: string }];
  data: [{ payload: Uint8Array }];
  /** The hub acknowledged the message `send` numbered `messageId` (ids restart at 1 after a reboot). */
  delivered: [{ messageId: number }];
  keyStored: [{ keyId: number }];
  keyPromoted: [{ keyId: number }];
  rekeyRefused: [{ keyId: number; code: string }];
  rejected: [{ code: string }];
  peerError: [{ code: number; detail: number }];
  /** Power was lost (injected cut or `powerCycle`); `unacknowledged` are the ids whose delivery is now unknown. */
  powerLost: [{ duringWrite: boolean; unacknowledged: number[] }];
  booted: [{ keys: DeviceKeys }];
  /** The keystore did not mount after a power loss: the device stays off (a bricked device). */
  bootFailed: [{ message: string }];
}

const monotonicNow = (): number => Math.floor(performance.now());

export class DeviceHost extends EventEmitter<DeviceHostEvents> {
  readonly deviceId: string;
  readonly #options: DeviceHostOptions;
  readonly #aead: Aead;
  readonly #random: RandomSource;
  #core: DeviceCore;
  #socket: Socket | undefined;
  /** Bytes left before the injected cut of this connection. */
  #cutBudget: number | undefined;
  #deadline: NodeJS.Timeout | undefined;
  #reconnect: NodeJS.Timeout | undefined;
  #attempt = 0;
  #running = false;
  #powered = true;
  #actions: DeviceAction[] = [];
  #actionAt = 0;
  #applying = false;
  /** send() was called while applying: the core's outbox is flushed once the current actions are done. */
  #flushWanted = false;
  /** Ids sent and not yet acknowledged (their fate is unknown after a power loss). */
  readonly #unacknowledged = new Set<number>();
  /** Counters for status lines. */
  readonly counters = { connections: 0, cuts: 0, powerCuts: 0, reboots: 0, promoted: 0 };

  constructor(options: DeviceHostOptions) {
    super();
    this.#options = options;
    this.#aead = options.aead ?? nodeAead;
    this.#random = options.random ?? nodeRandom;
    this.#core = this.#boot();
    this.deviceId = toHex(this.#core.deviceId);
  }

  get keys(): DeviceKeys {
    return this.#core.keys;
  }

  /** False between a power loss and the reboot. */
  get powered(): boolean {
    return this.#powered;
  }

  get online(): boolean {
    return this.#core.session === 'established';
  }

  get core(): DeviceCore {
    return this.#core;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#connect();
  }

  /** Stops for good: closes the connection, no reconnect. */
  stop(): void {
    this.#running = false;
    this.#clearTimers();
    this.#closeSocket();
  }

  /**
   * Application data to the hub; throws LOCAL_OUTBOX_FULL when OUTBOX_MESSAGES
   * are unacknowledged. Returns the id a later `delivered` event reports.
   */
  send(payload: Uint8Array): number {
    if (!this.#powered) throw new LockstepError('LOCAL_NOT_READY', 'device is off');
    // The core assigns the id and keeps the message (also while a write is outstanding). While
    // actions are being applied, frames sealed now would overtake sealed ones: queue, flush after.
    let id: number;
    if (this.#applying) {
      const queued = this.#core.enqueue(payload);
      if (queued.error !== undefined) throw queued.error;
      id = queued.messageId;
      this.#flushWanted = true;
    } else {
      const sent = this.#core.send(payload, monotonicNow());
      if (!sent.ok) throw sent.error;
      id = sent.messageId;
      this.#apply(sent.actions);
    }
    this.#unacknowledged.add(id);
    return id;
  }

  /** Simulated power loss now (not during a write), then a reboot from the keystore. */
  powerCycle(): void {
    this.#powerLost(false);
  }

  // ---- Boot and power ----

  #boot(): DeviceCore {
    const mounted = this.#options.storage.mount();
    const core = new DeviceCore({
      deviceId: mounted.deviceId,
      keys: mounted.keys,
      aead: this.#aead,
      random: this.#random,
      ...(this.#options.timing ? { timing: this.#options.timing } : {}),
    });
    this.#unacknowledged.clear();
    this.#flushWanted = false;
    return core;
  }

  #powerLost(duringWrite: boolean): void {
    if (!this.#powered) return;
    this.#powered = false;
    this.counters.powerCuts++;
    // Nothing else the dead device "would have done" happens.
    this.#actions = [];
    this.#actionAt = 0;
    this.#clearTimers();
    this.#closeSocket();
    const unacknowledged = [...this.#unacknowledged];
    this.#safeEmit('powerLost', { duringWrite, unacknowledged });
    this.#reconnect = setTimeout(() => this.#reboot(), this.#options.bootDelayMs ?? 50);
  }

  #reboot(): void {
    this.#reconnect = undefined;
    try {
      this.#core = this.#boot();
    } catch (error) {
      this.#safeEmit('bootFailed', { message: (error as Error).message });
      return;
    }
    this.#powered = true;
    this.counters.reboots++;
    this.#attempt = 0;
    this.#safeEmit('booted', { keys: this.#core.keys });
    if (this.#running) this.#connect();
  }

  // ---- Transport ----

  #connect(): void {
    this.#reconnect = undefined;
    if (!this.#running || !this.#powered) return;
    const endpoint = typeof this.#options.endpoint === 'function' ? this.#options.endpoint() : this.#options.endpoint;
    const socket =
      endpoint.tls === undefined
        ? connectTcp({ host: endpoint.host, port: endpoint.port, noDelay: true })
        : connectTls({ host: endpoint.host, port: endpoint.port, ca: endpoint.tls.ca, ...(endpoint.tls.servername ? { servername: endpoint.tls.servername } : {}) });
    this.#socket = socket;
    this.#cutBudget = this.#options.chaos?.connectionCutAfter?.();
    socket.setNoDelay(true);
    socket.once(endpoint.tls === undefined ? 'connect' : 'secureConnect', () => {
      if (this.#socket !== socket) return;
      this.counters.connections++;
      this.#apply(this.#core.connected(monotonicNow()));
    });
    socket.on('data', (chunk: Buffer) => {
      if (this.#socket === socket) this.#onData(chunk);
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      if (this.#socket !== socket) return;
      this.#socket = undefined;
      this.#transportClosed('connection closed');
    });
  }

  #onData(chunk: Uint8Array): void {
    let input = chunk;
    let cut = false;
    if (this.#cutBudget !== undefined) {
      if (input.length >= this.#cutBudget) {
        input = input.subarray(0, this.#cutBudget);
        cut = true;
      }
      this.#cutBudget -= input.length;
    }
    if (input.length > 0) this.#apply(this.#core.receive(input, monotonicNow()));
    if (cut) this.#cut();
  }

  #write(bytes: Uint8Array): void {
    const socket = this.#socket;
    if (socket === undefined) return;
    let output = bytes;
    let cut = false;
    if (this.#cutBudget !== undefined) {
      if (output.length >= this.#cutBudget) {
        output = output.subarray(0, this.#cutBudget);
        cut = true;
      }
      this.#cutBudget -= output.length;
    }
    if (output.length > 0) socket.write(output);
    if (cut) this.#cut();
  }

  /** The injected cut: the connection ends exactly after the budgeted byte. */
  #cut(): void {
    if (this.#socket === undefined) return;
    this.counters.cuts++;
    const socket = this.#socket;
    // Half-close after what was written, so the cut lands at the byte position, then drop it.
    socket.end();
    setTimeout(() => socket.destroy(), 100).unref();
    this.#socket = undefined;
    this.#transportClosed('injected cut');
  }

  #transportClosed(reason: string): void {
    if (!this.#powered) return;
    this.#apply(this.#core.disconnected(monotonicNow()));
    this.#safeEmit('disconnected', { reason });
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (!this.#running || !this.#powered || this.#reconnect !== undefined) return;
    if (this.#deadline !== undefined) clearTimeout(this.#deadline);
    this.#deadline = undefined;
    const delay = backoffDelayMs(this.#attempt++, this.#options.reconnectInitialMs ?? 500, this.#options.reconnectMaxMs ?? 30_000, this.#random);
    this.#reconnect = setTimeout(() => this.#connect(), delay);
  }

  #closeSocket(): void {
    const socket = this.#socket;
    this.#socket = undefined;
    socket?.destroy();
    if (this.#powered && this.#core.session !== 'offline') this.#apply(this.#core.disconnected(monotonicNow()));
  }

  #clearTimers(): void {
    if (this.#deadline !== undefined) clearTimeout(this.#deadline);
    if (this.#reconnect !== undefined) clearTimeout(this.#reconnect);
    this.#deadline = undefined;
    this.#reconnect = undefined;
  }

  // ---- Actions ----

  #apply(actions: readonly DeviceAction[]): void {
    for (const action of actions) this.#actions.push(action);
    if (this.#applying) return;
    this.#applying = true;
    try {
      while (this.#actionAt < this.#actions.length) this.#perform(this.#actions[this.#actionAt++] as DeviceAction);
    } finally {
      this.#actions = [];
      this.#actionAt = 0;
      this.#applying = false;
    }
    this.#flushQueuedSends();
    this.#armDeadline();
  }

  #perform(action: DeviceAction): void {
    switch (action.type) {
      case 'transmit':
        this.#write(action.bytes);
        return;
      case 'close': {
        // The core already went offline; drop the transport and reconnect later.
        const socket = this.#socket;
        this.#socket = undefined;
        socket?.destroy();
        this.#safeEmit('disconnected', { reason: action.error.code });
        this.#scheduleReconnect();
        return;
      }
      case 'persist':
        this.#persist(action.op);
        return;
      case 'event':
        this.#onCoreEvent(action.event);
        return;
    }
  }

  #persist(op: DevicePersistOp): void {
    try {
      this.#options.chaos?.beforePersist?.(op);
      if (op.kind === 'storeFuture') this.#options.storage.storeFuture({ id: op.id, key: op.key });
      else this.#options.storage.promote(op.id);
    } catch (error) {
      if (error instanceof Error && error.name === 'PowerCut') {
        this.#powerLost(true);
        return;
      }
      // Unknown outcome: halt the core, then remount (a reboot) to learn what flash holds.
      const failure = isLockstepError(error) ? error : new LockstepError('STORAGE_CORRUPT', (error as Error).message);
      this.#apply(this.#core.persistFailed(failure));
      this.#powerLost(true);
      return;
    }
    this.#options.chaos?.afterPersist?.(op);
    this.#apply(this.#core.persisted(monotonicNow()));
  }

  #onCoreEvent(event: DeviceEvent): void {
    switch (event.type) {
      case 'established':
        this.#attempt = 0;
        this.#safeEmit('established', { keyId: event.keyId });
        return;
      case 'data':
        this.#safeEmit('data', { payload: event.payload });
        return;
      case 'delivered':
        this.#unacknowledged.delete(event.messageId);
        this.#safeEmit('delivered', { messageId: event.messageId });
        return;
      case 'keyStored':
        this.#safeEmit('keyStored', { keyId: event.id });
        return;
      case 'keyPromoted':
        this.counters.promoted++;
        this.#safeEmit('keyPromoted', { keyId: event.id });
        return;
      case 'rekeyRefused':
        this.#safeEmit('rekeyRefused', { keyId: event.id, code: event.error.code });
        return;
      case 'rejected':
        this.#safeEmit('rejected', { code: event.error.code });
        return;
      case 'peerError':
        this.#safeEmit('peerError', { code: event.code, detail: event.detail });
        return;
    }
  }

  #flushQueuedSends(): void {
    if (!this.#flushWanted || !this.#powered || this.#applying) return;
    this.#flushWanted = false;
    this.#apply(this.#core.flush(monotonicNow()));
  }

  /** One timer at the core's next deadline (handshake, keepalive, idle). */
  #armDeadline(): void {
    if (this.#deadline !== undefined) clearTimeout(this.#deadline);
    this.#deadline = undefined;
    if (!this.#powered) return;
    const at = this.#core.nextDeadline();
    if (at === undefined) return;
    this.#deadline = setTimeout(() => {
      this.#deadline = undefined;
      if (this.#powered) this.#apply(this.#core.tick(monotonicNow()));
    }, Math.max(0, at - monotonicNow()));
  }

  #safeEmit<K extends keyof DeviceHostEvents>(name: K, ...args: DeviceHostEvents[K]): void {
    try {
      (this.emit as (name: K, ...args: DeviceHostEvents[K]) => boolean)(name, ...args);
    } catch {
      // A listener's failure is the application's; the protocol carries on.
    }
  }
}
