/**
 * The hub's protocol state machine (docs/PROTOCOL.md §8.2), sans-IO, for
 * many devices and connections.
 *
 * Call order: `opened(conn)` when a transport connection is accepted, then
 * `receive(conn, bytes)` / `tick` / `send` / `rotate`, then `closed(conn)`.
 * After every `persist` action the host makes the database change durable
 * and calls `persisted(deviceId)` (or `persistFailed`) before feeding that
 * device's connection more input. `now` is a non-decreasing millisecond
 * count; randomness comes from the injected source only.
 *
 * Key slots per device (docs/PROTOCOL.md §5): `active` and at most one
 * `pending`. They change only in #pendingStored (rule H1: pending is durable
 * before it is first offered, and never replaced while unconfirmed) and
 * #pendingPromoted (rule H2: promotion on the first device frame that
 * authenticates under the pending key, durable before anything is sealed
 * under it, then confirmed to the device under the new key).
 */
import { bytesEqual, fromHex, toHex } from '../bytes';
import type { Aead, RandomSource } from '../crypto/primitives';
import { asLockstepError, LockstepError } from '../errors';
import { checkSlot, copySlot, DEVICE_ID_BYTES, KEY_BYTES, type KeySlot } from '../platform/keys';
import {
  HANDSHAKE_TIMEOUT_MS,
  IDLE_TIMEOUT_MS,
  IV_BYTES,
  MAX_KEY_ID,
  MAX_SEQUENCE,
  MessageType,
  NONCE_BYTES,
  REKEY_RETRY_INITIAL_MS,
  REKEY_RETRY_MAX_MS,
} from '../protocol/constants';
import { encodeChallenge, openFrame, sealFrame } from '../protocol/frame';
import { FrameReader, withLengthPrefix } from '../protocol/framing';
import { decodeHeader, type Header } from '../protocol/header';
import { STREAM_ID_BYTES, type Message } from '../protocol/messages';
import { AppChannel } from '../session/app-channel';
import { backoffDelayMs } from '../session/backoff';
import type { ConnectionId, HubAction, HubEvent, HubPersistOp } from './actions';
import { type HubConnectionState, nextHubConnectionState } from './table';

export type { ConnectionId, HubAction, HubEvent, HubPersistOp } from './actions';

export const MAX_REJECTED_FRAMES_PER_SESSION = 8;

/** A device as the hub's database holds it. */
export interface HubDeviceRecord {
  /** 16 lowercase hex digits (8 bytes). */
  readonly deviceId: string;
  readonly active: KeySlot;
  readonly pending?: KeySlot;
}

export interface HubDeviceState {
  readonly deviceId: string;
  readonly activeKeyId: number;
  readonly pendingKeyId: number | undefined;
  readonly connected: boolean;
  readonly persisting: boolean;
  readonly outboxLength: number;
}

export interface HubTiming {
  readonly handshakeTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly rekeyRetryInitialMs: number;
  readonly rekeyRetryMaxMs: number;
}

export interface HubConfig {
  readonly aead: Aead;
  readonly random: RandomSource;
  readonly devices?: readonly HubDeviceRecord[];
  readonly timing?: Partial<HubTiming>;
}

interface DeviceEntry {
  readonly id: string;
  readonly idBytes: Uint8Array;
  active: KeySlot;
  pending: KeySlot | undefined;
  connection: ConnectionId | undefined;
  readonly channel: AppChannel;
  persisting: HubPersistOp | undefined;
  /** The connection whose input stopped on this device's persist (resumed by persisted()). */
  blocked: ConnectionId | undefined;
  /** The connection and authenticated message that wait for a promotion to persist. */
  deferred: { connection: ConnectionId; message: Message } | undefined;
  offerAttempt: number;
  nextOfferAt: number;
}

interface Connection {
  readonly id: ConnectionId;
  state: HubConnectionState;
  readonly hubNonce: Uint8Array;
  readonly reader: FrameReader;
  device: DeviceEntry | undefined;
  sequenceIn: number;
  sequenceOut: number;
  rejectedFrames: number;
  readonly openedAt: number;
  lastReceivedAt: number;
  input: Uint8Array | undefined;
  inputAt: number;
}

export class HubCore {
  readonly #aead: Aead;
  readonly #random: RandomSource;
  readonly #timing: HubTiming;
  readonly #devices = new Map<string, DeviceEntry>();
  readonly #connections = new Map<ConnectionId, Connection>();

  constructor(config: HubConfig) {
    this.#aead = config.aead;
    this.#random = config.random;
    this.#timing = {
      handshakeTimeoutMs: config.timing?.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
      idleTimeoutMs: config.timing?.idleTimeoutMs ?? IDLE_TIMEOUT_MS,
      rekeyRetryInitialMs: config.timing?.rekeyRetryInitialMs ?? REKEY_RETRY_INITIAL_MS,
      rekeyRetryMaxMs: config.timing?.rekeyRetryMaxMs ?? REKEY_RETRY_MAX_MS,
    };
    for (const record of config.devices ?? []) this.addDevice(record);
  }

  // ---- Devices ----

  /** Registers a provisioned device (already in the host's database). */
  addDevice(record: HubDeviceRecord): void {
    const idBytes = parseDeviceId(record.deviceId);
    checkSlot(record.active);
    if (record.pending !== undefined) {
      checkSlot(record.pending);
      if (record.pending.id <= record.active.id) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'pending id must exceed active id');
    }
    const id = toHex(idBytes);
    if (this.#devices.has(id)) throw new LockstepError('LOCAL_BAD_ARGUMENT', `device ${id} already registered`);
    this.#devices.set(id, {
      id,
      idBytes,
      active: copySlot(record.active),
      pending: record.pending === undefined ? undefined : copySlot(record.pending),
      connection: undefined,
      channel: new AppChannel(this.#randomBytes(STREAM_ID_BYTES)),
      persisting: undefined,
      blocked: undefined,
      deferred: undefined,
      offerAttempt: 0,
      nextOfferAt: 0,
    });
  }

  deviceState(deviceId: string): HubDeviceState {
    const device = this.#device(deviceId);
    return {
      deviceId: device.id,
      activeKeyId: device.active.id,
      pendingKeyId: device.pending?.id,
      connected: device.connection !== undefined,
      persisting: device.persisting !== undefined,
      outboxLength: device.channel.outboxLength,
    };
  }

  /** Key ids under which the hub accepts this device's frames (safety invariant S1). */
  acceptedKeyIds(deviceId: string): number[] {
    const device = this.#device(deviceId);
    return device.pending === undefined ? [device.active.id] : [device.active.id, device.pending.id];
  }

  /** Copies of the device's key slots, for the host's checks and traces. */
  deviceKeys(deviceId: string): { active: KeySlot; pending?: KeySlot } {
    const device = this.#device(deviceId);
    const active = copySlot(device.active);
    return device.pending === undefined ? { active } : { active, pending: copySlot(device.pending) };
  }

  /**
   * Every piece of protocol state of one device and its connection, as
   * plain data (rejection counters excluded: they bound abuse).
   */
  snapshot(deviceId: string): Record<string, unknown> {
    const device = this.#device(deviceId);
    const connections = [...this.#connections.values()]
      .filter((conn) => conn.device === device || conn.device === undefined)
      .map((conn) => ({
        id: conn.id,
        state: conn.state,
        hubNonce: toHex(conn.hubNonce),
        sequenceIn: conn.sequenceIn,
        sequenceOut: conn.sequenceOut,
        lastReceivedAt: conn.lastReceivedAt,
        readerIdle: conn.reader.idle,
      }));
    return {
      activeKeyId: device.active.id,
      activeKey: toHex(device.active.key),
      pendingKeyId: device.pending?.id,
      pendingKey: device.pending === undefined ? undefined : toHex(device.pending.key),
      connection: device.connection,
      persisting: device.persisting?.kind,
      offerAttempt: device.offerAttempt,
      nextOfferAt: device.nextOfferAt,
      channel: device.channel.snapshot(),
      connections,
    };
  }

  get deviceIds(): string[] {
    return [...this.#devices.keys()];
  }

  get connectionCount(): number {
    return this.#connections.size;
  }

  // ---- Commands ----

  /**
   * Starts a rotation: a fresh key with the next id is persisted as pending
   * (rule H1) and offered once durable. Returns [] if a pending key already
   * exists — an unconfirmed pending key is never replaced.
   */
  rotate(deviceId: string, _now: number): HubAction[] {
    const device = this.#device(deviceId);
    if (device.persisting !== undefined) throw new LockstepError('LOCAL_BUSY', `device ${device.id} has a persist outstanding`);
    if (device.pending !== undefined) return [];
    if (device.active.id >= MAX_KEY_ID) throw new LockstepError('LOCAL_KEY_IDS_EXHAUSTED', `device ${device.id} must be re-provisioned`);
    const op: HubPersistOp = { kind: 'storePending', deviceId: device.id, id: device.active.id + 1, key: this.#randomBytes(KEY_BYTES) };
    device.persisting = op;
    return [{ type: 'persist', op }];
  }

  /** Application data to a device; throws LOCAL_OUTBOX_FULL when its bounded outbox is full. */
  send(deviceId: string, payload: Uint8Array, now: number): HubAction[] {
    const device = this.#device(deviceId);
    device.channel.enqueue(payload);
    const out: HubAction[] = [];
    if (device.persisting === undefined) this.#flushOutbox(device, now, out);
    return out;
  }

  // ---- Connection inputs ----

  opened(connection: ConnectionId, now: number): HubAction[] {
    if (this.#connections.has(connection)) throw new LockstepError('LOCAL_BAD_ARGUMENT', `connection ${connection} already open`);
    const conn: Connection = {
      id: connection,
      state: 'awaitingHello',
      hubNonce: this.#randomBytes(NONCE_BYTES),
      reader: new FrameReader(),
      device: undefined,
      sequenceIn: 0,
      sequenceOut: 1,
      rejectedFrames: 0,
      openedAt: now,
      lastReceivedAt: now,
      input: undefined,
      inputAt: 0,
    };
    this.#connections.set(connection, conn);
    return [{ type: 'transmit', connection, bytes: withLengthPrefix(encodeChallenge(conn.hubNonce)) }];
  }

  closed(connection: ConnectionId, _now: number): HubAction[] {
    const conn = this.#connections.get(connection);
    const out: HubAction[] = [];
    if (conn !== undefined) this.#forget(conn, out);
    return out;
  }

  receive(connection: ConnectionId, bytes: Uint8Array, now: number): HubAction[] {
    const conn = this.#connections.get(connection);
    if (conn === undefined) throw new LockstepError('LOCAL_NOT_READY', `connection ${connection} is not open`);
    if (conn.input !== undefined) throw new LockstepError('LOCAL_BUSY', `connection ${connection} waits for a persist`);
    conn.input = bytes;
    conn.inputAt = 0;
    const out: HubAction[] = [];
    this.#drain(conn, now, out);
    return out;
  }

  persisted(deviceId: string, now: number): HubAction[] {
    const device = this.#device(deviceId);
    const op = device.persisting;
    if (op === undefined) throw new LockstepError('LOCAL_NOT_READY', `no persist outstanding for ${device.id}`);
    device.persisting = undefined;
    const out: HubAction[] = [];
    if (op.kind === 'storePending') this.#pendingStored(device, op, now, out);
    else this.#pendingPromoted(device, op, now, out);
    // App data queued by send() while the write was outstanding goes out now (docs/VERIFICATION.md finding F2).
    if (device.persisting === undefined) this.#flushOutbox(device, now, out);
    // Resume the connection that stopped on this device's persist (O(1): no scan of all connections).
    const blocked = device.blocked === undefined ? undefined : this.#connections.get(device.blocked);
    device.blocked = undefined;
    if (blocked !== undefined && blocked.input !== undefined && device.persisting === undefined) this.#drain(blocked, now, out);
    return out;
  }

  /**
   * The database did not confirm the write. Its state is before or after;
   * the host must reload the device's record and call `reloadDevice`.
   * Connections of the device are closed meanwhile.
   */
  persistFailed(deviceId: string, error: LockstepError): HubAction[] {
    const device = this.#device(deviceId);
    if (device.persisting === undefined) throw new LockstepError('LOCAL_NOT_READY', `no persist outstanding for ${device.id}`);
    device.persisting = undefined;
    device.deferred = undefined;
    device.blocked = undefined;
    const out: HubAction[] = [];
    for (const conn of [...this.#connections.values()]) {
      if (conn.device === device) this.#close(conn, error, out);
    }
    return out;
  }

  /** Replaces a device's key slots with what the database holds (after persistFailed). */
  reloadDevice(record: HubDeviceRecord): void {
    const device = this.#device(record.deviceId);
    if (device.persisting !== undefined) throw new LockstepError('LOCAL_BUSY', 'persist outstanding');
    checkSlot(record.active);
    if (record.pending !== undefined) checkSlot(record.pending);
    device.active = copySlot(record.active);
    device.pending = record.pending === undefined ? undefined : copySlot(record.pending);
  }

  tick(now: number): HubAction[] {
    const out: HubAction[] = [];
    // Iterates the live map (no copy per tick): #close deletes only the entry being visited, which Map iteration allows.
    for (const conn of this.#connections.values()) {
      if (conn.input !== undefined) continue;
      if (conn.state === 'awaitingHello') {
        if (now - conn.openedAt >= this.#timing.handshakeTimeoutMs) this.#close(conn, new LockstepError('TIMEOUT', 'handshake'), out);
        continue;
      }
      if (now - conn.lastReceivedAt >= this.#timing.idleTimeoutMs) {
        this.#close(conn, new LockstepError('TIMEOUT', 'idle'), out);
        continue;
      }
      const device = conn.device;
      if (device !== undefined && device.pending !== undefined && device.persisting === undefined && now >= device.nextOfferAt) {
        this.#offer(device, conn, now, out);
      }
    }
    return out;
  }

  nextDeadline(): number | undefined {
    let next: number | undefined;
    const consider = (at: number) => {
      if (next === undefined || at < next) next = at;
    };
    for (const conn of this.#connections.values()) {
      if (conn.input !== undefined) continue;
      if (conn.state === 'awaitingHello') {
        consider(conn.openedAt + this.#timing.handshakeTimeoutMs);
        continue;
      }
      consider(conn.lastReceivedAt + this.#timing.idleTimeoutMs);
      const device = conn.device;
      if (device?.pending !== undefined && device.persisting === undefined) consider(device.nextOfferAt);
    }
    return next;
  }

  // ---- Key transitions (the only two places that change active/pending) ----

  /** Rule H1: the pending key is durable, so it may now be offered (and re-offered, unchanged, until confirmed). */
  #pendingStored(device: DeviceEntry, op: Extract<HubPersistOp, { kind: 'storePending' }>, now: number, out: HubAction[]): void {
    device.pending = { id: op.id, key: op.key };
    device.offerAttempt = 0;
    device.nextOfferAt = now;
    const conn = this.#establishedConnection(device);
    if (conn !== undefined) this.#offer(device, conn, now, out);
  }

  /**
   * Rule H2: the device proved it holds the pending key (durably, by rule
   * D1), and the promotion is now durable too, so the old key is deleted and
   * the new one may seal. The first frame sealed under it confirms the
   * rotation to the device (rule H3).
   */
  #pendingPromoted(device: DeviceEntry, op: Extract<HubPersistOp, { kind: 'promote' }>, now: number, out: HubAction[]): void {
    const pending = device.pending;
    if (pending === undefined || pending.id !== op.id) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'promotion without matching pending key');
    device.active.key.fill(0);
    device.active = pending;
    device.pending = undefined;
    out.push(event({ type: 'keyConfirmed', deviceId: device.id, id: pending.id }));
    const deferred = device.deferred;
    device.deferred = undefined;
    if (deferred === undefined) return;
    const conn = this.#connections.get(deferred.connection);
    if (conn === undefined) return;
    if (deferred.message.type === MessageType.HELLO) {
      this.#welcome(conn, device, deferred.message.deviceNonce, now, out);
    } else {
      this.#sendSealed(conn, { type: MessageType.CONFIRM, keyId: pending.id }, now, out);
      // The REKEY_ACK that triggered the promotion is fully answered by that CONFIRM.
      if (deferred.message.type !== MessageType.REKEY_ACK) this.#dispatch(conn, device, deferred.message, now, out);
    }
  }

  // ---- Frame handling ----

  #drain(conn: Connection, now: number, out: HubAction[]): void {
    while (conn.input !== undefined && this.#connections.get(conn.id) === conn) {
      if (conn.device?.persisting !== undefined) {
        conn.device.blocked = conn.id;
        return;
      }
      if (conn.inputAt >= conn.input.length) break;
      const result = conn.reader.feed(conn.input, conn.inputAt);
      conn.inputAt += result.consumed;
      if (result.error !== undefined) this.#reject(conn, result.error, out);
      else if (result.frame !== undefined) this.#handleFrame(conn, result.frame, now, out);
    }
    if (conn.device?.persisting === undefined || this.#connections.get(conn.id) !== conn) {
      conn.input = undefined;
      conn.inputAt = 0;
    }
  }

  #handleFrame(conn: Connection, frame: Uint8Array, now: number, out: HubAction[]): void {
    let header: Header;
    try {
      header = decodeHeader(frame);
    } catch (error) {
      this.#reject(conn, asLockstepError(error), out);
      return;
    }
    if (header.fromHub) {
      this.#reject(conn, new LockstepError('BAD_HEADER', 'frame sealed by a hub (reflected?)'), out);
      return;
    }
    const allowed = ALLOWED_FROM_DEVICE[conn.state];
    if (!allowed.has(header.type)) {
      this.#reject(conn, new LockstepError('UNEXPECTED_MESSAGE', `type 0x${header.type.toString(16)} in ${conn.state}`), out);
      return;
    }
    const device = conn.device ?? this.#devices.get(toHex(header.deviceId));
    if (device === undefined) {
      this.#reject(conn, new LockstepError('UNKNOWN_DEVICE', toHex(header.deviceId)), out);
      return;
    }
    if (!bytesEqual(header.deviceId, device.idBytes)) {
      this.#reject(conn, new LockstepError('BAD_HEADER', 'device id changed within a session'), out);
      return;
    }
    if (!bytesEqual(header.sessionId, conn.hubNonce)) {
      this.#reject(conn, new LockstepError('BAD_SESSION'), out);
      return;
    }
    if (header.sequence !== conn.sequenceIn) {
      this.#reject(conn, new LockstepError('BAD_SEQUENCE', `got ${header.sequence}, expected ${conn.sequenceIn}`), out);
      return;
    }
    if (conn.state === 'awaitingHello' && device.persisting !== undefined) {
      // Another connection of this device is mid-persist; the device will retry.
      this.#close(conn, new LockstepError('LOCAL_BUSY', 'device persist outstanding'), out);
      return;
    }
    const slot = lookupKey(device, header.keyId);
    if (slot === undefined) {
      this.#reject(conn, new LockstepError('UNKNOWN_KEY_ID', `key id ${header.keyId} for ${device.id}`), out);
      return;
    }
    let message: Message;
    try {
      message = openFrame(this.#aead, slot.key, frame, header);
      if (message.type === MessageType.REKEY_ACK && message.newKeyId !== header.keyId) {
        throw new LockstepError('BAD_PAYLOAD', 'REKEY_ACK must be sealed under the key it acknowledges');
      }
    } catch (error) {
      this.#reject(conn, asLockstepError(error), out);
      return;
    }
    // Authenticated and well-formed: from here the frame counts.
    conn.sequenceIn++;
    conn.lastReceivedAt = now;
    conn.rejectedFrames = 0;
    if (conn.state === 'awaitingHello') this.#bind(conn, device, out);
    if (device.pending !== undefined && header.keyId === device.pending.id) {
      device.deferred = { connection: conn.id, message };
      const op: HubPersistOp = { kind: 'promote', deviceId: device.id, id: header.keyId };
      device.persisting = op;
      out.push({ type: 'persist', op });
      return;
    }
    if (message.type === MessageType.HELLO) this.#welcome(conn, device, message.deviceNonce, now, out);
    else this.#dispatch(conn, device, message, now, out);
  }

  /** An authenticated HELLO ties the connection to its device; an older connection of the device is closed. */
  #bind(conn: Connection, device: DeviceEntry, out: HubAction[]): void {
    const previous = device.connection === undefined ? undefined : this.#connections.get(device.connection);
    if (previous !== undefined && previous !== conn) this.#close(previous, new LockstepError('PEER_ERROR', 'superseded by a new connection'), out);
    conn.device = device;
    device.connection = conn.id;
  }

  #welcome(conn: Connection, device: DeviceEntry, deviceNonce: Uint8Array, now: number, out: HubAction[]): void {
    conn.state = nextHubConnectionState(conn.state, 'hello');
    this.#sendSealed(conn, { type: MessageType.WELCOME, deviceNonce, hubKeyId: device.active.id }, now, out);
    out.push(event({ type: 'deviceConnected', deviceId: device.id, connection: conn.id, keyId: device.active.id }));
    device.channel.restartSession();
    if (device.pending !== undefined) {
      device.offerAttempt = 0;
      this.#offer(device, conn, now, out);
    }
    this.#flushOutbox(device, now, out);
  }

  #dispatch(conn: Connection, device: DeviceEntry, message: Message, now: number, out: HubAction[]): void {
    switch (message.type) {
      case MessageType.REKEY_ACK:
        // Promotion (if this acknowledged the pending key) already happened; a
        // repeated ack of the active key is answered idempotently.
        if (message.newKeyId === device.active.id) this.#sendSealed(conn, { type: MessageType.CONFIRM, keyId: device.active.id }, now, out);
        return;
      case MessageType.DATA: {
        const verdict = device.channel.receive(message.streamId, message.messageId);
        if (verdict.deliver) out.push(event({ type: 'data', deviceId: device.id, payload: message.payload }));
        this.#sendSealed(conn, { type: MessageType.DATA_ACK, streamId: message.streamId, messageId: verdict.ackId }, now, out);
        return;
      }
      case MessageType.DATA_ACK:
        for (const messageId of device.channel.acknowledge(message.streamId, message.messageId)) {
          out.push(event({ type: 'delivered', deviceId: device.id, messageId }));
        }
        return;
      case MessageType.PING:
        this.#sendSealed(conn, { type: MessageType.PONG }, now, out);
        return;
      case MessageType.PONG:
        return;
      case MessageType.ERROR:
        out.push(event({ type: 'peerError', deviceId: device.id, code: message.code, detail: message.detail }));
        return;
      default:
        throw new LockstepError('UNEXPECTED_MESSAGE', `type 0x${message.type.toString(16)}`);
    }
  }

  /** (Re-)offers the unchanged pending key under the active key, then backs off. */
  #offer(device: DeviceEntry, conn: Connection, now: number, out: HubAction[]): void {
    const pending = device.pending;
    if (pending === undefined) return;
    this.#sendSealed(conn, { type: MessageType.REKEY, newKeyId: pending.id, newKey: pending.key }, now, out);
    out.push(event({ type: 'keyOffered', deviceId: device.id, id: pending.id }));
    device.nextOfferAt = now + backoffDelayMs(device.offerAttempt++, this.#timing.rekeyRetryInitialMs, this.#timing.rekeyRetryMaxMs, this.#random);
  }

  #flushOutbox(device: DeviceEntry, now: number, out: HubAction[]): void {
    const conn = this.#establishedConnection(device);
    if (conn === undefined) return;
    for (const entry of device.channel.takeUnsent()) {
      this.#sendSealed(conn, { type: MessageType.DATA, streamId: device.channel.streamId, messageId: entry.messageId, payload: entry.payload }, now, out);
    }
  }

  /** Everything the hub sends is sealed under the device's active key (rule H2). */
  #sendSealed(conn: Connection, message: Message, _now: number, out: HubAction[]): void {
    const device = conn.device;
    if (device === undefined || this.#connections.get(conn.id) !== conn) return;
    if (conn.sequenceOut > MAX_SEQUENCE) {
      this.#close(conn, new LockstepError('BAD_SEQUENCE', 'sequence space exhausted'), out);
      return;
    }
    const frame = sealFrame({
      aead: this.#aead,
      key: device.active.key,
      iv: this.#randomBytes(IV_BYTES),
      header: { fromHub: true, deviceId: device.idBytes, keyId: device.active.id, sequence: conn.sequenceOut++, sessionId: conn.hubNonce },
      message,
    });
    out.push({ type: 'transmit', connection: conn.id, bytes: withLengthPrefix(frame) });
  }

  #establishedConnection(device: DeviceEntry): Connection | undefined {
    if (device.connection === undefined) return undefined;
    const conn = this.#connections.get(device.connection);
    return conn?.state === 'established' ? conn : undefined;
  }

  /** Before the HELLO authenticates, any bad frame ends the connection; after, MAX_REJECTED_FRAMES_PER_SESSION do. */
  #reject(conn: Connection, error: LockstepError, out: HubAction[]): void {
    out.push(event({ type: 'rejected', connection: conn.id, ...(conn.device ? { deviceId: conn.device.id } : {}), error }));
    if (conn.state === 'awaitingHello' || ++conn.rejectedFrames > MAX_REJECTED_FRAMES_PER_SESSION) this.#close(conn, error, out);
  }

  #close(conn: Connection, error: LockstepError, out: HubAction[]): void {
    out.push({ type: 'close', connection: conn.id, error });
    this.#forget(conn, out);
  }

  #forget(conn: Connection, out: HubAction[]): void {
    if (this.#connections.get(conn.id) !== conn) return;
    this.#connections.delete(conn.id);
    conn.state = nextHubConnectionState(conn.state, 'closed');
    const device = conn.device;
    if (device !== undefined && device.connection === conn.id) {
      device.connection = undefined;
      out.push(event({ type: 'deviceDisconnected', deviceId: device.id, connection: conn.id }));
    }
    // A deferred message of this connection stays: the promotion completes when
    // persisted, and #pendingPromoted drops the reply to a connection that is gone.
  }

  #device(deviceId: string): DeviceEntry {
    const device = this.#devices.get(deviceId.toLowerCase());
    if (device === undefined) throw new LockstepError('UNKNOWN_DEVICE', deviceId);
    return device;
  }

  #randomBytes(length: number): Uint8Array {
    const bytes = new Uint8Array(length);
    this.#random.fill(bytes);
    return bytes;
  }
}

const ALLOWED_FROM_DEVICE: Record<HubConnectionState, ReadonlySet<number>> = {
  awaitingHello: new Set([MessageType.HELLO]),
  established: new Set([MessageType.DATA, MessageType.DATA_ACK, MessageType.REKEY_ACK, MessageType.PING, MessageType.PONG, MessageType.ERROR]),
  closed: new Set(),
};

function lookupKey(device: DeviceEntry, keyId: number): KeySlot | undefined {
  if (keyId === device.active.id) return device.active;
  if (device.pending !== undefined && keyId === device.pending.id) return device.pending;
  return undefined;
}

function event(value: HubEvent): HubAction {
  return { type: 'event', event: value };
}

export function parseDeviceId(deviceId: string): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = fromHex(deviceId);
  } catch {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', 'device id must be hex');
  }
  if (bytes.length !== DEVICE_ID_BYTES) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'device id must be 16 hex digits');
  return bytes;
}



