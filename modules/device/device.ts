/**
 * The device's protocol state machine (docs/PROTOCOL.md §8.1), sans-IO.
 *
 * Call order: `connected` when a transport opens, then any number of
 * `receive` / `tick` / `send`, then `disconnected`; after every `persist`
 * action the host makes the keystore change durable and calls `persisted`
 * before any other input (the core holds the rest of the received bytes
 * meanwhile and refuses new input with LOCAL_BUSY). Every method returns
 * the actions to carry out, in order. `now` is a non-decreasing count of
 * milliseconds; the core never reads a clock or a random source itself.
 *
 * Key slots (docs/PROTOCOL.md §5): `active` and at most one `future`. They
 * change only in #keyStored (rule D1: the future key is durable before it is
 * acknowledged) and #keyPromoted (rule D2: on the first hub frame that
 * authenticates under the future key). The device seals with the newest key
 * it holds (rule D3) and opens frames under either key.
 *
 * Rule: a frame that fails any check is discarded, reported as a `rejected`
 * event, and changes no state; after MAX_REJECTED_FRAMES in one connection
 * the connection is closed.
 */
import { bytesEqual, constantTimeEqual, toHex } from '../bytes';
import type { Aead, RandomSource } from '../crypto/primitives';
import { asLockstepError, LockstepError } from '../errors';
import type { DeviceKeys, KeySlot } from '../platform/keys';
import { checkSlot, copySlot, DEVICE_ID_BYTES } from '../platform/keys';
import {
  HANDSHAKE_TIMEOUT_MS,
  IDLE_TIMEOUT_MS,
  IV_BYTES,
  KEEPALIVE_INTERVAL_MS,
  MAX_SEQUENCE,
  MessageType,
  NONCE_BYTES,
  NO_KEY_ID,
  WireError,
} from '../protocol/constants';
import { decodeChallenge, openFrame, sealFrame } from '../protocol/frame';
import { FrameReader, withLengthPrefix } from '../protocol/framing';
import { decodeHeader, type Header } from '../protocol/header';
import { STREAM_ID_BYTES, type Message } from '../protocol/messages';
import { AppChannel } from '../session/app-channel';
import type { DeviceAction, DeviceEvent, DevicePersistOp } from './actions';
import { type DeviceSessionState, nextDeviceSessionState } from './table';

export type { DeviceAction, DeviceEvent, DevicePersistOp } from './actions';

export const MAX_REJECTED_FRAMES = 8;

export interface DeviceTiming {
  readonly handshakeTimeoutMs: number;
  readonly keepaliveIntervalMs: number;
  readonly idleTimeoutMs: number;
}

export interface DeviceConfig {
  readonly deviceId: Uint8Array;
  readonly keys: DeviceKeys;
  readonly aead: Aead;
  readonly random: RandomSource;
  readonly timing?: Partial<DeviceTiming>;
}

/** A frame authenticated under the future key waits here while the promotion persists. */
interface DeferredMessage {
  readonly message: Message;
  readonly keyId: number;
}

export class DeviceCore {
  readonly deviceId: Uint8Array;
  readonly #aead: Aead;
  readonly #random: RandomSource;
  readonly #timing: DeviceTiming;
  readonly #channel: AppChannel;
  readonly #reader = new FrameReader();

  #active: KeySlot;
  #future: KeySlot | undefined;

  #session: DeviceSessionState = 'offline';
  #hubNonce: Uint8Array | undefined;
  #deviceNonce: Uint8Array | undefined;
  #sequenceIn = 0;
  #sequenceOut = 0;
  #rejectedFrames = 0;
  #connectedAt = 0;
  #lastReceivedAt = 0;
  #lastSentAt = 0;

  /** Received bytes not yet parsed (a reference to the host's chunk). */
  #input: Uint8Array | undefined;
  #inputAt = 0;
  #persisting: DevicePersistOp | undefined;
  #deferred: DeferredMessage | undefined;
  #halted = false;

  constructor(config: DeviceConfig) {
    if (config.deviceId.length !== DEVICE_ID_BYTES) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'device id is 8 bytes');
    checkSlot(config.keys.active);
    if (config.keys.future !== undefined) {
      checkSlot(config.keys.future);
      if (config.keys.future.id <= config.keys.active.id) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'future id must exceed active id');
    }
    this.deviceId = config.deviceId.slice();
    this.#aead = config.aead;
    this.#random = config.random;
    this.#timing = {
      handshakeTimeoutMs: config.timing?.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
      keepaliveIntervalMs: config.timing?.keepaliveIntervalMs ?? KEEPALIVE_INTERVAL_MS,
      idleTimeoutMs: config.timing?.idleTimeoutMs ?? IDLE_TIMEOUT_MS,
    };
    this.#active = copySlot(config.keys.active);
    this.#future = config.keys.future === undefined ? undefined : copySlot(config.keys.future);
    this.#channel = new AppChannel(this.#randomBytes(STREAM_ID_BYTES));
  }

  // ---- Observers ----

  /** A copy of the key slots (the core wipes retired keys in place). */
  get keys(): DeviceKeys {
    const active = copySlot(this.#active);
    return this.#future === undefined ? { active } : { active, future: copySlot(this.#future) };
  }
  get session(): DeviceSessionState {
    return this.#session;
  }
  get persisting(): DevicePersistOp | undefined {
    return this.#persisting;
  }
  get outboxLength(): number {
    return this.#channel.outboxLength;
  }
  /** The key id this device seals with (rule D3: the newest it holds). */
  get sealKeyId(): number {
    return (this.#future ?? this.#active).id;
  }

  /** Frames rejected since the last accepted one (bounds abuse; not protocol state). */
  get rejectedFrames(): number {
    return this.#rejectedFrames;
  }

  /**
   * Every piece of protocol state, as plain data: tests assert that a
   * rejected input leaves it unchanged, and traces print it.
   */
  snapshot(): Record<string, unknown> {
    return {
      session: this.#session,
      activeKeyId: this.#active.id,
      activeKey: toHex(this.#active.key),
      futureKeyId: this.#future?.id,
      futureKey: this.#future === undefined ? undefined : toHex(this.#future.key),
      hubNonce: this.#hubNonce === undefined ? undefined : toHex(this.#hubNonce),
      deviceNonce: this.#deviceNonce === undefined ? undefined : toHex(this.#deviceNonce),
      sequenceIn: this.#sequenceIn,
      sequenceOut: this.#sequenceOut,
      lastReceivedAt: this.#lastReceivedAt,
      lastSentAt: this.#lastSentAt,
      outbox: this.#channel.outboxLength,
      channel: this.#channel.snapshot(),
      persisting: this.#persisting?.kind,
      halted: this.#halted,
      readerIdle: this.#reader.idle,
    };
  }

  nextDeadline(): number | undefined {
    if (this.#persisting !== undefined || this.#halted) return undefined;
    switch (this.#session) {
      case 'offline':
        return undefined;
      case 'awaitingChallenge':
      case 'awaitingWelcome':
        return this.#connectedAt + this.#timing.handshakeTimeoutMs;
      case 'established':
        return Math.min(this.#lastReceivedAt + this.#timing.idleTimeoutMs, this.#lastSentAt + this.#timing.keepaliveIntervalMs);
    }
  }

  // ---- Inputs ----

  connected(now: number): DeviceAction[] {
    this.#assertAcceptingInput();
    const out: DeviceAction[] = [];
    this.#resetSession();
    this.#session = nextDeviceSessionState(this.#session, 'connected');
    this.#connectedAt = now;
    this.#lastReceivedAt = now;
    this.#lastSentAt = now;
    return out;
  }

  disconnected(_now: number): DeviceAction[] {
    // Idempotent: the host reports every transport close, including ones the core asked for.
    if (this.#session !== 'offline') this.#session = nextDeviceSessionState(this.#session, 'disconnected');
    this.#resetSession();
    return [];
  }

  receive(bytes: Uint8Array, now: number): DeviceAction[] {
    this.#assertAcceptingInput();
    if (this.#session === 'offline') throw new LockstepError('LOCAL_NOT_READY', 'receive() without a connection');
    this.#input = bytes;
    this.#inputAt = 0;
    const out: DeviceAction[] = [];
    this.#drain(now, out);
    return out;
  }

  tick(now: number): DeviceAction[] {
    const out: DeviceAction[] = [];
    if (this.#persisting !== undefined || this.#halted) return out;
    switch (this.#session) {
      case 'awaitingChallenge':
      case 'awaitingWelcome':
        if (now - this.#connectedAt >= this.#timing.handshakeTimeoutMs) this.#close(new LockstepError('TIMEOUT', 'handshake'), out);
        break;
      case 'established':
        if (now - this.#lastReceivedAt >= this.#timing.idleTimeoutMs) {
          this.#close(new LockstepError('TIMEOUT', 'idle'), out);
        } else if (now - this.#lastSentAt >= this.#timing.keepaliveIntervalMs) {
          this.#sendSealed({ type: MessageType.PING }, now, out);
        }
        break;
      case 'offline':
        break;
    }
    return out;
  }

  /** Application data to the hub. Throws LOCAL_OUTBOX_FULL when the bounded outbox is full. */
  send(payload: Uint8Array, now: number): DeviceAction[] {
    if (this.#halted) throw new LockstepError('LOCAL_NOT_READY', 'device core halted');
    this.#channel.enqueue(payload);
    const out: DeviceAction[] = [];
    if (this.#session === 'established' && this.#persisting === undefined) this.#flushOutbox(now, out);
    return out;
  }

  /** The last persist action is durable. */
  persisted(now: number): DeviceAction[] {
    const op = this.#persisting;
    if (op === undefined) throw new LockstepError('LOCAL_NOT_READY', 'no persist outstanding');
    this.#persisting = undefined;
    const out: DeviceAction[] = [];
    if (op.kind === 'storeFuture') this.#keyStored(op, now, out);
    else this.#keyPromoted(op, now, out);
    // App data queued by send() while the write was outstanding goes out now (docs/VERIFICATION.md finding F2).
    if (this.#session === 'established' && this.#persisting === undefined) this.#flushOutbox(now, out);
    this.#drain(now, out);
    return out;
  }

  /**
   * The keystore failed to complete the last persist. Which state it left is
   * unknown to the core (before or after), so the core halts: the host must
   * remount the keystore and build a new core from what it returns.
   */
  persistFailed(error: LockstepError): DeviceAction[] {
    if (this.#persisting === undefined) throw new LockstepError('LOCAL_NOT_READY', 'no persist outstanding');
    this.#persisting = undefined;
    this.#deferred = undefined;
    this.#halted = true;
    const out: DeviceAction[] = [];
    if (this.#session !== 'offline') this.#close(error, out);
    return out;
  }

  // ---- Key transitions (the only two places that change #active/#future) ----

  /**
   * Rule D1: the future key is durable now, so the device may prove it holds
   * it. From here on it seals with the future key (rule D3), starting with
   * the REKEY_ACK.
   */
  #keyStored(op: Extract<DevicePersistOp, { kind: 'storeFuture' }>, now: number, out: DeviceAction[]): void {
    this.#future = { id: op.id, key: op.key.slice() };
    out.push(event({ type: 'keyStored', id: op.id }));
    if (this.#session === 'established') this.#sendSealed({ type: MessageType.REKEY_ACK, newKeyId: op.id }, now, out);
  }

  /**
   * Rule D2: a hub frame authenticated under the future key proves the hub
   * has persisted its promotion (hub rule H2), so the old active key can
   * never be needed again; the keystore has erased it.
   */
  #keyPromoted(op: Extract<DevicePersistOp, { kind: 'promote' }>, now: number, out: DeviceAction[]): void {
    const future = this.#future;
    if (future === undefined || future.id !== op.id) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'promotion without matching future key');
    this.#active.key.fill(0);
    this.#active = future;
    this.#future = undefined;
    out.push(event({ type: 'keyPromoted', id: op.id }));
    const deferred = this.#deferred;
    this.#deferred = undefined;
    if (deferred !== undefined) this.#dispatch(deferred.message, deferred.keyId, now, out);
  }

  // ---- Frame handling ----

  #drain(now: number, out: DeviceAction[]): void {
    while (this.#persisting === undefined && this.#input !== undefined && this.#session !== 'offline') {
      if (this.#inputAt >= this.#input.length) break;
      const result = this.#reader.feed(this.#input, this.#inputAt);
      this.#inputAt += result.consumed;
      if (result.error !== undefined) this.#reject(result.error, out);
      else if (result.frame !== undefined) this.#handleFrame(result.frame, now, out);
    }
    if (this.#input !== undefined && (this.#inputAt >= this.#input.length || this.#session === 'offline')) {
      this.#input = undefined;
      this.#inputAt = 0;
    }
  }

  #handleFrame(frame: Uint8Array, now: number, out: DeviceAction[]): void {
    let header: Header;
    try {
      header = decodeHeader(frame);
    } catch (error) {
      this.#reject(asLockstepError(error), out);
      return;
    }
    if (header.type === MessageType.CHALLENGE) {
      this.#handleChallenge(frame, header, now, out);
      return;
    }
    const verdict = this.#checkSealedHeader(header);
    if (verdict !== undefined) {
      this.#reject(verdict, out);
      return;
    }
    const slot = this.#lookupKey(header.keyId);
    if (slot === undefined) {
      this.#reject(new LockstepError('UNKNOWN_KEY_ID', `key id ${header.keyId}`), out);
      return;
    }
    let message: Message;
    try {
      message = openFrame(this.#aead, slot.key, frame, header);
      this.#checkMessage(message, header);
    } catch (error) {
      this.#reject(asLockstepError(error), out);
      return;
    }
    // Authenticated and well-formed: from here the frame counts.
    this.#sequenceIn++;
    this.#lastReceivedAt = now;
    this.#rejectedFrames = 0;
    if (this.#future !== undefined && header.keyId === this.#future.id) {
      this.#deferred = { message, keyId: header.keyId };
      this.#startPersist({ kind: 'promote', id: header.keyId }, out);
      return;
    }
    this.#dispatch(message, header.keyId, now, out);
  }

  #handleChallenge(frame: Uint8Array, header: Header, now: number, out: DeviceAction[]): void {
    if (this.#session !== 'awaitingChallenge') {
      this.#reject(new LockstepError('UNEXPECTED_MESSAGE', `CHALLENGE in ${this.#session}`), out);
      return;
    }
    let hubNonce: Uint8Array;
    try {
      hubNonce = decodeChallenge(frame, header);
    } catch (error) {
      this.#reject(asLockstepError(error), out);
      return;
    }
    this.#session = nextDeviceSessionState(this.#session, 'challenge');
    this.#hubNonce = hubNonce;
    this.#deviceNonce = this.#randomBytes(NONCE_BYTES);
    this.#sequenceIn = 1;
    this.#lastReceivedAt = now;
    this.#sendSealed(
      {
        type: MessageType.HELLO,
        deviceNonce: this.#deviceNonce,
        activeKeyId: this.#active.id,
        futureKeyId: this.#future?.id ?? NO_KEY_ID,
      },
      now,
      out,
    );
  }

  /** Checks that need no key: state, addressing, session binding, order. */
  #checkSealedHeader(header: Header): LockstepError | undefined {
    if (!header.fromHub) return new LockstepError('BAD_HEADER', 'frame sealed by a device (reflected?)');
    const allowed = ALLOWED_FROM_HUB[this.#session];
    if (!allowed.has(header.type)) return new LockstepError('UNEXPECTED_MESSAGE', `type 0x${header.type.toString(16)} in ${this.#session}`);
    if (!bytesEqual(header.deviceId, this.deviceId)) return new LockstepError('BAD_HEADER', 'frame for another device');
    if (this.#hubNonce === undefined || !bytesEqual(header.sessionId, this.#hubNonce)) return new LockstepError('BAD_SESSION');
    if (header.sequence !== this.#sequenceIn) return new LockstepError('BAD_SEQUENCE', `got ${header.sequence}, expected ${this.#sequenceIn}`);
    return undefined;
  }

  /** Checks of an authenticated body against its header and the session. */
  #checkMessage(message: Message, header: Header): void {
    if (message.type === MessageType.WELCOME) {
      if (this.#deviceNonce === undefined || !bytesEqual(message.deviceNonce, this.#deviceNonce)) {
        throw new LockstepError('BAD_SESSION', 'WELCOME does not echo our nonce');
      }
      if (message.hubKeyId !== header.keyId) throw new LockstepError('BAD_PAYLOAD', 'WELCOME key id mismatch');
    } else if (message.type === MessageType.CONFIRM) {
      if (message.keyId !== header.keyId) throw new LockstepError('BAD_PAYLOAD', 'CONFIRM must be sealed under the key it confirms');
    }
  }

  #lookupKey(keyId: number): KeySlot | undefined {
    if (keyId === this.#active.id) return this.#active;
    if (this.#future !== undefined && keyId === this.#future.id) return this.#future;
    return undefined;
  }

  /** Acts on an authenticated message; any promotion it implied is done. */
  #dispatch(message: Message, _keyId: number, now: number, out: DeviceAction[]): void {
    switch (message.type) {
      case MessageType.WELCOME:
        this.#session = nextDeviceSessionState(this.#session, 'welcome');
        out.push(event({ type: 'established', keyId: this.sealKeyId }));
        this.#channel.restartSession();
        this.#flushOutbox(now, out);
        return;
      case MessageType.REKEY:
        this.#handleRekey(message.newKeyId, message.newKey, now, out);
        return;
      case MessageType.CONFIRM:
        // The promotion (if any) already happened by rule D2; nothing else to do.
        return;
      case MessageType.DATA: {
        const verdict = this.#channel.receive(message.streamId, message.messageId);
        if (verdict.deliver) out.push(event({ type: 'data', payload: message.payload }));
        this.#sendSealed({ type: MessageType.DATA_ACK, streamId: message.streamId, messageId: verdict.ackId }, now, out);
        return;
      }
      case MessageType.DATA_ACK:
        for (const messageId of this.#channel.acknowledge(message.streamId, message.messageId)) {
          out.push(event({ type: 'delivered', messageId }));
        }
        return;
      case MessageType.PING:
        this.#sendSealed({ type: MessageType.PONG }, now, out);
        return;
      case MessageType.PONG:
        return;
      case MessageType.ERROR:
        out.push(event({ type: 'peerError', code: message.code, detail: message.detail }));
        return;
      default:
        // Unreachable: ALLOWED_FROM_HUB filtered the type before decryption.
        throw new LockstepError('UNEXPECTED_MESSAGE', `type 0x${message.type.toString(16)}`);
    }
  }

  /**
   * Rules D4/D5 (docs/PROTOCOL.md §8.1): store a newer key once; answer a
   * repeated offer of the same (id, key) idempotently; refuse anything else.
   */
  #handleRekey(id: number, key: Uint8Array, now: number, out: DeviceAction[]): void {
    const future = this.#future;
    if (id <= this.#active.id) {
      this.#refuseRekey(id, WireError.REKEY_ID_NOT_NEWER, new LockstepError('REKEY_REJECTED', `id ${id} not above active ${this.#active.id}`), now, out);
    } else if (future !== undefined) {
      if (future.id === id && constantTimeEqual(future.key, key)) {
        this.#sendSealed({ type: MessageType.REKEY_ACK, newKeyId: id }, now, out);
      } else {
        this.#refuseRekey(id, WireError.REKEY_CONFLICT, new LockstepError('REKEY_REJECTED', `future key ${future.id} already held`), now, out);
      }
    } else {
      this.#startPersist({ kind: 'storeFuture', id, key: key.slice() }, out);
    }
    key.fill(0);
  }

  #refuseRekey(id: number, code: WireError, error: LockstepError, now: number, out: DeviceAction[]): void {
    out.push(event({ type: 'rekeyRefused', id, error }));
    this.#sendSealed({ type: MessageType.ERROR, code, detail: id }, now, out);
  }

  // ---- Output helpers ----

  #flushOutbox(now: number, out: DeviceAction[]): void {
    for (const entry of this.#channel.takeUnsent()) {
      this.#sendSealed({ type: MessageType.DATA, streamId: this.#channel.streamId, messageId: entry.messageId, payload: entry.payload }, now, out);
    }
  }

  #sendSealed(message: Message, now: number, out: DeviceAction[]): void {
    if (this.#hubNonce === undefined || this.#session === 'offline') return;
    if (this.#sequenceOut > MAX_SEQUENCE) {
      this.#close(new LockstepError('BAD_SEQUENCE', 'sequence space exhausted; reconnect'), out);
      return;
    }
    const slot = this.#future ?? this.#active;
    const frame = sealFrame({
      aead: this.#aead,
      key: slot.key,
      iv: this.#randomBytes(IV_BYTES),
      header: { fromHub: false, deviceId: this.deviceId, keyId: slot.id, sequence: this.#sequenceOut++, sessionId: this.#hubNonce },
      message,
    });
    this.#lastSentAt = now;
    out.push({ type: 'transmit', bytes: withLengthPrefix(frame) });
  }

  #startPersist(op: DevicePersistOp, out: DeviceAction[]): void {
    this.#persisting = op;
    out.push({ type: 'persist', op });
  }

  #reject(error: LockstepError, out: DeviceAction[]): void {
    out.push(event({ type: 'rejected', error }));
    if (++this.#rejectedFrames > MAX_REJECTED_FRAMES) this.#close(new LockstepError('PEER_ERROR', 'too many rejected frames'), out);
  }

  #close(error: LockstepError, out: DeviceAction[]): void {
    out.push({ type: 'close', error });
    this.#session = nextDeviceSessionState(this.#session, 'disconnected');
    this.#resetSession();
  }

  #resetSession(): void {
    this.#hubNonce = undefined;
    this.#deviceNonce = undefined;
    this.#sequenceIn = 0;
    this.#sequenceOut = 0;
    this.#rejectedFrames = 0;
    this.#reader.reset();
    if (this.#persisting === undefined) {
      this.#input = undefined;
      this.#inputAt = 0;
    }
  }

  #assertAcceptingInput(): void {
    if (this.#halted) throw new LockstepError('LOCAL_NOT_READY', 'device core halted after a storage failure');
    if (this.#persisting !== undefined) throw new LockstepError('LOCAL_BUSY', 'a persist is outstanding; call persisted() first');
  }

  #randomBytes(length: number): Uint8Array {
    const bytes = new Uint8Array(length);
    this.#random.fill(bytes);
    return bytes;
  }
}

const ALLOWED_FROM_HUB: Record<DeviceSessionState, ReadonlySet<number>> = {
  offline: new Set(),
  awaitingChallenge: new Set(),
  awaitingWelcome: new Set([MessageType.WELCOME]),
  established: new Set([
    MessageType.DATA,
    MessageType.DATA_ACK,
    MessageType.REKEY,
    MessageType.CONFIRM,
    MessageType.PING,
    MessageType.PONG,
    MessageType.ERROR,
  ]),
};

function event(value: DeviceEvent): DeviceAction {
  return { type: 'event', event: value };
}



