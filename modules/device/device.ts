/**
 * The device's protocol state machine (docs/PROTOCOL.md §8.1), sans-IO.
 *
 * Call order: `connected` when a transport opens, then any number of
 * `receive` / `tick` / `send`, then `disconnected`; after every `persist`
 * action the host makes the keystore change durable and calls `persisted`
 * (or `persistFailed`). Every method returns the actions to carry out, in
 * order. `now` is a non-decreasing count of milliseconds; the core never
 * reads a clock or a random source itself. The host drives it through the
 * device loop (modules/device/loop.ts), the one driver every platform uses.
 *
 * Input is never refused: `receive` takes any bytes. While a persist is
 * outstanding the core parses nothing and keeps what it is given in its own
 * buffer (at most RECEIVE_BUFFER_BYTES; past it the connection is closed
 * with BUFFER_FULL), and `wantsInput` is false so that the host may pause
 * its transport; `persisted` parses what was kept. `send` answers at the
 * call with the message id the core assigned or a typed error.
 *
 * Dispatch goes through the tables of modules/device/table.ts, whose row ids
 * are those of docs/PROTOCOL.md §8.1 (DS…, DK…).
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
 *
 * Recovery (docs/PROTOCOL.md §12.4, DS12–DS17, DK14–DK17): a NO_KEY
 * answering our HELLO starts the handshake if the device holds a
 * credential and its RecoveryPacer allows an attempt; its frames are
 * unsealed and checked by modules/crypto/recovery.ts. Rules: nothing
 * changes before tag4 verifies (R1) — any failure in the recovery states
 * closes the connection (DS14, DS16) with the slots untouched and the
 * ephemerals wiped; the recovered key is persisted before anything is
 * sealed under it (R2: DK14 closes once it is durable, and the next
 * connection's HELLO is the first frame under it); an N not above every id
 * held is refused (R3). The slots change in #recoveredStored only; the
 * credential in #credentialStored (DK15).
 */
import { bytesEqual, constantTimeEqual, toHex } from '../bytes';
import type { Aead, KeyAgreementPrimitives, RandomSource } from '../crypto/primitives';
import { deriveRekeyKey, drawEphemeral } from '../crypto/dh-rekey';
import {
  deviceRecoveryInit,
  deviceRecoveryReply,
  recoveryFinishFrame,
  verifyRecoveryResult,
  type DeviceRecoveryStart,
  type RecoveryCredential,
  type RecoverySecrets,
} from '../crypto/recovery';
import { asLockstepError, LockstepError } from '../errors';
import type { DeviceKeys, FutureSlot, KeySlot, RekeyMode } from '../platform/keys';
import { checkSlot, copyFuture, copySlot } from '../platform/keys';
import {
  DEVICE_ID_BYTES,
  HANDSHAKE_TIMEOUT_MS,
  IDLE_TIMEOUT_MS,
  IV_BYTES,
  KEEPALIVE_INTERVAL_MS,
  MAX_REJECTED_FRAMES,
  MAX_SEQUENCE,
  MessageType,
  NONCE_BYTES,
  NO_KEY_FRAME_BYTES,
  NO_KEY_ID,
  RECEIVE_BUFFER_BYTES,
  RecoveryStatus,
  STREAM_ID_BYTES,
  WireError,
} from '../protocol/constants';
import { decodeChallenge, openFrame, sealFrame } from '../protocol/frame';
import { FrameReader, withLengthPrefix } from '../protocol/framing';
import { decodeHeader, encodeHeader, type Header } from '../protocol/header';
import type { Message } from '../protocol/messages';
import { HeldInput } from '../protocol/held-input';
import { AppChannel, type EnqueueResult } from '../session/app-channel';
import type { DeviceAction, DeviceEvent, DevicePersistOp, DeviceSendResult } from './actions';
import { RecoveryPacer } from './recovery-pacing';
import {
  DEVICE_RECOVERY_ABORT_ROW,
  type DeviceSessionEvent,
  type DeviceSessionRow,
  type DeviceSessionState,
  deviceEnrolRow,
  deviceFrameEvent,
  deviceRecoverReplyRow,
  deviceRecoverResultRow,
  deviceRekeyRow,
  deviceSessionRow,
  isRecoveryState,
  requireDeviceSessionRow,
} from './table';

export type { DeviceAction, DeviceEvent, DevicePersistOp, DeviceSendResult } from './actions';
export { MAX_REJECTED_FRAMES } from '../protocol/constants';

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
  /** X25519 and HKDF for the dh rekey mode (§11). Without it the device is classic-only: it refuses REKEY_DH (REKEY_MODE_MISMATCH). */
  readonly keyAgreement?: KeyAgreementPrimitives;
  readonly timing?: Partial<DeviceTiming>;
  /** Bytes kept unparsed while a persist is outstanding; default RECEIVE_BUFFER_BYTES. */
  readonly receiveBufferBytes?: number;
  /** The recovery credential (§12.6) as the keystore holds it; the core keeps its own copy. Without it NO_KEY closes (NO_CREDENTIAL). */
  readonly credential?: RecoveryCredential;
  /** The recovery attempt spacing (§12.7), shared across cores by the loop; default: the core's own. */
  readonly recoveryPacer?: RecoveryPacer;
  /** Whether the storage can keep a credential (DK15); false: ENROL is answered with ERROR UNEXPECTED_MESSAGE. Default true. */
  readonly acceptsEnrolment?: boolean;
}

/** The recovery handshake in flight: after RECOVER_INIT (e_d, k1), then after RECOVER_REPLY (m, K_N). Wiped when it ends. */
type RecoveryProgress = { readonly stage: 'init'; readonly start: DeviceRecoveryStart } | { readonly stage: 'finish'; readonly secrets: RecoverySecrets };

/** A frame authenticated under the future key waits here while the promotion persists (DK5). */
interface DeferredMessage {
  readonly message: Message;
  readonly row: DeviceSessionRow;
}

export class DeviceCore {
  readonly deviceId: Uint8Array;
  readonly #aead: Aead;
  readonly #random: RandomSource;
  readonly #keyAgreement: KeyAgreementPrimitives | undefined;
  readonly #timing: DeviceTiming;
  readonly #channel: AppChannel;
  readonly #reader = new FrameReader();

  #mode: RekeyMode;
  #active: KeySlot;
  #future: FutureSlot | undefined;
  #credential: RecoveryCredential | undefined;
  readonly #pacer: RecoveryPacer;
  readonly #acceptsEnrolment: boolean;
  #recovery: RecoveryProgress | undefined;
  #recoveryStartedAt = 0;

  #session: DeviceSessionState = 'offline';
  #hubNonce: Uint8Array | undefined;
  #deviceNonce: Uint8Array | undefined;
  #sequenceIn = 0;
  #sequenceOut = 0;
  #rejectedFrames = 0;
  #connectedAt = 0;
  #lastReceivedAt = 0;
  #lastSentAt = 0;

  /** Received bytes kept unparsed while a persist is outstanding (the core's own copy). */
  readonly #held: HeldInput;
  readonly #receiveBufferBytes: number;
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
    if ((config.keys.mode === 'dh' || config.keys.future?.shares !== undefined) && config.keyAgreement === undefined) {
      throw new LockstepError('LOCAL_BAD_ARGUMENT', 'a dh-mode device needs keyAgreement primitives');
    }
    this.deviceId = config.deviceId.slice();
    this.#aead = config.aead;
    this.#random = config.random;
    this.#keyAgreement = config.keyAgreement;
    this.#timing = {
      handshakeTimeoutMs: config.timing?.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
      keepaliveIntervalMs: config.timing?.keepaliveIntervalMs ?? KEEPALIVE_INTERVAL_MS,
      idleTimeoutMs: config.timing?.idleTimeoutMs ?? IDLE_TIMEOUT_MS,
    };
    this.#receiveBufferBytes = config.receiveBufferBytes ?? RECEIVE_BUFFER_BYTES;
    this.#held = new HeldInput(this.#receiveBufferBytes);
    this.#mode = config.keys.mode;
    this.#active = copySlot(config.keys.active);
    this.#future = config.keys.future === undefined ? undefined : copyFuture(config.keys.future);
    this.#credential = config.credential === undefined ? undefined : copyRecoveryCredential(checkCredential(config.credential));
    this.#pacer = config.recoveryPacer ?? new RecoveryPacer();
    this.#acceptsEnrolment = config.acceptsEnrolment ?? true;
    this.#channel = new AppChannel(this.#randomBytes(STREAM_ID_BYTES));
  }

  // ---- Observers ----

  /** A copy of the key slots (the core wipes retired keys in place). */
  get keys(): DeviceKeys {
    const active = copySlot(this.#active);
    return this.#future === undefined ? { mode: this.#mode, active } : { mode: this.#mode, active, future: copyFuture(this.#future) };
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
  /** False while a persist is outstanding (input is kept, not parsed) or the core is halted or offline. */
  get wantsInput(): boolean {
    return this.#persisting === undefined && !this.#halted && this.#session !== 'offline';
  }
  /** Bytes received and kept unparsed (while a persist is outstanding). */
  get heldInputBytes(): number {
    return this.#held.length;
  }
  /** Set after a failed persist: the host must build a new core from a remounted keystore. */
  get halted(): boolean {
    return this.#halted;
  }
  /** The credential's public parts (never s_d): hub static id, S_d, S_h; undefined without one. */
  get credentialInfo(): { hubStaticId: number; devicePublicKey: Uint8Array; hubPublicKey: Uint8Array } | undefined {
    const c = this.#credential;
    return c === undefined ? undefined : { hubStaticId: c.hubStaticId, devicePublicKey: c.device.publicKey.slice(), hubPublicKey: c.hubPublicKey.slice() };
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
      mode: this.#mode,
      activeKeyId: this.#active.id,
      activeKey: toHex(this.#active.key),
      futureKeyId: this.#future?.id,
      futureKey: this.#future === undefined ? undefined : toHex(this.#future.key),
      futureShares: this.#future?.shares === undefined ? undefined : `${toHex(this.#future.shares.hub)}/${toHex(this.#future.shares.device)}`,
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
      heldInput: this.#held.length,
      credentialHubStaticId: this.#credential?.hubStaticId,
      credentialPublicKey: this.#credential === undefined ? undefined : toHex(this.#credential.device.publicKey),
      recovery: this.#recovery?.stage,
      recoveryNewKeyId: this.#recovery?.stage === 'finish' ? this.#recovery.secrets.newKeyId : undefined,
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
      case 'recoverSent':
      case 'recoverFinished':
        return this.#recoveryStartedAt + this.#timing.handshakeTimeoutMs;
      case 'established':
        return Math.min(this.#lastReceivedAt + this.#timing.idleTimeoutMs, this.#lastSentAt + this.#timing.keepaliveIntervalMs);
    }
  }

  // ---- Inputs ----

  /** DS1 (after DS7 if a previous transport was still open). */
  connected(now: number): DeviceAction[] {
    this.#assertNotHalted();
    const out: DeviceAction[] = [];
    if (this.#session !== 'offline') this.#enter(requireDeviceSessionRow(this.#session, 'closed'));
    this.#resetSession();
    this.#enter(requireDeviceSessionRow(this.#session, 'connected'));
    this.#connectedAt = now;
    this.#lastReceivedAt = now;
    this.#lastSentAt = now;
    return out;
  }

  /** DS7. Idempotent: the host reports every transport close, including ones the core asked for. */
  disconnected(_now: number): DeviceAction[] {
    if (this.#session !== 'offline') this.#enter(requireDeviceSessionRow(this.#session, 'closed'));
    this.#resetSession();
    return [];
  }

  /**
   * Bytes from the transport, any amount. Parsed at once, or kept (bounded)
   * while a persist is outstanding; never refused by an exception.
   */
  receive(bytes: Uint8Array, now: number): DeviceAction[] {
    this.#assertNotHalted();
    if (this.#session === 'offline') throw new LockstepError('LOCAL_NOT_READY', 'receive() without a connection');
    const out: DeviceAction[] = [];
    if (this.#persisting !== undefined || this.#held.length > 0) this.#hold(bytes, out);
    else this.#parse(bytes, now, out);
    return out;
  }

  /** DS4, DS5, DS6: the deadline of nextDeadline() has come. */
  tick(now: number): DeviceAction[] {
    const out: DeviceAction[] = [];
    if (this.#persisting !== undefined || this.#halted) return out;
    switch (this.#session) {
      case 'awaitingChallenge':
      case 'awaitingWelcome':
        if (now - this.#connectedAt >= this.#timing.handshakeTimeoutMs) this.#timedOut('handshakeTimeout', 'handshake', out);
        break;
      case 'recoverSent':
      case 'recoverFinished':
        // DS16: the recovery handshake did not finish in time; nothing changes.
        if (now - this.#recoveryStartedAt >= this.#timing.handshakeTimeoutMs) this.#abortRecovery(new LockstepError('TIMEOUT', 'DS16: recovery handshake'), now, out);
        break;
      case 'established':
        if (now - this.#lastReceivedAt >= this.#timing.idleTimeoutMs) {
          this.#timedOut('idleTimeout', 'idle', out);
        } else if (now - this.#lastSentAt >= this.#timing.keepaliveIntervalMs) {
          this.#enter(requireDeviceSessionRow(this.#session, 'keepaliveDue'));
          this.#sendSealed({ type: MessageType.PING }, now, out);
        }
        break;
      case 'offline':
        break;
    }
    return out;
  }

  /**
   * Application data to the hub: the id the core assigned (a later
   * `delivered` event names it) and the actions to carry out now, or a typed
   * error with nothing queued (LOCAL_PAYLOAD_TOO_LARGE, LOCAL_OUTBOX_FULL,
   * LOCAL_NOT_READY once halted). Equal to `enqueue` then `flush`.
   */
  send(payload: Uint8Array, now: number): DeviceSendResult {
    const queued = this.enqueue(payload);
    if (queued.error !== undefined) return { ok: false, error: queued.error };
    return { ok: true, messageId: queued.messageId, actions: this.flush(now) };
  }

  /**
   * Queues application data without sealing anything yet: for a host that is
   * still carrying out earlier actions (frames must leave in the order they
   * were sealed), which then calls `flush` in turn.
   */
  enqueue(payload: Uint8Array): EnqueueResult {
    if (this.#halted) return { error: new LockstepError('LOCAL_NOT_READY', 'device core halted') };
    return this.#channel.enqueue(payload);
  }

  /** Seals and returns what the outbox has not sent in this session (when a session is up and no persist is outstanding). */
  flush(now: number): DeviceAction[] {
    const out: DeviceAction[] = [];
    if (this.#session === 'established' && this.#persisting === undefined && !this.#halted) this.#flushOutbox(now, out);
    return out;
  }

  /** The last persist action is durable. */
  persisted(now: number): DeviceAction[] {
    const op = this.#persisting;
    if (op === undefined) throw new LockstepError('LOCAL_NOT_READY', 'no persist outstanding');
    this.#persisting = undefined;
    const out: DeviceAction[] = [];
    switch (op.kind) {
      case 'storeFuture':
        this.#keyStored(op, now, out);
        break;
      case 'promote':
        this.#keyPromoted(op, now, out);
        break;
      case 'storeRecovered':
        this.#recoveredStored(op, out);
        break;
      case 'storeCredential':
        this.#credentialStored(op, now, out);
        break;
    }
    // App data queued by send() while the write was outstanding goes out now (docs/VERIFICATION.md finding F2).
    if (this.#session === 'established' && this.#persisting === undefined) this.#flushOutbox(now, out);
    this.#resumeHeld(now, out);
    return out;
  }

  /**
   * DK7: the keystore failed to complete the last persist. Which state it
   * left is unknown to the core (before or after), so the core halts: the
   * host must remount the keystore and build a new core from what it returns.
   */
  persistFailed(error: LockstepError): DeviceAction[] {
    if (this.#persisting === undefined) throw new LockstepError('LOCAL_NOT_READY', 'no persist outstanding');
    this.#persisting = undefined;
    this.#deferred = undefined;
    this.#held.clear();
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
    this.#future = op.shares === undefined ? { id: op.id, key: op.key.slice() } : { id: op.id, key: op.key.slice(), shares: { hub: op.shares.hub.slice(), device: op.shares.device.slice() } };
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
    this.#active = { id: future.id, key: future.key };
    // §11.6: the promotion of a dh-derived key moves the mode to dh for good.
    if (future.shares !== undefined) this.#mode = 'dh';
    this.#future = undefined;
    out.push(event({ type: 'keyPromoted', id: op.id }));
    const deferred = this.#deferred;
    this.#deferred = undefined;
    if (deferred !== undefined && this.#session !== 'offline') this.#dispatch(deferred.message, deferred.row, now, out);
  }

  /**
   * DK14 (rule R2): the recovered key is durable as the future key, replacing
   * any other; the device never sealed under the replaced one anything the
   * hub accepts (that is why it recovered). Close and reconnect at once: the
   * next HELLO is the first frame sealed under N (DK6), and the hub's
   * WELCOME under N promotes it (DK5).
   */
  #recoveredStored(op: Extract<DevicePersistOp, { kind: 'storeRecovered' }>, out: DeviceAction[]): void {
    this.#future?.key.fill(0);
    this.#future = { id: op.id, key: op.key.slice() };
    out.push(event({ type: 'recovered', newKeyId: op.id }));
    if (this.#session === 'recoverFinished') this.#enter(requireDeviceSessionRow(this.#session, 'recoverResult')); // DS15 → offline
    this.#close(new LockstepError('UNKNOWN_KEY_ID', `DK14: recovered key ${op.id} stored; reconnecting under it`), out, true);
  }

  /** DK15: the credential is durable; now the hub may learn S_d. */
  #credentialStored(op: Extract<DevicePersistOp, { kind: 'storeCredential' }>, now: number, out: DeviceAction[]): void {
    this.#credential = copyRecoveryCredential(op.credential);
    out.push(event({ type: 'enrolled', hubStaticId: op.credential.hubStaticId }));
    if (this.#session === 'established') {
      this.#sendSealed({ type: MessageType.ENROL_ACK, hubStaticId: op.credential.hubStaticId, devicePublicKey: op.credential.device.publicKey.slice() }, now, out);
    }
  }

  // ---- Frame handling ----

  /** Parses `input` frame by frame; what is left when a persist starts is kept for later. */
  #parse(input: Uint8Array, now: number, out: DeviceAction[]): void {
    let at = 0;
    while (at < input.length && this.#session !== 'offline') {
      if (this.#persisting !== undefined) {
        this.#hold(input.subarray(at), out);
        return;
      }
      const result = this.#reader.feed(input, at);
      at += result.consumed;
      if (result.error !== undefined) this.#rejectFrame(result.error, now, out);
      else if (result.frame !== undefined) this.#handleFrame(result.frame, now, out);
    }
  }

  /** Keeps a copy of `bytes` after what is already kept; over the bound the connection ends (BUFFER_FULL). */
  #hold(bytes: Uint8Array, out: DeviceAction[]): void {
    if (this.#held.append(bytes)) return;
    this.#held.clear();
    this.#close(new LockstepError('BUFFER_FULL', `more than ${this.#receiveBufferBytes} bytes received during a persist`), out);
  }

  #resumeHeld(now: number, out: DeviceAction[]): void {
    if (this.#persisting !== undefined) return;
    const held = this.#held.take();
    if (held !== undefined && this.#session !== 'offline') this.#parse(held, now, out);
  }

  #handleFrame(frame: Uint8Array, now: number, out: DeviceAction[]): void {
    let header: Header;
    try {
      header = decodeHeader(frame);
    } catch (error) {
      this.#rejectFrame(asLockstepError(error), now, out);
      return;
    }
    const frameEvent = deviceFrameEvent(header.type);
    const row = frameEvent === undefined ? undefined : deviceSessionRow(this.#session, frameEvent);
    if (row === undefined) {
      this.#rejectFrame(new LockstepError('UNEXPECTED_MESSAGE', `type 0x${header.type.toString(16)} in ${this.#session}`), now, out);
      return;
    }
    switch (row.id) {
      case 'DS2':
        this.#handleChallenge(frame, header, row, now, out);
        return;
      case 'DS12':
        this.#handleNoKey(frame, header, row, now, out);
        return;
      case 'DS13':
        this.#handleRecoverReply(frame, header, row, now, out);
        return;
      case 'DS15':
        this.#handleRecoverResult(frame, header, now, out);
        return;
      default:
        break;
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
      // DK5: persist the promotion first; the frame is acted on once it is durable.
      this.#deferred = { message, row };
      this.#startPersist({ kind: 'promote', id: header.keyId }, out);
      return;
    }
    this.#dispatch(message, row, now, out);
  }

  /** DS2: the only unsealed frame; its checks are decodeChallenge's. */
  #handleChallenge(frame: Uint8Array, header: Header, row: DeviceSessionRow, now: number, out: DeviceAction[]): void {
    let hubNonce: Uint8Array;
    try {
      hubNonce = decodeChallenge(frame, header);
    } catch (error) {
      this.#reject(asLockstepError(error), out);
      return;
    }
    this.#enter(row);
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

  // ---- Recovery (§12.4) ----

  /** The header checks of an unsealed recovery frame from the hub (§12.2): key id 0, no share, this device, this session, the next seq. */
  #checkRecoveryHeader(header: Header): LockstepError | undefined {
    if (header.keyId !== NO_KEY_ID || header.share !== undefined) return new LockstepError('BAD_HEADER', 'recovery frames are unsealed (key id 0, no share)');
    return this.#checkSealedHeader(header);
  }

  /**
   * DS12: NO_KEY answers our HELLO (unauthenticated: anyone can send it, so
   * it changes nothing but what this connection does next). Reported once
   * per episode; then RECOVER_INIT if the device holds a credential and its
   * spacing allows an attempt, else close.
   */
  #handleNoKey(frame: Uint8Array, header: Header, row: DeviceSessionRow, now: number, out: DeviceAction[]): void {
    const verdict = frame.length !== NO_KEY_FRAME_BYTES ? new LockstepError('BAD_PAYLOAD', 'NO_KEY has no body') : this.#checkRecoveryHeader(header);
    if (verdict !== undefined) {
      this.#reject(verdict, out);
      return;
    }
    this.#sequenceIn++;
    this.#lastReceivedAt = now;
    this.#rejectedFrames = 0;
    if (this.#pacer.markLostKey()) out.push(event({ type: 'hubLostKey', activeKeyId: this.#active.id, futureKeyId: this.#future?.id ?? NO_KEY_ID }));
    const credential = this.#credential;
    const primitives = this.#keyAgreement;
    if (credential === undefined || primitives === undefined) {
      this.#close(new LockstepError('NO_CREDENTIAL', 'DS12: the hub lost our key and this device holds no recovery credential'), out);
      return;
    }
    if (!this.#pacer.allows(now)) {
      this.#close(new LockstepError('RECOVERY_REFUSED', `DS12: next recovery attempt in ${this.#pacer.waitMs(now)} ms`), out);
      return;
    }
    this.#pacer.attempted(now);
    const hubNonce = this.#hubNonce as Uint8Array; // set: #checkSealedHeader matched it
    const newest = this.#future ?? this.#active;
    let start: DeviceRecoveryStart;
    try {
      start = deviceRecoveryInit(primitives, this.#random, {
        credential,
        deviceId: this.deviceId,
        hubNonce,
        header: this.#recoveryHeader(MessageType.RECOVER_INIT),
        activeKeyId: this.#active.id,
        futureKeyId: this.#future?.id ?? NO_KEY_ID,
        newestKey: newest.key,
      });
    } catch (error) {
      this.#recoveryFailed(asLockstepError(error), now, out);
      this.#close(asLockstepError(error), out);
      return;
    }
    this.#enter(row);
    this.#recovery = { stage: 'init', start };
    this.#recoveryStartedAt = now;
    this.#transmitRaw(start.frame, now, out);
  }

  /** DS13 / DS14: tag2 first (the hub holds s_h), then R3 on N; RECOVER_FINISH. Nothing is stored yet (R1). */
  #handleRecoverReply(frame: Uint8Array, header: Header, row: DeviceSessionRow, now: number, out: DeviceAction[]): void {
    const progress = this.#recovery;
    const verdict = this.#checkRecoveryHeader(header);
    if (verdict !== undefined || progress?.stage !== 'init' || this.#credential === undefined || this.#keyAgreement === undefined) {
      this.#abortRecovery(verdict ?? new LockstepError('UNEXPECTED_MESSAGE', 'RECOVER_REPLY out of turn'), now, out, true);
      return;
    }
    let secrets: RecoverySecrets;
    try {
      secrets = deviceRecoveryReply(this.#keyAgreement, progress.start, this.#credential, frame); // wipes e_d and k1 either way
    } catch (error) {
      this.#recovery = undefined;
      this.#refuseRecovery(asLockstepError(error), now, out, true);
      return;
    }
    this.#recovery = { stage: 'finish', secrets };
    const decision = deviceRecoverReplyRow({ activeId: this.#active.id, futureId: this.#future?.id }, secrets.newKeyId);
    if (decision.action === 'refuseId') {
      this.#refuseRecovery(new LockstepError('RECOVERY_REFUSED', `${decision.id}: recovered id ${secrets.newKeyId} is not above every id held (${this.sealKeyId})`), now, out);
      return;
    }
    this.#sequenceIn++;
    this.#lastReceivedAt = now;
    this.#enter(row);
    this.#transmitRaw(recoveryFinishFrame(this.#keyAgreement, secrets.macKey, this.#recoveryHeader(MessageType.RECOVER_FINISH)), now, out);
  }

  /** DS15: tag4 verified, the hub's decision; ACCEPTED is DK14 (persist first, R2). */
  #handleRecoverResult(frame: Uint8Array, header: Header, now: number, out: DeviceAction[]): void {
    const progress = this.#recovery;
    const verdict = this.#checkRecoveryHeader(header);
    if (verdict !== undefined || progress?.stage !== 'finish' || this.#keyAgreement === undefined) {
      this.#abortRecovery(verdict ?? new LockstepError('UNEXPECTED_MESSAGE', 'RECOVER_RESULT out of turn'), now, out, true);
      return;
    }
    let result: { status: number; retryAfterSeconds: number };
    try {
      result = verifyRecoveryResult(this.#keyAgreement, progress.secrets.macKey, frame);
    } catch (error) {
      this.#abortRecovery(asLockstepError(error), now, out, true);
      return;
    }
    this.#sequenceIn++;
    this.#lastReceivedAt = now;
    const secrets = progress.secrets;
    const decision = deviceRecoverResultRow(result.status);
    if (decision.action === 'storeRecovered') {
      // R3 once more at the moment of the change (the slots cannot have moved in these states, but the check is the rule).
      if (deviceRecoverReplyRow({ activeId: this.#active.id, futureId: this.#future?.id }, secrets.newKeyId).action !== 'finish') {
        this.#abortRecovery(new LockstepError('RECOVERY_REFUSED', `DK14: id ${secrets.newKeyId} no longer above the ids held`), now, out);
        return;
      }
      const key = secrets.recoveredKey.slice();
      this.#wipeRecovery();
      this.#startPersist({ kind: 'storeRecovered', id: secrets.newKeyId, key }, out);
      return;
    }
    this.#wipeRecovery();
    if (decision.action === 'reconnect') {
      out.push(event({ type: 'recoveryInSync' }));
      this.#close(new LockstepError('RECOVERY_REFUSED', 'IN_SYNC: the hub holds our key; reconnecting'), out, true);
      return;
    }
    this.#pacer.retryAfter(now, result.retryAfterSeconds * 1000);
    const reason = statusName(result.status);
    out.push(event({ type: 'recoveryRefused', reason, retryAfterMs: this.#pacer.waitMs(now) }));
    this.#close(new LockstepError('RECOVERY_REFUSED', `DS15: ${reason}, retry after ${result.retryAfterSeconds} s`), out);
  }

  /** DS14: the attempt ends without a key; close; the slots are untouched. */
  #refuseRecovery(error: LockstepError, now: number, out: DeviceAction[], rejectedFrame = false): void {
    if (rejectedFrame) out.push(event({ type: 'rejected', error }));
    this.#recoveryFailed(error, now, out);
    this.#wipeRecovery();
    out.push({ type: 'close', error });
    this.#enter(requireDeviceSessionRow(this.#session, 'replyRefused')); // DS14: only in recoverSent
    this.#resetSession();
  }

  /** DS16: anything else in the recovery states; close; the slots are untouched. */
  #abortRecovery(error: LockstepError, now: number, out: DeviceAction[], rejectedFrame = false): void {
    if (rejectedFrame) out.push(event({ type: 'rejected', error }));
    this.#recoveryFailed(error, now, out);
    this.#wipeRecovery();
    out.push({ type: 'close', error });
    this.#enter(DEVICE_RECOVERY_ABORT_ROW);
    this.#resetSession();
  }

  #recoveryFailed(error: LockstepError, now: number, out: DeviceAction[]): void {
    out.push(event({ type: 'recoveryRefused', reason: error.code, retryAfterMs: this.#pacer.waitMs(now) }));
  }

  #wipeRecovery(): void {
    const progress = this.#recovery;
    this.#recovery = undefined;
    if (progress === undefined) return;
    if (progress.stage === 'init') {
      progress.start.ephemeral.privateKey.fill(0);
      progress.start.k1.fill(0);
    } else {
      progress.secrets.macKey.fill(0);
      progress.secrets.recoveredKey.fill(0);
    }
  }

  /** The 36-byte header of our next recovery frame (§12.2: key id 0, this session, the next seq). */
  #recoveryHeader(type: MessageType): Uint8Array {
    return encodeHeader({ type, fromHub: false, deviceId: this.deviceId, keyId: NO_KEY_ID, sequence: this.#sequenceOut++, sessionId: this.#hubNonce as Uint8Array });
  }

  #transmitRaw(frame: Uint8Array, now: number, out: DeviceAction[]): void {
    this.#lastSentAt = now;
    out.push({ type: 'transmit', bytes: withLengthPrefix(frame) });
  }

  /**
   * DS17 → DK15–DK17 (§12.6): store a credential once (s_d drawn here,
   * persisted before S_d is sent); the same ENROL again is acknowledged
   * again; another hub static key is refused (STATIC_KEY_LOCKED).
   */
  #handleEnrol(message: Extract<Message, { type: typeof MessageType.ENROL }>, now: number, out: DeviceAction[]): void {
    const held = this.#credential;
    const row = deviceEnrolRow({
      hasCredential: held !== undefined,
      sameHubKey: held !== undefined && held.hubStaticId === message.hubStaticId && bytesEqual(held.hubPublicKey, message.hubPublicKey),
    });
    switch (row.action) {
      case 'acknowledgeAgain':
        if (held !== undefined) this.#sendSealed({ type: MessageType.ENROL_ACK, hubStaticId: held.hubStaticId, devicePublicKey: held.device.publicKey.slice() }, now, out);
        return;
      case 'refuseLocked':
        out.push(event({ type: 'staticKeyLocked' }));
        this.#sendSealed({ type: MessageType.ERROR, code: WireError.STATIC_KEY_LOCKED, detail: message.hubStaticId }, now, out);
        return;
      case 'storeCredential':
        break;
    }
    const primitives = this.#keyAgreement;
    if (primitives === undefined || !this.#acceptsEnrolment) {
      this.#sendSealed({ type: MessageType.ERROR, code: WireError.UNEXPECTED_MESSAGE, detail: message.hubStaticId }, now, out);
      return;
    }
    const pair = drawEphemeral(primitives, this.#random);
    // A low-order S_h would make ss independent of s_h (RFC 7748 §6.1): refused before anything is stored.
    let shared: Uint8Array | undefined;
    try {
      shared = primitives.x25519(pair.privateKey, message.hubPublicKey);
    } catch {
      shared = undefined;
    }
    let any = 0;
    if (shared !== undefined) for (let i = 0; i < shared.length; i++) any |= shared[i] as number;
    shared?.fill(0);
    if (any === 0) {
      pair.privateKey.fill(0);
      this.#sendSealed({ type: MessageType.ERROR, code: WireError.BAD_KEY_SHARE, detail: message.hubStaticId }, now, out);
      return;
    }
    this.#startPersist({ kind: 'storeCredential', credential: { device: pair, hubStaticId: message.hubStaticId, hubPublicKey: message.hubPublicKey.slice() } }, out);
  }

  /** Checks that need no key: state, addressing, session binding, order. */
  #checkSealedHeader(header: Header): LockstepError | undefined {
    if (!header.fromHub) return new LockstepError('BAD_HEADER', 'frame sealed by a device (reflected?)');
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

  /** Acts on an authenticated message by its session row; any promotion it implied (DK5) is done. */
  #dispatch(message: Message, row: DeviceSessionRow, now: number, out: DeviceAction[]): void {
    this.#enter(row);
    switch (row.id) {
      case 'DS3':
        // The hub holds our key: a recovery episode (if any) is over; the spacing starts over.
        this.#pacer.reset();
        out.push(event({ type: 'established', keyId: this.sealKeyId }));
        this.#channel.restartSession();
        this.#flushOutbox(now, out);
        return;
      case 'DS10':
        if (message.type === MessageType.REKEY || message.type === MessageType.REKEY_DH) this.#handleRekey(message, now, out);
        return;
      case 'DS11':
        // CONFIRM: the promotion (if any) already happened by DK5; nothing else to do.
        return;
      case 'DS17':
        if (message.type === MessageType.ENROL) this.#handleEnrol(message, now, out);
        return;
      case 'DS8':
        this.#handleAppFrame(message, now, out);
        return;
      default:
        throw new LockstepError('UNEXPECTED_MESSAGE', `row ${row.id} does not take a frame`);
    }
  }

  /** DS8: application data (§7), keep-alive, and the hub's error reports. */
  #handleAppFrame(message: Message, now: number, out: DeviceAction[]): void {
    switch (message.type) {
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
        throw new LockstepError('UNEXPECTED_MESSAGE', `type 0x${message.type.toString(16)} is not an application frame`);
    }
  }

  /**
   * DS10 → the REKEY and REKEY_DH rows of D-K (DK1–DK4, DK8–DK13,
   * docs/PROTOCOL.md §8.1 and §11.4, rules D4–D7): store the key with the
   * next id once; answer a repeated offer of the same (id, content)
   * idempotently; refuse anything else.
   */
  #handleRekey(message: Extract<Message, { type: typeof MessageType.REKEY | typeof MessageType.REKEY_DH }>, now: number, out: DeviceAction[]): void {
    const id = message.newKeyId;
    const future = this.#future;
    const dh = message.type === MessageType.REKEY_DH;
    let sameAsFuture = false;
    if (future !== undefined && future.id === id) {
      if (message.type === MessageType.REKEY) sameAsFuture = future.shares === undefined && constantTimeEqual(future.key, message.newKey);
      else sameAsFuture = future.shares !== undefined && bytesEqual(future.shares.hub, message.hubShare);
    }
    const slots = { activeId: this.#active.id, futureId: future?.id, futureDh: future?.shares !== undefined, mode: this.#mode };
    const row = deviceRekeyRow(slots, { id, dh, sameAsFuture });
    if (row.action === 'deriveFuture' && message.type === MessageType.REKEY_DH) {
      this.#deriveFuture(id, message.hubShare, now, out);
      return;
    }
    const key = message.type === MessageType.REKEY ? message.newKey : undefined;
    switch (row.action) {
      case 'refuseModeMismatch':
        this.#refuseRekey(id, WireError.REKEY_MODE_MISMATCH, new LockstepError('REKEY_REJECTED', `${row.id}: a classic REKEY to a device in the dh mode`), now, out);
        break;
      case 'refuseNotNewer':
        this.#refuseRekey(id, WireError.REKEY_ID_NOT_NEWER, new LockstepError('REKEY_REJECTED', `${row.id}: id ${id} not above active ${this.#active.id}`), now, out);
        break;
      case 'refuseNotNext':
        this.#refuseRekey(id, WireError.REKEY_ID_NOT_NEXT, new LockstepError('REKEY_REJECTED', `${row.id}: id ${id} is not active + 1 (${this.#active.id + 1})`), now, out);
        break;
      case 'storeFuture':
        if (key !== undefined) this.#startPersist({ kind: 'storeFuture', id, key: key.slice() }, out);
        break;
      case 'acknowledgeAgain':
        this.#sendSealed({ type: MessageType.REKEY_ACK, newKeyId: id }, now, out);
        break;
      case 'refuseConflict':
        this.#refuseRekey(id, WireError.REKEY_CONFLICT, new LockstepError('REKEY_REJECTED', `${row.id}: future key ${future?.id} already held`), now, out);
        break;
    }
    key?.fill(0);
  }

  /**
   * DK9 (rule D6): a fresh ephemeral, the derivation of §11.3, the private
   * key wiped at once; then the future key and both shares are persisted
   * before anything is acknowledged. DK13: an all-zero result is refused.
   */
  #deriveFuture(id: number, hubShare: Uint8Array, now: number, out: DeviceAction[]): void {
    const primitives = this.#keyAgreement;
    if (primitives === undefined) {
      this.#refuseRekey(id, WireError.REKEY_MODE_MISMATCH, new LockstepError('REKEY_REJECTED', 'DK9: this device has no X25519 (classic only)'), now, out);
      return;
    }
    const ephemeral = drawEphemeral(primitives, this.#random);
    let key: Uint8Array;
    try {
      key = deriveRekeyKey(primitives, {
        previousKey: this.#active.key,
        privateKey: ephemeral.privateKey,
        peerShare: hubShare,
        deviceId: this.deviceId,
        newKeyId: id,
        hubShare,
        deviceShare: ephemeral.publicKey,
      });
    } catch (error) {
      const typed = asLockstepError(error);
      this.#refuseRekey(id, WireError.BAD_KEY_SHARE, new LockstepError('REKEY_REJECTED', `DK13: ${typed.message}`), now, out);
      return;
    } finally {
      ephemeral.privateKey.fill(0);
    }
    this.#startPersist({ kind: 'storeFuture', id, key, shares: { hub: hubShare.slice(), device: ephemeral.publicKey } }, out);
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
    const future = this.#future;
    const slot = future ?? this.#active; // DK6: the newest key held
    const header = { fromHub: false, deviceId: this.deviceId, keyId: slot.id, sequence: this.#sequenceOut++, sessionId: this.#hubNonce };
    const frame = sealFrame({
      aead: this.#aead,
      key: slot.key,
      iv: this.#randomBytes(IV_BYTES),
      // §11.2: every frame under a dh-derived future key carries its share, so a hub that crashed before promoting can derive it.
      header: future?.shares === undefined ? header : { ...header, share: future.shares.device },
      message,
    });
    this.#lastSentAt = now;
    out.push({ type: 'transmit', bytes: withLengthPrefix(frame) });
  }

  #startPersist(op: DevicePersistOp, out: DeviceAction[]): void {
    this.#persisting = op;
    out.push({ type: 'persist', op });
  }

  /** A frame failed a check: DS9, or DS16 in the recovery states (one handshake per connection, nothing else accepted). */
  #rejectFrame(error: LockstepError, now: number, out: DeviceAction[]): void {
    if (isRecoveryState(this.#session)) this.#abortRecovery(error, now, out, true);
    else this.#reject(error, out);
  }

  /** DS9: report; the frame changed nothing. After MAX_REJECTED_FRAMES in a row, close. */
  #reject(error: LockstepError, out: DeviceAction[]): void {
    out.push(event({ type: 'rejected', error }));
    if (++this.#rejectedFrames > MAX_REJECTED_FRAMES) this.#close(new LockstepError('PEER_ERROR', 'too many rejected frames'), out);
  }

  #timedOut(eventName: DeviceSessionEvent, what: string, out: DeviceAction[]): void {
    const row = requireDeviceSessionRow(this.#session, eventName);
    out.push({ type: 'close', error: new LockstepError('TIMEOUT', `${row.id}: ${what}`) });
    this.#enter(row);
    this.#resetSession();
  }

  /** The core ends the connection (DS7 as the core's own close); `reconnectNow` after a recovery (DK14, IN_SYNC). */
  #close(error: LockstepError, out: DeviceAction[], reconnectNow = false): void {
    out.push(reconnectNow ? { type: 'close', error, reconnectNow: true } : { type: 'close', error });
    if (this.#session !== 'offline') this.#enter(requireDeviceSessionRow(this.#session, 'closed'));
    this.#resetSession();
  }

  #enter(row: DeviceSessionRow): void {
    this.#session = row.next;
  }

  #resetSession(): void {
    this.#hubNonce = undefined;
    this.#deviceNonce = undefined;
    this.#sequenceIn = 0;
    this.#sequenceOut = 0;
    this.#rejectedFrames = 0;
    this.#reader.reset();
    // Input and a deferred frame of a closed connection mean nothing in the next one
    // (a promotion still outstanding completes when persisted).
    this.#held.clear();
    this.#deferred = undefined;
    this.#wipeRecovery();
  }

  #assertNotHalted(): void {
    if (this.#halted) throw new LockstepError('LOCAL_NOT_READY', 'device core halted after a storage failure');
  }

  #randomBytes(length: number): Uint8Array {
    const bytes = new Uint8Array(length);
    this.#random.fill(bytes);
    return bytes;
  }
}

function event(value: DeviceEvent): DeviceAction {
  return { type: 'event', event: value };
}

function statusName(status: number): string {
  for (const [name, value] of Object.entries(RecoveryStatus)) if (value === status) return name;
  return `status ${status}`;
}

function checkCredential(credential: RecoveryCredential): RecoveryCredential {
  const key = (bytes: unknown) => bytes instanceof Uint8Array && bytes.length === 32;
  const ok = key(credential.device?.privateKey) && key(credential.device?.publicKey) && key(credential.hubPublicKey) && Number.isInteger(credential.hubStaticId) && credential.hubStaticId >= 0 && credential.hubStaticId <= 0xffffffff;
  if (!ok) throw new LockstepError('LOCAL_BAD_ARGUMENT', 'a recovery credential is three 32-byte keys and a u32 hub static id');
  return credential;
}

function copyRecoveryCredential(credential: RecoveryCredential): RecoveryCredential {
  return {
    device: { privateKey: credential.device.privateKey.slice(), publicKey: credential.device.publicKey.slice() },
    hubStaticId: credential.hubStaticId,
    hubPublicKey: credential.hubPublicKey.slice(),
  };
}



