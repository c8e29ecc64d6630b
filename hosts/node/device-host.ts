/**
 * A device on Node: the portable device loop (modules/device/loop.ts) bound
 * to a real socket (TCP or TLS), Node timers, a monotonic clock and
 * node:crypto, with typed events for applications and tests. The loop owns
 * the protocol's driving (run to completion, keystore writes before
 * `persisted`, reconnect with backoff and jitter); this file only moves
 * bytes and turns the loop's events into EventEmitter events.
 *
 * Faults (cut connections, power cuts in flash writes) are not here: the
 * demo and the tests wrap the transport and the storage from tools/
 * (tools/demo/chaos.ts) and call `powerOff`/`powerOn`.
 */
import { EventEmitter } from 'node:events';
import { connect as connectTcp } from 'node:net';
import { connect as connectTls } from 'node:tls';
import { toHex } from '../../modules/bytes';
import type { Aead, KeyAgreementPrimitives, RandomSource } from '../../modules/crypto/primitives';
import type { DeviceTiming } from '../../modules/device/device';
import { DeviceLoop, type DeviceLoopEvent, type DeviceTransport } from '../../modules/device/loop';
import { LockstepError } from '../../modules/errors';
import type { KeyStorage } from '../../modules/keystore/key-storage';
import type { DeviceKeys } from '../../modules/platform/keys';
import { monotonicNow } from './clock';
import { nodeKeyAgreement } from './key-agreement';
import { nodeAead, nodeRandom } from './crypto';

export interface DeviceEndpoint {
  readonly host: string;
  readonly port: number;
  /** TLS with this trust anchor (PEM); plain TCP when absent. */
  readonly tls?: { readonly ca: string | Buffer; readonly servername?: string };
  /** The source address to connect from (a swarm spreads its devices over several 127.x addresses). */
  readonly localAddress?: string;
}

/** The hub over a Node socket; `endpoint` is asked again on every connection attempt. */
export function nodeSocketTransport(endpoint: DeviceEndpoint | (() => DeviceEndpoint)): DeviceTransport {
  return (events) => {
    const where = typeof endpoint === 'function' ? endpoint() : endpoint;
    const socket =
      where.tls === undefined
        ? connectTcp({ host: where.host, port: where.port, noDelay: true, ...(where.localAddress !== undefined ? { localAddress: where.localAddress } : {}) })
        : connectTls({ host: where.host, port: where.port, ca: where.tls.ca, ...(where.tls.servername ? { servername: where.tls.servername } : {}), ...(where.localAddress !== undefined ? { localAddress: where.localAddress } : {}) });
    let open = true;
    socket.setNoDelay(true);
    socket.once(where.tls === undefined ? 'connect' : 'secureConnect', () => open && events.onConnected());
    socket.on('data', (chunk: Buffer) => open && events.onData(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      if (!open) return;
      open = false;
      events.onClosed('connection closed');
    });
    return {
      write: (bytes) => {
        if (open) socket.write(bytes);
      },
      close: () => {
        open = false;
        // End after what was written (so a last frame still leaves), then drop.
        socket.end();
        setTimeout(() => socket.destroy(), 100).unref();
      },
    };
  };
}

export interface NodeDeviceOptions {
  readonly storage: KeyStorage;
  /** Where the hub is; a function is asked again on every connection attempt. */
  readonly endpoint: DeviceEndpoint | (() => DeviceEndpoint);
  /** Wraps the socket transport (fault injection from tools/). */
  readonly wrapTransport?: (transport: DeviceTransport) => DeviceTransport;
  readonly aead?: Aead;
  /** X25519 and HKDF for the dh rekey mode (docs/PROTOCOL.md §11); default node:crypto. */
  readonly keyAgreement?: KeyAgreementPrimitives;
  readonly random?: RandomSource;
  readonly timing?: Partial<DeviceTiming>;
  /** Reconnect backoff: attempt n waits in [d/2, d], d = min(max, initial·2^n) (docs/PROTOCOL.md §8.4). */
  readonly reconnectInitialMs?: number;
  readonly reconnectMaxMs?: number;
  readonly connectTimeoutMs?: number;
  /** Spacing of recovery attempts (docs/PROTOCOL.md §12.7): first, then doubling up to the max; default 30 s … 1 h. */
  readonly recoveryRetryInitialMs?: number;
  readonly recoveryRetryMaxMs?: number;
}

export interface NodeDeviceEvents {
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
  /** Power was lost (`powerOff`). */
  powerLost: [Record<string, never>];
  booted: [{ keys: DeviceKeys }];
  /** The keystore did not mount: the device stays offline (a bricked device) and retries the mount. */
  bootFailed: [{ message: string }];
  /** Recovery (docs/PROTOCOL.md §12): the hub answered NO_KEY (once per episode), with the ids this device holds. */
  hubLostKey: [{ activeKeyId: number; futureKeyId: number }];
  /** A recovered key is durable; the device reconnects under it at once. */
  recovered: [{ newKeyId: number }];
  /** A recovery attempt ended without a key; the next attempt waits `retryAfterMs`. */
  recoveryRefused: [{ reason: string; retryAfterMs: number }];
  /** The hub said IN_SYNC: no recovery needed. */
  recoveryInSync: [Record<string, never>];
  /** A credential was enrolled for hub static key `hubStaticId` (DK15). */
  enrolled: [{ hubStaticId: number }];
  /** An ENROL for another hub static key was refused (DK17). */
  staticKeyLocked: [Record<string, never>];
}

export class NodeDevice extends EventEmitter<NodeDeviceEvents> {
  readonly deviceId: string;
  /** The keystore holds a recovery credential (docs/PROTOCOL.md §12.6) at construction. */
  readonly hasCredential: boolean;
  readonly loop: DeviceLoop;
  /** Counters for status lines. */
  readonly counters = { connections: 0, powerCuts: 0, reboots: 0, promoted: 0 };

  constructor(options: NodeDeviceOptions) {
    super();
    const mounted = options.storage.mount();
    if (!mounted.provisioned) throw new LockstepError('UNPROVISIONED', `${mounted.reason}: ${mounted.detail}`);
    this.deviceId = toHex(mounted.deviceId);
    this.hasCredential = mounted.credential !== undefined;
    const socket = nodeSocketTransport(options.endpoint);
    this.loop = new DeviceLoop({
      storage: options.storage,
      transport: options.wrapTransport?.(socket) ?? socket,
      timers: {
        set: (callback, delayMs) => setTimeout(callback, delayMs),
        clear: (handle) => clearTimeout(handle as NodeJS.Timeout),
      },
      clock: { now: monotonicNow },
      random: options.random ?? nodeRandom,
      aead: options.aead ?? nodeAead,
      keyAgreement: options.keyAgreement ?? nodeKeyAgreement,
      ...(options.timing === undefined ? {} : { timing: options.timing }),
      reconnectBaseMs: options.reconnectInitialMs ?? 500,
      reconnectMaxMs: options.reconnectMaxMs ?? 30_000,
      ...(options.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: options.connectTimeoutMs }),
      ...(options.recoveryRetryInitialMs === undefined ? {} : { recoveryRetryInitialMs: options.recoveryRetryInitialMs }),
      ...(options.recoveryRetryMaxMs === undefined ? {} : { recoveryRetryMaxMs: options.recoveryRetryMaxMs }),
      onEvent: (event) => this.#onLoopEvent(event),
    });
  }

  /** The keys the running core holds (the last booted ones while off). */
  get keys(): DeviceKeys {
    const keys = this.loop.keys;
    if (keys === undefined) throw new LockstepError('LOCAL_NOT_READY', 'the device has no core (off or unmounted)');
    return keys;
  }

  get powered(): boolean {
    return this.loop.powered;
  }

  get online(): boolean {
    return this.loop.established;
  }

  start(): void {
    this.loop.start();
  }

  /** Closes the connection and stops reconnecting (until `start()` again); a reboot `powerCycle` scheduled is cancelled. */
  stop(): void {
    if (this.#bootTimer !== undefined) clearTimeout(this.#bootTimer);
    this.#bootTimer = undefined;
    this.loop.stop();
  }

  /** Application data to the hub: the id a later `delivered` event names; throws the core's typed error when refused. */
  send(payload: Uint8Array): number {
    const result = this.loop.send(payload);
    if (!result.ok) throw result.error;
    return result.messageId;
  }

  /** Power loss now: memory is gone, the connection is abandoned; it boots again after `bootDelayMs`. */
  powerCycle(bootDelayMs = 50): void {
    if (!this.loop.powered) return;
    this.powerOff();
    this.#bootTimer = setTimeout(() => {
      this.#bootTimer = undefined;
      this.powerOn();
    }, bootDelayMs);
    this.#bootTimer.unref();
  }

  #bootTimer: NodeJS.Timeout | undefined;

  powerOff(): void {
    if (!this.loop.powered) return;
    this.counters.powerCuts++;
    this.loop.powerOff();
    this.#emit('powerLost', {});
  }

  powerOn(): void {
    if (this.loop.powered) return;
    this.counters.reboots++;
    this.loop.powerOn();
  }

  #onLoopEvent(event: DeviceLoopEvent): void {
    switch (event.type) {
      case 'connected':
        this.counters.connections++;
        return;
      case 'disconnected':
        this.#emit('disconnected', { reason: event.reason });
        return;
      case 'booted':
        this.#emit('booted', { keys: event.keys });
        return;
      case 'bootFailed':
        this.#emit('bootFailed', { message: event.error.message });
        return;
      case 'established':
        this.#emit('established', { keyId: event.keyId });
        return;
      case 'data':
        this.#emit('data', { payload: event.payload });
        return;
      case 'delivered':
        this.#emit('delivered', { messageId: event.messageId });
        return;
      case 'keyStored':
        this.#emit('keyStored', { keyId: event.id });
        return;
      case 'keyPromoted':
        this.counters.promoted++;
        this.#emit('keyPromoted', { keyId: event.id });
        return;
      case 'rekeyRefused':
        this.#emit('rekeyRefused', { keyId: event.id, code: event.error.code });
        return;
      case 'rejected':
        this.#emit('rejected', { code: event.error.code });
        return;
      case 'peerError':
        this.#emit('peerError', { code: event.code, detail: event.detail });
        return;
      case 'hubLostKey':
        this.#emit('hubLostKey', { activeKeyId: event.activeKeyId, futureKeyId: event.futureKeyId });
        return;
      case 'recovered':
        this.#emit('recovered', { newKeyId: event.newKeyId });
        return;
      case 'recoveryRefused':
        this.#emit('recoveryRefused', { reason: event.reason, retryAfterMs: event.retryAfterMs });
        return;
      case 'recoveryInSync':
        this.#emit('recoveryInSync', {});
        return;
      case 'enrolled':
        this.#emit('enrolled', { hubStaticId: event.hubStaticId });
        return;
      case 'staticKeyLocked':
        this.#emit('staticKeyLocked', {});
        return;
      case 'connecting':
      case 'storageFailed':
        return;
    }
  }

  #emit<K extends keyof NodeDeviceEvents>(name: K, ...args: NodeDeviceEvents[K]): void {
    try {
      (this.emit as (name: K, ...args: NodeDeviceEvents[K]) => boolean)(name, ...args);
    } catch {
      // A listener's failure is the application's; the protocol carries on.
    }
  }
}
