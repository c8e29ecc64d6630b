/**
 * The hub's protocol state machine (docs/PROTOCOL.md §8.2), sans-IO, for
 * many devices and connections.
 *
 * Call order: `opened(conn)` when a transport connection is accepted, then
 * `receive(conn, bytes)` / `tick` / `send` / `rotate`, then `closed(conn)`.
 * After every `persist` action the host makes the database change durable
 * and calls `persisted(deviceId)` (or `persistFailed`). `now` is a
 * non-decreasing millisecond count; randomness comes from the injected
 * source only.
 *
 * Input is never refused: `receive` takes any bytes. While a persist of the
 * connection's device is outstanding the core parses nothing for it and
 * keeps the bytes in its own per-connection buffer (at most
 * RECEIVE_BUFFER_BYTES; past it the connection is closed with BUFFER_FULL);
 * `wantsInput(conn)` is false meanwhile so the host can pause the socket,
 * and `persisted` parses what was kept. `send` and `rotate` answer at the
 * call (the message id the core assigned, or a typed error), so no host
 * keeps a copy of the core's queues or predicts its ids.
 *
 * Dispatch goes through modules/hub/table.ts, whose row ids are those of
 * docs/PROTOCOL.md §8.2 (HS…, HK…).
 *
 * Key slots per device (docs/PROTOCOL.md §5): `active` and at most one
 * `pending`. They change in exactly three places: #pendingStored (HK1, rule
 * H1: pending is durable before it is first offered, and never replaced
 * while unconfirmed), #pendingPromoted (HK5, rule H2: promotion on the first
 * device frame that authenticates under the pending key, durable before
 * anything is sealed under it, then confirmed under the new key), and
 * #reloaded (HK7: after a failed write the database holds the state before
 * or after it, and the core adopts whichever it is).
 */
import { bytesEqual, fromHex, toHex } from '../bytes';
import { drawEphemeral, type EphemeralKeyPair } from '../crypto/dh-rekey';
import type { Aead, KeyAgreementPrimitives, RandomSource } from '../crypto/primitives';
import { asLockstepError, LockstepError } from '../errors';
import { checkSlot, copySlot, type KeySlot, type RekeyMode } from '../platform/keys';
import {
  DEVICE_ID_BYTES,
  HANDSHAKE_TIMEOUT_MS,
  IDLE_TIMEOUT_MS,
  IV_BYTES,
  KEY_BYTES,
  MAX_KEY_ID,
  MAX_REJECTED_FRAMES,
  MAX_SEQUENCE,
  MessageType,
  NONCE_BYTES,
  RECEIVE_BUFFER_BYTES,
  REKEY_RETRY_INITIAL_MS,
  REKEY_RETRY_MAX_MS,
  STREAM_ID_BYTES,
} from '../protocol/constants';
import { checkSealedShape, encodeChallenge, openFrame, sealFrame } from '../protocol/frame';
import { FrameReader, withLengthPrefix } from '../protocol/framing';
import { decodeHeader, type Header } from '../protocol/header';
import type { Message } from '../protocol/messages';
import { HeldInput } from '../protocol/held-input';
import { AppChannel, type EnqueueResult } from '../session/app-channel';
import { backoffDelayMs } from '../session/backoff';
import { derivePendingKey } from './pending-key';
import type { ConnectionId, HubAction, HubEvent, HubPersistOp, HubRotateResult, HubSendResult } from './actions';
import {
  type HubConnectionEvent,
  type HubConnectionRow,
  type HubConnectionState,
  hubConnectionRow,
  hubFrameEvent,
  hubRotateRow,
  requireHubConnectionRow,
} from './table';

export type { ConnectionId, HubAction, HubEvent, HubPersistOp, HubRotateResult, HubSendResult } from './actions';

/**
 * A pending key (rule H1). Classic: its bytes. dh (§11): the hub's ephemeral
 * X25519 pair for that id; the key itself exists only once a device frame
 * brings the device's share (HK8).
 */
export type HubPendingSlot =
  | { readonly id: number; readonly key: Uint8Array; readonly dh?: undefined }
  | { readonly id: number; readonly key?: undefined; readonly dh: EphemeralKeyPair };

/** A device as the hub's database holds it. */
export interface HubDeviceRecord {
  /** 16 lowercase hex digits (8 bytes). */
  readonly deviceId: string;
  /** How this device's keys are rotated (§11.6); only ever moves from classic to dh. */
  readonly mode: RekeyMode;
  readonly active: KeySlot;
  readonly pending?: HubPendingSlot;
  /** The device's static public key S_d (32 bytes, §12.6); absent = not enrolled. */
  readonly devicePublicKey?: Uint8Array;
  /** The hub static key this device knows (§12.6). */
  readonly hubStaticId?: number;
  /** Enrolment armed by an operator (HE1), or ready (a dh key promoted after arming). */
  readonly enrolment?: 'armed' | 'ready';
}

/** A copy whose bytes the caller owns. */
export function copyPending(pending: HubPendingSlot): HubPendingSlot {
  if (pending.dh === undefined) return { id: pending.id, key: pending.key.slice() };
  return { id: pending.id, dh: { privateKey: pending.dh.privateKey.slice(), publicKey: pending.dh.publicKey.slice() } };
}

function wipePending(pending: HubPendingSlot | undefined): void {
  pending?.key?.fill(0);
  pending?.dh?.privateKey.fill(0);
}

function checkPending(pending: HubPendingSlot, active: KeySlot): void {
  if (pending.dh === undefined) checkSlot(pending);
  else if (!Number.isInteger(pending.id) || pending.id > 0xffffffff || pending.dh.privateKey.length !== 32 || pending.dh.publicKey.length !== 32) {
    throw new LockstepError('LOCAL_BAD_ARGUMENT', 'a dh pending slot has a u32 id and a 32-byte X25519 pair');
  }
  if (pending.id <= active.id) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'pending id must exceed active id');
}

export interface HubDeviceState {
  readonly deviceId: string;
  readonly activeKeyId: number;
  readonly pendingKeyId: number | undefined;
  readonly mode: RekeyMode;
  readonly connected: boolean;
  readonly persisting: boolean;
  readonly outboxLength: number;
  /** A rotation asked for while another was in flight, started once that one is confirmed (HK2). */
  readonly rotationQueued: boolean;
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
  /** X25519 and HKDF for dh-mode devices (§11); required once any device is in the dh mode. */
  readonly keyAgreement?: KeyAgreementPrimitives;
  readonly devices?: readonly HubDeviceRecord[];
  readonly timing?: Partial<HubTiming>;
  /** Bytes kept per connection while its device's persist is outstanding; default RECEIVE_BUFFER_BYTES. */
  readonly receiveBufferBytes?: number;
  /** Recovery (§12): the hub's static pairs, by id, and the one ENROL gives; absent = recovery off (HS3 as in 1.0, no NO_KEY). */
  readonly recovery?: {
    readonly hubKeys: readonly { readonly id: number; readonly privateKey: Uint8Array; readonly publicKey: Uint8Array }[];
    readonly currentHubStaticId: number;
  };
}

interface DeviceEntry {
  readonly id: string;
  readonly idBytes: Uint8Array;
  mode: RekeyMode;
  active: KeySlot;
  pending: HubPendingSlot | undefined;
  connection: ConnectionId | undefined;
  readonly channel: AppChannel;
  persisting: HubPersistOp | undefined;
  /** The connection whose input stopped on this device's persist (resumed by persisted()). */
  blocked: ConnectionId | undefined;
  /** The connection and authenticated message that wait for a promotion to persist (HK5). */
  deferred: { connection: ConnectionId; message: Message; row: HubConnectionRow } | undefined;
  /** HK2: one rotation to start once the pending key is confirmed. */
  rotationQueued: boolean;
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
  /** Received bytes kept unparsed while the device's persist is outstanding (the core's own copy). */
  held: HeldInput | undefined;
}

export class HubCore {
  readonly #aead: Aead;
  readonly #keyAgreement: KeyAgreementPrimitives | undefined;
  readonly #random: RandomSource;
  readonly #timing: HubTiming;
  readonly #devices = new Map<string, DeviceEntry>();
  readonly #connections = new Map<ConnectionId, Connection>();
  readonly #receiveBufferBytes: number;

  constructor(config: HubConfig) {
    this.#aead = config.aead;
    this.#keyAgreement = config.keyAgreement;
    this.#receiveBufferBytes = config.receiveBufferBytes ?? RECEIVE_BUFFER_BYTES;
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
    this.#checkRecord(record);
    const id = toHex(idBytes);
    if (this.#devices.has(id)) throw new LockstepError('LOCAL_BAD_ARGUMENT', `device ${id} already registered`);
    this.#devices.set(id, {
      id,
      idBytes,
      mode: record.mode,
      active: copySlot(record.active),
      pending: record.pending === undefined ? undefined : copyPending(record.pending),
      connection: undefined,
      channel: new AppChannel(this.#randomBytes(STREAM_ID_BYTES)),
      persisting: undefined,
      blocked: undefined,
      deferred: undefined,
      rotationQueued: false,
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
      mode: device.mode,
      connected: device.connection !== undefined,
      persisting: device.persisting !== undefined,
      outboxLength: device.channel.outboxLength,
      rotationQueued: device.rotationQueued,
    };
  }

  /** Key ids under which the hub accepts this device's frames (safety invariant S1). */
  acceptedKeyIds(deviceId: string): number[] {
    const device = this.#device(deviceId);
    return device.pending === undefined ? [device.active.id] : [device.active.id, device.pending.id];
  }

  /** Copies of the device's key slots, for the host's checks and traces. */
  deviceKeys(deviceId: string): { mode: RekeyMode; active: KeySlot; pending?: HubPendingSlot } {
    const device = this.#device(deviceId);
    const active = copySlot(device.active);
    return device.pending === undefined ? { mode: device.mode, active } : { mode: device.mode, active, pending: copyPending(device.pending) };
  }

  /**
   * §11.6: the device's mode moves from classic to dh (the host has made the
   * change durable first). It applies from the next rotation: a pending key
   * keeps the mode it was offered in (rule H1). Towards classic: refused.
   */
  setMode(deviceId: string, mode: RekeyMode): void {
    const device = this.#device(deviceId);
    if (mode === device.mode) return;
    if (mode !== 'dh') throw new LockstepError('LOCAL_BAD_ARGUMENT', `device ${device.id}: the rekey mode never moves back from dh`);
    if (this.#keyAgreement === undefined) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'the dh mode needs keyAgreement primitives');
    device.mode = mode;
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
        heldInput: conn.held?.length ?? 0,
      }));
    return {
      mode: device.mode,
      activeKeyId: device.active.id,
      activeKey: toHex(device.active.key),
      pendingKeyId: device.pending?.id,
      pendingKey: device.pending === undefined ? undefined : device.pending.dh === undefined ? toHex(device.pending.key) : `dh:${toHex(device.pending.dh.publicKey)}`,
      connection: device.connection,
      persisting: device.persisting?.kind,
      offerAttempt: device.offerAttempt,
      rotationQueued: device.rotationQueued,
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
   * Starts a rotation (HK1): a fresh key with the next id is persisted as
   * pending (rule H1) and offered once durable. With a pending key already
   * in flight, or a write of the device outstanding, nothing is replaced
   * (HK2): the rotation is remembered (once) and starts when that one is
   * confirmed. Refused with LOCAL_KEY_IDS_EXHAUSTED at the last id.
   */
  rotate(deviceId: string, _now: number): HubRotateResult {
    const device = this.#device(deviceId);
    if (device.active.id >= MAX_KEY_ID || device.pending?.id === MAX_KEY_ID) {
      return { ok: false, error: new LockstepError('LOCAL_KEY_IDS_EXHAUSTED', `device ${device.id} must be re-provisioned`) };
    }
    const row = hubRotateRow(device.pending?.id, device.persisting !== undefined);
    if (row.action === 'queueAfterConfirm') {
      device.rotationQueued = true;
      return { ok: true, outcome: 'queued', actions: [] };
    }
    const actions: HubAction[] = [];
    this.#storePending(device, actions);
    return { ok: true, outcome: 'started', actions };
  }

  /**
   * Application data to a device: the id the core assigned (a later
   * `delivered` event names it) and the actions to carry out now, or a typed
   * error with nothing queued (LOCAL_PAYLOAD_TOO_LARGE, LOCAL_OUTBOX_FULL).
   * While a write of the device is outstanding the message waits in the
   * outbox and goes out once it is durable (docs/VERIFICATION.md finding F2).
   * Equal to `enqueue` then `flush`.
   */
  send(deviceId: string, payload: Uint8Array, now: number): HubSendResult {
    const queued = this.enqueue(deviceId, payload);
    if (queued.error !== undefined) return { ok: false, error: queued.error };
    return { ok: true, messageId: queued.messageId, actions: this.flush(deviceId, now) };
  }

  /**
   * Queues application data without sealing anything yet: for a host that is
   * still carrying out earlier actions (frames must leave in the order they
   * were sealed), which then calls `flush` in turn.
   */
  enqueue(deviceId: string, payload: Uint8Array): EnqueueResult {
    return this.#device(deviceId).channel.enqueue(payload);
  }

  /** Seals what the device's outbox has not sent in this session (when it has a session and no write is outstanding). */
  flush(deviceId: string, now: number): HubAction[] {
    const device = this.#device(deviceId);
    const out: HubAction[] = [];
    if (device.persisting === undefined) this.#flushOutbox(device, now, out);
    return out;
  }

  // ---- Connection inputs ----

  /** HS1. */
  // Issue 14 contract (RECOVERY-API.md): `options.recoveryAllowed` is the host's per-source limit; the recovery core implements it.
  opened(connection: ConnectionId, now: number, options?: { readonly recoveryAllowed?: boolean }): HubAction[] {
    void options;
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
      held: undefined,
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

  /**
   * Bytes from a connection, any amount: parsed at once, or kept (bounded)
   * while the device's persist is outstanding. Never refused by an exception
   * (a connection the core no longer knows is LOCAL_NOT_READY: misuse).
   */
  receive(connection: ConnectionId, bytes: Uint8Array, now: number): HubAction[] {
    const conn = this.#connections.get(connection);
    if (conn === undefined) throw new LockstepError('LOCAL_NOT_READY', `connection ${connection} is not open`);
    const out: HubAction[] = [];
    if (conn.held !== undefined || conn.device?.persisting !== undefined) this.#hold(conn, bytes, out);
    else this.#parse(conn, bytes, now, out);
    return out;
  }

  /** Bytes of this connection the core keeps unparsed (while its device's persist is outstanding): for statistics and pausing. */
  heldInputBytes(connection: ConnectionId): number {
    return this.#connections.get(connection)?.held?.length ?? 0;
  }

  /** False while the connection's device has a persist outstanding (its input is kept, not parsed), or once it is closed. */
  wantsInput(connection: ConnectionId): boolean {
    const conn = this.#connections.get(connection);
    return conn !== undefined && conn.device?.persisting === undefined && conn.held === undefined;
  }

  persisted(deviceId: string, now: number): HubAction[] {
    const device = this.#device(deviceId);
    const op = device.persisting;
    if (op === undefined) throw new LockstepError('LOCAL_NOT_READY', `no persist outstanding for ${device.id}`);
    device.persisting = undefined;
    const out: HubAction[] = [];
    if (op.kind === 'storePending') this.#pendingStored(device, op, now, out);
    else if (op.kind === 'promote') this.#pendingPromoted(device, op, now, out);
    // App data queued by send() while the write was outstanding goes out now (docs/VERIFICATION.md finding F2).
    if (device.persisting === undefined) this.#flushOutbox(device, now, out);
    // HK2: a rotation asked for meanwhile starts once no pending key is in flight.
    if (device.rotationQueued && device.pending === undefined && device.persisting === undefined) {
      device.rotationQueued = false;
      this.#storePending(device, out);
    }
    // Resume the connection that stopped on this device's persist (O(1): no scan of all connections).
    if (device.persisting === undefined) {
      const blocked = device.blocked === undefined ? undefined : this.#connections.get(device.blocked);
      device.blocked = undefined;
      if (blocked !== undefined) this.#resumeHeld(blocked, now, out);
    }
    return out;
  }

  /**
   * HK7: the database did not confirm the write. Its state is before or
   * after; the host must reload the device's record and call `reloadDevice`.
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

  /** HK7, second half: adopts the device's slots as the database holds them (after persistFailed). */
  reloadDevice(record: HubDeviceRecord): void {
    const device = this.#device(record.deviceId);
    if (device.persisting !== undefined) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'reloadDevice() with a persist outstanding');
    this.#checkRecord(record);
    this.#reloaded(device, record);
  }

  /**
   * Forgets a device for good (revocation, docs/HUB.md §12): its connections
   * are closed with `error`, its key slots zeroed, a queued rotation and a
   * deferred reply dropped. A later HELLO naming it is refused as any unknown
   * device's (UNKNOWN_DEVICE). A persist of it still outstanding is the
   * host's to discard (`hasDevice` is false from now on).
   */
  removeDevice(deviceId: string, error: LockstepError): HubAction[] {
    const device = this.#device(deviceId);
    const out: HubAction[] = [];
    for (const conn of [...this.#connections.values()]) {
      if (conn.device === device) this.#close(conn, error, out);
    }
    this.#devices.delete(device.id);
    device.active.key.fill(0);
    wipePending(device.pending);
    device.pending = undefined;
    device.deferred = undefined;
    device.blocked = undefined;
    device.persisting = undefined;
    device.rotationQueued = false;
    return out;
  }

  hasDevice(deviceId: string): boolean {
    return this.#devices.has(deviceId.toLowerCase());
  }

  tick(now: number): HubAction[] {
    const out: HubAction[] = [];
    // Iterates the live map (no copy per tick): #close deletes only the entry being visited, which Map iteration allows.
    for (const conn of this.#connections.values()) {
      // A connection whose input waits on a persist is not timed out: the wait is the hub's.
      if (conn.held !== undefined) continue;
      if (conn.state === 'awaitingHello') {
        if (now - conn.openedAt >= this.#timing.handshakeTimeoutMs) this.#timedOut(conn, 'handshakeTimeout', out);
        continue;
      }
      if (now - conn.lastReceivedAt >= this.#timing.idleTimeoutMs) {
        this.#timedOut(conn, 'idleTimeout', out);
        continue;
      }
      const device = conn.device;
      if (device !== undefined && device.pending !== undefined && device.persisting === undefined && now >= device.nextOfferAt) {
        this.#offer(device, conn, now, out); // HK3
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
      if (conn.held !== undefined) continue;
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

  // ---- Key transitions (the only three places that change active/pending) ----

  /**
   * HK1: a fresh key with the next id (classic), or a fresh ephemeral X25519
   * pair for it (dh, §11), to be made durable before it is ever offered
   * (rules H1, H4).
   */
  #storePending(device: DeviceEntry, out: HubAction[]): void {
    const id = device.active.id + 1;
    const op: HubPersistOp =
      device.mode === 'dh'
        ? { kind: 'storePending', deviceId: device.id, id, dh: drawEphemeral(this.#requireKeyAgreement(), this.#random) }
        : { kind: 'storePending', deviceId: device.id, id, key: this.#randomBytes(KEY_BYTES) };
    device.persisting = op;
    out.push({ type: 'persist', op });
  }

  /** Rule H1: the pending key is durable, so it may now be offered (and re-offered, unchanged, until confirmed). */
  #pendingStored(device: DeviceEntry, op: Extract<HubPersistOp, { kind: 'storePending' }>, now: number, out: HubAction[]): void {
    device.pending = op.dh === undefined ? { id: op.id, key: op.key } : { id: op.id, dh: op.dh };
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
    const key = pending.dh === undefined ? pending.key : op.key;
    if (key === undefined) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'the promotion of a dh pending key carries the derived key');
    device.active.key.fill(0);
    device.active = { id: pending.id, key };
    // Rule H5: the ephemeral private key is gone with the commit that promoted.
    pending.dh?.privateKey.fill(0);
    device.pending = undefined;
    out.push(event({ type: 'keyConfirmed', deviceId: device.id, id: pending.id }));
    const deferred = device.deferred;
    device.deferred = undefined;
    if (deferred === undefined) return;
    const conn = this.#connections.get(deferred.connection);
    if (conn === undefined) return;
    if (deferred.row.id === 'HS2') {
      // The HELLO's WELCOME, now under P, is the confirmation (rule H3).
      this.#dispatch(conn, device, deferred.message, deferred.row, now, out);
      return;
    }
    this.#sendSealed(conn, { type: MessageType.CONFIRM, keyId: pending.id }, now, out);
    // HS8: the REKEY_ACK that triggered the promotion is fully answered by that CONFIRM.
    if (deferred.row.id !== 'HS8') this.#dispatch(conn, device, deferred.message, deferred.row, now, out);
  }

  /** HK7: the database's state (before or after the failed write) replaces the core's. */
  #reloaded(device: DeviceEntry, record: HubDeviceRecord): void {
    device.active.key.fill(0);
    wipePending(device.pending);
    device.mode = record.mode;
    device.active = copySlot(record.active);
    device.pending = record.pending === undefined ? undefined : copyPending(record.pending);
  }

  #checkRecord(record: HubDeviceRecord): void {
    checkSlot(record.active);
    if (record.mode !== 'classic' && record.mode !== 'dh') throw new LockstepError('LOCAL_BAD_ARGUMENT', `unknown rekey mode ${String(record.mode)}`);
    if (record.pending !== undefined) checkPending(record.pending, record.active);
    if ((record.mode === 'dh' || record.pending?.dh !== undefined) && this.#keyAgreement === undefined) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', `device ${record.deviceId} is in the dh mode: the hub needs keyAgreement primitives`);
    }
  }

  #requireKeyAgreement(): KeyAgreementPrimitives {
    if (this.#keyAgreement === undefined) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'the dh mode needs keyAgreement primitives');
    return this.#keyAgreement;
  }

  /**
   * The key a device frame is sealed under (§4 step 4), or why not. For a dh
   * pending key (HK8) the frame must carry the device's share; the key is
   * derived from it (§11.3) and returned as `derived` (the caller wipes it
   * unless a promotion takes it).
   */
  #frameKey(device: DeviceEntry, frame: Uint8Array, header: Header): { key: Uint8Array; derived: boolean } | LockstepError {
    if (header.keyId === device.active.id) return { key: device.active.key, derived: false };
    const pending = device.pending;
    if (pending === undefined || header.keyId !== pending.id) return new LockstepError('UNKNOWN_KEY_ID', `key id ${header.keyId} for ${device.id}`);
    if (pending.dh === undefined) return { key: pending.key, derived: false };
    if (header.share === undefined) return new LockstepError('BAD_HEADER', `a frame under the dh pending key ${pending.id} without its key share`);
    try {
      checkSealedShape(frame, header);
      const key = derivePendingKey(this.#requireKeyAgreement(), device.active, { id: pending.id, dh: pending.dh }, device.idBytes, header.share);
      return { key, derived: true };
    } catch (error) {
      return asLockstepError(error);
    }
  }

  // ---- Frame handling ----

  /** Parses `input` frame by frame; what is left when a persist of the device starts is kept for later. */
  #parse(conn: Connection, input: Uint8Array, now: number, out: HubAction[]): void {
    let at = 0;
    while (at < input.length && this.#connections.get(conn.id) === conn) {
      if (conn.device?.persisting !== undefined) {
        this.#hold(conn, input.subarray(at), out);
        return;
      }
      const result = conn.reader.feed(input, at);
      at += result.consumed;
      if (result.error !== undefined) this.#reject(conn, result.error, out);
      else if (result.frame !== undefined) this.#handleFrame(conn, result.frame, now, out);
    }
  }

  /** Keeps a copy of `bytes` after what the connection already has kept; over the bound it is closed (BUFFER_FULL). */
  #hold(conn: Connection, bytes: Uint8Array, out: HubAction[]): void {
    if (conn.device !== undefined) conn.device.blocked = conn.id;
    if (bytes.length === 0) return;
    conn.held ??= new HeldInput(this.#receiveBufferBytes);
    if (conn.held.append(bytes)) return;
    conn.held = undefined;
    this.#close(conn, new LockstepError('BUFFER_FULL', `more than ${this.#receiveBufferBytes} bytes received during a persist`), out);
  }

  #resumeHeld(conn: Connection, now: number, out: HubAction[]): void {
    if (conn.held === undefined || conn.device?.persisting !== undefined) return;
    const held = conn.held.take();
    conn.held = undefined;
    if (held !== undefined) this.#parse(conn, held, now, out);
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
    const frameEvent = hubFrameEvent(header.type);
    const row = frameEvent === undefined ? undefined : hubConnectionRow(conn.state, frameEvent);
    if (row === undefined) {
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
      this.#close(conn, new LockstepError('DEVICE_BUSY', 'a write of this device is outstanding; retry'), out);
      return;
    }
    const slot = this.#frameKey(device, frame, header);
    if (slot instanceof LockstepError) {
      this.#reject(conn, slot, out);
      return;
    }
    let message: Message;
    try {
      message = openFrame(this.#aead, slot.key, frame, header);
      if (message.type === MessageType.REKEY_ACK && message.newKeyId !== header.keyId) {
        throw new LockstepError('BAD_PAYLOAD', 'REKEY_ACK must be sealed under the key it acknowledges');
      }
    } catch (error) {
      if (slot.derived) slot.key.fill(0);
      this.#reject(conn, asLockstepError(error), out);
      return;
    }
    // Authenticated and well-formed: from here the frame counts.
    conn.sequenceIn++;
    conn.lastReceivedAt = now;
    conn.rejectedFrames = 0;
    if (conn.state === 'awaitingHello') this.#bind(conn, device, out);
    if (device.pending !== undefined && header.keyId === device.pending.id) {
      // HK5: persist the promotion first; the frame is acted on once it is durable.
      device.deferred = { connection: conn.id, message, row };
      const op: HubPersistOp = slot.derived ? { kind: 'promote', deviceId: device.id, id: header.keyId, key: slot.key } : { kind: 'promote', deviceId: device.id, id: header.keyId };
      device.persisting = op;
      out.push({ type: 'persist', op });
      return;
    }
    this.#dispatch(conn, device, message, row, now, out);
  }

  /** An authenticated HELLO ties the connection to its device; an older connection of the device is closed. */
  #bind(conn: Connection, device: DeviceEntry, out: HubAction[]): void {
    const previous = device.connection === undefined ? undefined : this.#connections.get(device.connection);
    if (previous !== undefined && previous !== conn) this.#close(previous, new LockstepError('PEER_ERROR', 'superseded by a new connection'), out);
    conn.device = device;
    device.connection = conn.id;
  }

  /** HS2, after the HELLO authenticated (and any promotion it implied is durable). */
  #welcome(conn: Connection, device: DeviceEntry, row: HubConnectionRow, deviceNonce: Uint8Array, now: number, out: HubAction[]): void {
    conn.state = row.next;
    this.#sendSealed(conn, { type: MessageType.WELCOME, deviceNonce, hubKeyId: device.active.id }, now, out);
    out.push(event({ type: 'deviceConnected', deviceId: device.id, connection: conn.id, keyId: device.active.id }));
    device.channel.restartSession();
    if (device.pending !== undefined) {
      device.offerAttempt = 0;
      this.#offer(device, conn, now, out); // HK4
    }
    this.#flushOutbox(device, now, out);
  }

  /** Acts on an authenticated device frame by its connection row; any promotion it implied (HK5) is done. */
  #dispatch(conn: Connection, device: DeviceEntry, message: Message, row: HubConnectionRow, now: number, out: HubAction[]): void {
    switch (row.id) {
      case 'HS2':
        if (message.type === MessageType.HELLO) this.#welcome(conn, device, row, message.deviceNonce, now, out);
        return;
      case 'HS8':
        // HK6: a repeated ack of the active key is answered idempotently (a fresh one was answered by HK5).
        if (message.type === MessageType.REKEY_ACK && message.newKeyId === device.active.id) {
          this.#sendSealed(conn, { type: MessageType.CONFIRM, keyId: device.active.id }, now, out);
        }
        return;
      case 'HS7':
        this.#handleAppFrame(conn, device, message, now, out);
        return;
      default:
        throw new LockstepError('UNEXPECTED_MESSAGE', `row ${row.id} does not take a frame`);
    }
  }

  /** HS7: application data (§7), keep-alive, and the device's error reports. */
  #handleAppFrame(conn: Connection, device: DeviceEntry, message: Message, now: number, out: HubAction[]): void {
    switch (message.type) {
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
        throw new LockstepError('UNEXPECTED_MESSAGE', `type 0x${message.type.toString(16)} is not an application frame`);
    }
  }

  /** (Re-)offers the unchanged pending key under the active key, then backs off. */
  #offer(device: DeviceEntry, conn: Connection, now: number, out: HubAction[]): void {
    const pending = device.pending;
    if (pending === undefined) return;
    // HK3/HK4: the identical offer every time (rules H1, H4).
    const offer: Message =
      pending.dh === undefined ? { type: MessageType.REKEY, newKeyId: pending.id, newKey: pending.key } : { type: MessageType.REKEY_DH, newKeyId: pending.id, hubShare: pending.dh.publicKey };
    this.#sendSealed(conn, offer, now, out);
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

  /** HS3: before the HELLO authenticates, any bad frame ends the connection; HS6: after, MAX_REJECTED_FRAMES in a row are tolerated. */
  #reject(conn: Connection, error: LockstepError, out: HubAction[]): void {
    out.push(event({ type: 'rejected', connection: conn.id, ...(conn.device ? { deviceId: conn.device.id } : {}), error }));
    if (conn.state === 'awaitingHello' || ++conn.rejectedFrames > MAX_REJECTED_FRAMES) this.#close(conn, error, out);
  }

  /** HS4 / HS5. */
  #timedOut(conn: Connection, eventName: HubConnectionEvent, out: HubAction[]): void {
    const row = requireHubConnectionRow(conn.state, eventName);
    this.#close(conn, new LockstepError('TIMEOUT', `${row.id}: ${eventName === 'handshakeTimeout' ? 'handshake' : 'idle'}`), out);
  }

  #close(conn: Connection, error: LockstepError, out: HubAction[]): void {
    out.push({ type: 'close', connection: conn.id, error });
    this.#forget(conn, out);
  }

  #forget(conn: Connection, out: HubAction[]): void {
    if (this.#connections.get(conn.id) !== conn) return;
    this.#connections.delete(conn.id);
    conn.state = requireHubConnectionRow(conn.state, 'closed').next;
    conn.held = undefined;
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



